"""Direct publishing: events to streams with pipelined XADD."""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as redis

from flotilla_contracts.events import Event
from flotilla_kit.tracing import producing
from flotilla_streams.envelope import ENVELOPE_FIELD, Envelope, encode, wrap


class Publisher:
    """Publishes events straight to Redis.

    Use it where losing an event on a crash is acceptable or the caller retries; where the event
    must follow a database change, publish through the outbox instead.
    """

    def __init__(self, client: redis.Redis, *, source: str) -> None:
        self.client = client
        self.source = source

    async def publish(self, stream: str, event: Event, *, causation: Envelope | None = None) -> Envelope:
        """XADD one event; returns its envelope. Raises redis errors when Redis is unreachable.

        Traced (flotilla_kit.tracing): a PRODUCER span, whose context the envelope carries.
        """
        span = producing(stream)
        if span is None:
            envelope = wrap(event, source=self.source, causation=causation)
            await self.client.xadd(stream, {ENVELOPE_FIELD: encode(envelope)})
            return envelope
        with span:
            envelope = wrap(event, source=self.source, causation=causation, traceparent=span.traceparent)
            span.messages([envelope.id])
            await self.client.xadd(stream, {ENVELOPE_FIELD: encode(envelope)})
        return envelope

    async def publish_many(
        self, stream: str, events: Iterable[Event], *, causation: Envelope | None = None
    ) -> list[Envelope]:
        """XADD events in order in one pipelined round trip (traced as one PRODUCER span)."""
        span = producing(stream)
        traceparent = span.traceparent if span else None
        envelopes = [wrap(event, source=self.source, causation=causation, traceparent=traceparent) for event in events]
        if span is None:
            await publish_encoded(self.client, [(stream, encode(e)) for e in envelopes])
            return envelopes
        with span:
            span.messages([e.id for e in envelopes])
            await publish_encoded(self.client, [(stream, encode(e)) for e in envelopes])
        return envelopes


async def publish_encoded(
    client: redis.Redis, entries: list[tuple[str, bytes]], *, atomic: bool = False
) -> list[bytes]:
    """XADD already-encoded envelopes in order, pipelined; ``atomic`` wraps them in MULTI/EXEC."""
    if not entries:
        return []
    async with client.pipeline(transaction=atomic) as pipe:
        for stream, data in entries:
            pipe.xadd(stream, {ENVELOPE_FIELD: data})
        return await pipe.execute()
