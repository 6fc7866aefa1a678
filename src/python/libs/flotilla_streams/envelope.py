"""The envelope every event travels in, and its codec.

A stream entry has one field, ``envelope``: the JSON envelope. The payload stays a ``msgspec.Raw``
until a consumer knows the type and has a handler for it, so routing and dead-lettering never pay
for decoding payloads.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from flotilla_contracts.events import Event, event_type
from flotilla_http.context import request_id_var, trace_var

ENVELOPE_FIELD = b"envelope"


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    version: int
    occurred_at: datetime
    source: str
    correlation_id: str
    causation_id: str | None = None
    traceparent: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")


class UndecodableEntry(ValueError):
    """A stream entry that is not a valid envelope or whose payload does not fit its type."""


_envelope_decoder = msgspec.json.Decoder(Envelope)
_encoder = msgspec.json.Encoder()


def new_event_id() -> str:
    return uuid.uuid4().hex


def wrap(
    event: Event,
    *,
    source: str,
    causation: Envelope | None = None,
    correlation_id: str | None = None,
    traceparent: str | None = None,
) -> Envelope:
    """Put ``event`` in an envelope.

    Correlation follows the cause (an event handled), else the current request id, else the event
    itself starts a new correlation. The trace context is ``traceparent`` when given (the producer
    span's, flotilla_kit.tracing), else the current request's, else the cause's.
    """
    event_id = new_event_id()
    trace = trace_var.get()
    if causation is not None:
        correlation = correlation_id or causation.correlation_id
        traceparent = traceparent or (trace.traceparent if trace else causation.traceparent)
    else:
        correlation = correlation_id or request_id_var.get() or event_id
        traceparent = traceparent or (trace.traceparent if trace else None)
    return Envelope(
        id=event_id,
        type=event_type(type(event)),
        version=type(event).schema_version,
        occurred_at=datetime.now(UTC),
        source=source,
        correlation_id=correlation,
        causation_id=causation.id if causation else None,
        traceparent=traceparent,
        payload=msgspec.Raw(_encoder.encode(event)),
    )


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    """Decode an envelope; raises UndecodableEntry with msgspec's reason."""
    try:
        return _envelope_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise UndecodableEntry(f"not a valid envelope: {exc}") from None


def envelope_bytes(fields: dict[bytes, bytes] | dict[Any, Any]) -> bytes:
    """The envelope field of a stream entry; raises UndecodableEntry when it has none."""
    data = fields.get(ENVELOPE_FIELD)
    if data is None:
        raise UndecodableEntry(f"entry has no {ENVELOPE_FIELD.decode()!r} field (fields: {sorted(map(repr, fields))})")
    return data


class PayloadDecoder:
    """Decodes payloads of the given event types; built once per consumer and reused."""

    def __init__(self, types: Iterable[type[Event]]) -> None:
        self.types = {event_type(t): t for t in types}
        if not self.types:
            raise ValueError("a payload decoder needs at least one event type")
        union = tuple(self.types.values())
        target: Any = union[0] if len(union) == 1 else _union(union)
        self._decoder = msgspec.json.Decoder(target)

    def decode(self, envelope: Envelope) -> Event:
        try:
            event = self._decoder.decode(envelope.payload)
        except msgspec.DecodeError as exc:
            raise UndecodableEntry(f"payload of {envelope.type} {envelope.id} does not fit its type: {exc}") from None
        if event_type(type(event)) != envelope.type:
            raise UndecodableEntry(f"envelope says {envelope.type} but the payload is {event_type(type(event))}")
        return event


def _union(types: tuple[type[Event], ...]) -> Any:
    from typing import Union

    return Union[types]  # noqa: UP007 - built at run time from a tuple
