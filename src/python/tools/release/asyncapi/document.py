"""The platform's AsyncAPI 3.0 document, built from the code so that it cannot drift from it.

- Every stream of ``flotilla_contracts.events`` is a channel (its address is the stream name), and
  so is its dead-letter stream ``<stream>.dlq``; the discovery registry's pub/sub channel is one too.
- Every event type is ``components.messages.<EventName>``: ``name`` is its type tag, ``x-stream``
  its stream, ``payload`` a ``$ref`` to ``components.schemas.<EventName>``, the JSON Schema msgspec
  generates for the model (every ``$ref`` of a schema points into ``#/components/schemas/``).
- ``components.schemas.Envelope`` is the JSON an entry's one field, ``envelope``, holds.
- Operations: which service sends each event (``<service>.send.<stream>``), which consumer groups
  receive it (``<group>.receive.<stream>``) and dead-letter it (``<group>.deadLetter.<stream>``),
  found in the services' sources (``release.usage``, ``release.asyncapi.wiring``).
- The delivery rules and the discovery registry's format (for a service in another language) are
  in ``info.description`` and in the ``x-flotilla-delivery`` and ``x-flotilla-discovery`` extensions.

Nothing in the document depends on the time or the machine: the same code gives the same bytes.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
from release.asyncapi.wiring import ConsumerGroup, Wiring, WiringError, scan_wiring
from release.schemas import Document, schema_components
from release.usage import EventUsage, find_usage

from flotilla_contracts.events import Event, event_type
from flotilla_discovery.instance import Instance

# The registry's scripts are private to flotilla_discovery, but a service in another language must run
# exactly them: the document quotes them verbatim rather than a copy that could drift.
from flotilla_discovery.redis_store import (
    _READ_LIVE_SCRIPT,
    _WRITE_SCRIPT,
    KEY_GRACE_TTLS,
    Change,
    channel_prefix,
    service_keys,
)
from flotilla_discovery.registry import RedisRegistry
from flotilla_kit.settings import ServiceSettings
from flotilla_streams.consumer import ConsumerOptions
from flotilla_streams.dlq import DLQ_SUFFIX, dlq_stream
from flotilla_streams.envelope import ENVELOPE_FIELD, Envelope

ASYNCAPI_VERSION = "3.0.0"
EVENTS_MODULE = "flotilla_contracts.events"
SERVICES_DIR = Path("src/python/services")
SCHEMAS = "#/components/schemas/"
MESSAGES = "#/components/messages/"
DISCOVERY_CHANNEL = "discovery"
# The kit registers every service under RedisRegistry's default namespace.
DISCOVERY_NAMESPACE: str = inspect.signature(RedisRegistry).parameters["namespace"].default

# JSON Schema keywords of drafts after 07: AsyncAPI 3.0's schema format is draft-07, whose readers
# ignore these silently, so a model that needs one would be documented wrong. Refused instead.
_LATER_KEYWORDS = frozenset(
    {
        "$defs",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentRequired",
        "dependentSchemas",
        "minContains",
        "maxContains",
    }
)

# One description per envelope field; a field added to the Envelope without one fails the build,
# so the document never lists a field nobody explained.
ENVELOPE_FIELDS: dict[str, str] = {
    "id": (
        "The event id, unique per event (the Python producers write 32 lowercase hex digits, a UUID4"
        " without dashes). The idempotency key: a consumer that sees an id again (a redelivery, a"
        " producer's resend after a crash, a replayed dead letter) must not apply it twice."
    ),
    "type": (
        "The event type, `<service>.<EventName>`: the `name` of the message in"
        " `components.messages` whose payload schema fits `payload`. A consumer acks an entry whose"
        " type it does not handle, without effect."
    ),
    "version": (
        "The payload's schema version (the event class's `schema_version`), raised when the event"
        " gains fields. Informational: every version of a type decodes with its one payload schema."
    ),
    "occurred_at": "When the producer wrapped the event: RFC 3339, with the timezone (UTC).",
    "source": "The name of the service that produced the event.",
    "correlation_id": (
        "Ties together everything one request or one saga caused: the cause's correlation id for an"
        " event produced while handling another, else the HTTP request id, else the event's own id."
    ),
    "causation_id": "The id of the event whose handling produced this one; null when a request caused it.",
    "traceparent": "W3C trace context of the producer's span (consumers continue the trace), or null.",
    "payload": (
        "The event itself, embedded as a JSON object (not a string): it validates against the payload"
        " of the message named by `type`, and its own `type` property repeats the envelope's."
    ),
}

# The fields flotilla_streams.dlq adds to a dead-lettered entry, beside the original entry's fields.
DLQ_FIELDS: dict[str, str] = {
    "dlq_reason": "Why the entry was dead-lettered (the last handler error, or why it is undecodable); at most 4000 bytes.",
    "dlq_stream": "The stream the entry came from.",
    "dlq_entry_id": "The entry's id on that stream (`<milliseconds>-<sequence>`).",
    "dlq_group": "The consumer group that gave up on it.",
    "dlq_consumer": "The member of that group (its instance id) that moved it here.",
    "dlq_deliveries": "How many times it was delivered before it was given up, as a decimal string.",
    "dlq_failed_at_ms": "When it was moved here: Unix time in milliseconds, as a decimal string.",
}


@dataclass(frozen=True)
class EventChannel:
    """One event type and where it travels."""

    name: str  # the model's name, the key of its message and schema
    tag: str
    stream: str
    schema_version: int
    producers: tuple[str, ...]
    groups: tuple[ConsumerGroup, ...]


def events_module() -> ModuleType:
    return importlib.import_module(EVENTS_MODULE)


def stream_constants(module: ModuleType) -> dict[str, str]:
    """The stream constants of the events module: ``{"ORDERS_EVENTS": "orders.events", ...}``."""
    return {
        name: value
        for name, value in vars(module).items()
        if name.endswith("_EVENTS") and name.isupper() and isinstance(value, str)
    }


def event_classes(module: ModuleType) -> list[type[Event]]:
    """The event types defined in the module, by name."""
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Event)
        and value is not Event
        and value.__module__ == module.__name__
    ]
    return sorted(found, key=lambda cls: cls.__name__)


def build_document(root: Path) -> Document:
    """The AsyncAPI document of the platform in the repository at ``root`` (its services' sources
    are read as files; the models are the imported ``flotilla_contracts``). Raises WiringError
    when the services' wiring cannot be read or contradicts the streams' convention."""
    module = events_module()
    streams = stream_constants(module)
    classes = event_classes(module)
    services_root = root / SERVICES_DIR
    usage = find_usage(services_root, [cls.__name__ for cls in classes], [EVENTS_MODULE], base=root)
    wiring = scan_wiring(services_root, streams, EVENTS_MODULE)
    channels = event_channels(classes, sorted(streams.values()), usage, wiring)
    components = component_schemas(classes)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:flotilla:platform-events",
        "info": _info(module, sorted(streams.values())),
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": _channels(channels, sorted(streams.values()), wiring),
        "operations": _operations(channels, sorted(streams.values()), wiring),
        "components": {"schemas": components, "messages": _messages(channels)},
        "x-flotilla-delivery": _delivery(),
        "x-flotilla-discovery": _discovery(),
    }


def event_channels(
    classes: Sequence[type[Event]], streams: Sequence[str], usage: Mapping[str, EventUsage], wiring: Wiring
) -> list[EventChannel]:
    """Each event with its stream, producers and receiving groups.

    The stream of ``<service>.<Name>`` is ``<service>.events`` (one stream per producing service);
    a producer must declare it (``messaging(publishes=[...])``), else the wiring contradicts it.
    """
    found = []
    for cls in classes:
        tag = event_type(cls)
        stream = f"{tag.partition('.')[0]}.events"
        if stream not in streams:
            raise WiringError(f"{cls.__name__} ({tag}): no stream {stream!r} among {EVENTS_MODULE}'s {list(streams)}")
        producers = tuple(sorted(usage[cls.__name__].producers))
        for producer in producers:
            if stream not in wiring.publishes.get(producer, []):
                declared = wiring.publishes.get(producer) or "nothing"
                raise WiringError(
                    f"{producer} produces {cls.__name__} ({tag}), which belongs on {stream!r}, but its"
                    f" messaging(publishes=...) declares {declared}"
                )
        consumers = set(usage[cls.__name__].consumers)
        groups = tuple(g for g in wiring.groups if g.service in consumers and stream in g.streams)
        found.append(EventChannel(cls.__name__, tag, stream, getattr(cls, "schema_version", 1), producers, groups))
    return found


def component_schemas(classes: Sequence[type[Event]]) -> dict[str, Any]:
    """JSON Schemas of the events (and the models they use), the envelope, the stream entries and
    the discovery registry's records; refuses what a draft-07 reader would misread."""
    _, schemas = schema_components(list(classes), ref_template=SCHEMAS + "{name}")
    for cls in classes:
        _refuse_closed_objects(cls.__name__, schemas[cls.__name__], schemas)
    _, discovery = schema_components([Instance, Change], ref_template=SCHEMAS + "Discovery{name}")
    ours = {f"Discovery{name}": {**schema, "title": f"Discovery{name}"} for name, schema in discovery.items()}
    ours.update(Envelope=envelope_schema(), StreamEntry=_stream_entry_schema(), DeadLetterEntry=_dead_letter_schema())
    clashes = sorted(ours.keys() & schemas.keys())
    if clashes:
        raise WiringError(f"models of {EVENTS_MODULE} named like the document's own schemas: {clashes}")
    schemas.update(ours)
    for name, schema in schemas.items():
        _refuse_later_keywords(name, schema)
    # A JSON round trip: plain lists and dicts, as the committed file loads.
    loaded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(schemas))
    return loaded


def envelope_schema() -> dict[str, Any]:
    """The schema of the JSON in a stream entry's ``envelope`` field, from the Envelope struct."""
    fields = msgspec.structs.fields(Envelope)
    undocumented = [f.encode_name for f in fields if f.encode_name not in ENVELOPE_FIELDS]
    if undocumented:
        raise WiringError(f"Envelope fields without a description in {__name__}.ENVELOPE_FIELDS: {undocumented}")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in fields:
        if f.encode_name == "payload":
            schema: dict[str, Any] = {"type": "object"}
        else:
            schema = dict(msgspec.json.schema(f.type))
            if f.default is not msgspec.NODEFAULT:
                schema["default"] = msgspec.to_builtins(f.default)
        properties[f.encode_name] = {**schema, "description": ENVELOPE_FIELDS[f.encode_name]}
        # The payload has a default for the decoder's sake only: an envelope without one cannot be handled.
        if f.required or f.encode_name == "payload":
            required.append(f.encode_name)
    entry_field = ENVELOPE_FIELD.decode()
    return {
        "title": "Envelope",
        "description": (
            f"Every event travels in an envelope. A stream entry has exactly one field, `{entry_field}`,"
            " whose value is this object as UTF-8 JSON (see StreamEntry); the event is its `payload`, a"
            " nested JSON object. Producers write every field (null where there is no value); readers"
            " ignore fields they do not know."
        ),
        "type": "object",
        "properties": properties,
        "required": required,
    }


def _stream_entry_schema() -> dict[str, Any]:
    entry_field = ENVELOPE_FIELD.decode()
    return {
        "title": "StreamEntry",
        "description": (
            f"The fields of one entry on an event stream (XADD <stream> * {entry_field} <json>): exactly"
            f" one, `{entry_field}`. Its value is the Envelope as JSON text."
        ),
        "type": "object",
        "properties": {
            entry_field: {
                "type": "string",
                "contentMediaType": "application/json",
                "description": f"The Envelope ({SCHEMAS}Envelope) encoded as UTF-8 JSON.",
            }
        },
        "required": [entry_field],
    }


def _dead_letter_schema() -> dict[str, Any]:
    entry_field = ENVELOPE_FIELD.decode()
    properties: dict[str, Any] = {
        entry_field: {
            "type": "string",
            "description": (
                "The original entry's envelope, byte for byte (possibly not valid JSON: that may be why it"
                " is here). Every other field of the original entry is kept as well."
            ),
        }
    }
    properties.update({name: {"type": "string", "description": text} for name, text in DLQ_FIELDS.items()})
    properties["dlq_deliveries"]["pattern"] = "^[0-9]+$"
    properties["dlq_failed_at_ms"]["pattern"] = "^[0-9]+$"
    return {
        "title": "DeadLetterEntry",
        "description": (
            f"The fields of one entry on a dead-letter stream `<stream>{DLQ_SUFFIX}`: the original entry's"
            " fields (normally its `envelope`) plus the `dlq_*` fields saying why, where from and when."
            " All values are strings, as on any Redis stream."
        ),
        "type": "object",
        "properties": properties,
        "required": sorted(DLQ_FIELDS),
    }


def _refuse_closed_objects(name: str, schema: Any, components: Mapping[str, Any], seen: set[str] | None = None) -> None:
    """An event payload, or a model inside one, that forbids unknown fields breaks schema evolution
    (an older consumer would refuse a newer producer's added field): refused."""
    seen = set() if seen is None else seen
    if isinstance(schema, dict):
        if schema.get("additionalProperties") is False:
            raise WiringError(
                f"{name}'s schema sets additionalProperties: false (forbid_unknown_fields on a wire type);"
                " consumers must accept fields that newer producers add"
            )
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMAS):
            target = ref.removeprefix(SCHEMAS)
            if target not in seen:
                seen.add(target)
                _refuse_closed_objects(target, components[target], components, seen)
        for value in schema.values():
            _refuse_closed_objects(name, value, components, seen)
    elif isinstance(schema, list):
        for value in schema:
            _refuse_closed_objects(name, value, components, seen)


def _refuse_later_keywords(name: str, schema: Any) -> None:
    if isinstance(schema, dict):
        later = _LATER_KEYWORDS & schema.keys()
        if later:
            raise WiringError(f"{name}'s JSON Schema uses {sorted(later)}, which AsyncAPI's draft-07 schemas ignore")
        for key, value in schema.items():
            if key not in ("default", "examples", "enum", "const"):
                _refuse_later_keywords(name, value)
    elif isinstance(schema, list):
        for value in schema:
            _refuse_later_keywords(name, value)


def _defaults() -> tuple[ConsumerOptions, dict[str, Any]]:
    settings = {f.name: f.default for f in msgspec.structs.fields(ServiceSettings)}
    return ConsumerOptions(), settings


def _delivery() -> dict[str, Any]:
    options, settings = _defaults()
    return {
        "guarantee": "at-least-once",
        "idempotencyKey": "the envelope's id",
        "streamEntryField": ENVELOPE_FIELD.decode(),
        "deadLetterStream": f"<stream>{DLQ_SUFFIX}",
        "deadLetterFields": sorted(DLQ_FIELDS),
        "maxDeliveries": options.max_deliveries,
        "retryBackoffMs": {"first": options.retry_backoff_ms, "max": options.max_retry_backoff_ms},
        "claimIdleMs": int(settings["stream_claim_idle_seconds"] * 1000),
        "newGroupStartId": options.start_id,
        "retentionHours": settings["stream_retention_hours"],
    }


def _discovery() -> dict[str, Any]:
    keys = service_keys(DISCOVERY_NAMESPACE, "<service>")
    settings = {f.name: f.default for f in msgspec.structs.fields(ServiceSettings)}
    return {
        "namespace": DISCOVERY_NAMESPACE,
        "keys": {"expiries": keys.expiries, "instances": keys.instances},
        "channel": keys.channel,
        "instanceSchema": f"{SCHEMAS}DiscoveryInstance",
        "changeSchema": f"{SCHEMAS}DiscoveryChange",
        "ttlSeconds": settings["discovery_ttl_seconds"],
        "ttlSetting": "DISCOVERY_TTL_SECONDS",
        "instanceId": "INSTANCE_ID, else <hostname>-<port>: unique within the service, stable across restarts"
        " (it also names the instance's member in its consumer groups)",
        "heartbeatEvery": "ttl / 3",
        "keyGraceTtls": KEY_GRACE_TTLS,
        "register": {
            "how": "EVAL registerScript with these KEYS and ARGV, on register (announce always) and every heartbeat (announce if_new)",
            "keys": ["<expiries key>", "<instances key>"],
            "argv": [
                "<instance_id>",
                "<DiscoveryInstance as JSON>",
                "<ttl in ms>",
                "<channel>",
                '<DiscoveryChange as JSON: {"change":"registered","instance_id":...}>',
                "always | if_new",
                f"<ttl in ms * {KEY_GRACE_TTLS}>",
            ],
            "returns": "1 if the instance was not live before (new, expired or lost), else 0",
        },
        "registerScript": _WRITE_SCRIPT.strip() + "\n",
        "deregister": [
            "MULTI",
            "ZREM <expiries key> <instance_id>",
            "HDEL <instances key> <instance_id>",
            'PUBLISH <channel> {"change":"deregistered","instance_id":"<instance_id>"}',
            "EXEC",
        ],
        "readLiveScript": _READ_LIVE_SCRIPT.strip() + "\n",
    }


def _info(module: ModuleType, streams: Sequence[str]) -> dict[str, Any]:
    options, settings = _defaults()
    entry_field = ENVELOPE_FIELD.decode()
    keys = service_keys(DISCOVERY_NAMESPACE, "<service>")
    version = importlib.import_module(module.__name__.partition(".")[0]).__version__
    description = f"""\
The events of the flotilla platform on Redis Streams, generated from the code (`./pants run
src/python/tools/release:release -- asyncapi`; CI fails when this file is stale). Every message
payload schema is the JSON Schema of the msgspec model that the Python services encode and decode.
`info.version` is the version of `flotilla_contracts`, the library that defines the events.

## Streams and the envelope

One stream per producing service: {", ".join(f"`{s}`" for s in streams)}. Each entry has exactly one
field, `{entry_field}`, whose value is the event's envelope as JSON (`components.schemas.Envelope`):
`id`, `type`, `version`, `occurred_at`, `source`, `correlation_id`, `causation_id`, `traceparent`
and the event itself as the nested object `payload`. `type` (`<service>.<EventName>`) is the `name`
of the message in `components.messages` whose payload schema the event fits; each message's
`x-stream` is the stream it travels on. Each consuming service reads a stream with its own consumer
group (`operations` with action `receive`); an entry of a type a group does not handle is acked
without effect.

## Delivery guarantees

- **At least once.** Producers write the event in the same database transaction as the change
  (an outbox) and a relay XADDs it after the commit: an event exists exactly when its change does,
  and a crash between XADD and marking it sent sends it again, with the same envelope `id`.
  A consumer acks an entry (XACK) only after its effects are committed; entries pending at a
  member that died are reclaimed (XAUTOCLAIM) after {settings["stream_claim_idle_seconds"]:g} s
  (`STREAM_CLAIM_IDLE_SECONDS`). A member starts with its own pending entries (id `0`), then new ones (`>`).
- **Consumers are idempotent by the envelope's `id`.** The Python consumers record each handled id
  per group in an inbox table in the transaction of the effects, and skip ids they have seen.
- **Retries, then dead letters.** A failed entry is retried with exponential backoff (from
  {options.retry_backoff_ms} ms, doubling, at most {options.max_retry_backoff_ms} ms); after
  {options.max_deliveries} deliveries it is moved to `<stream>{DLQ_SUFFIX}` with `dlq_reason` and
  `dlq_deliveries` (`components.schemas.DeadLetterEntry`), atomically with its ack (MULTI), so it is
  never in both places nor in neither. An undecodable entry (no `{entry_field}` field, not a valid
  envelope, or a payload that does not fit its type) is dead-lettered at once. Operators replay dead
  letters onto the original stream (the console, `streams-admin`): consumers then see the same ids again.
- **Order.** Entries of one stream are delivered in stream order, but a retried or reclaimed entry
  comes later than entries after it: handlers must not depend on the order of events.
- **Retention.** A publisher trims its stream to {settings["stream_retention_hours"]:g} hours
  (`STREAM_RETENTION_HOURS`), never past an entry a consumer group has not yet been delivered or
  still has pending. A new group starts at id `{options.start_id}`: it reads everything retained.

## Schema evolution

Producers add fields only with defaults; a field is never renamed, removed and reused, nor a tag
changed (a breaking change is a new event type). Consumers must therefore ignore unknown fields,
in the envelope and in payloads: no schema here sets `additionalProperties: false`.

## Discovery (for a service in any language)

A service registers each instance in the same Redis (`x-flotilla-discovery` has the details and the
exact scripts). Per service `<service>`: the sorted set `{keys.expiries}` (member = instance id,
score = expiry in milliseconds of Redis server time) and the hash `{keys.instances}` (field =
instance id, value = `components.schemas.DiscoveryInstance` as JSON: `service`, `instance_id`,
`url` (the base URL callers and the gateway use), `version`, `started_at`). Registering runs the
register script (Redis's clock sets the expiry: now + TTL); the instance then heartbeats, running it
again every TTL/3 (TTL `DISCOVERY_TTL_SECONDS`, default {settings["discovery_ttl_seconds"]:g} s); on
shutdown it removes itself (ZREM, HDEL and a `deregistered` announcement in one MULTI). Every change
is announced on the pub/sub channel `{keys.channel}` (`components.messages.DiscoveryChange`).
Readers see only unexpired instances. The gateway routes the paths of its route table
(`src/python/services/gateway/routes.toml`) to the live instances of the route's service.
"""
    return {"title": "Flotilla platform events", "version": version, "description": description}


def _servers() -> dict[str, Any]:
    return {
        "redis": {
            "host": "{host}:{port}",
            "protocol": "redis",
            "title": "The platform's Redis",
            "description": (
                "The one Redis of the platform: event streams, dead-letter streams and the discovery registry."
                " Each service gets it as REDIS_URL (redis://<host>:<port>/<db>)."
            ),
            "variables": {
                "host": {"default": "localhost", "description": "Redis host"},
                "port": {"default": "6379", "description": "Redis port"},
            },
        }
    }


def _stream_owner(stream: str) -> str:
    return stream.partition(".")[0]


def _channels(events: Sequence[EventChannel], streams: Sequence[str], wiring: Wiring) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for stream in streams:
        on_stream = [e for e in events if e.stream == stream]
        readers = sorted({g.group for g in wiring.groups if stream in g.streams})
        channels[stream] = {
            "address": stream,
            "title": stream,
            "description": (
                f"Redis stream of the events the {_stream_owner(stream)} service publishes. Each entry has one"
                f" field, `{ENVELOPE_FIELD.decode()}`: the Envelope as JSON (components.schemas.StreamEntry)."
                f" Read by the consumer groups: {_listed(readers)}."
            ),
            "messages": {e.name: {"$ref": MESSAGES + e.name} for e in on_stream},
        }
        dead = dlq_stream(stream)
        channels[dead] = {
            "address": dead,
            "title": dead,
            "description": (
                f"Dead letters of `{stream}`: entries a consumer group gave up on (after its retries) or could"
                " not decode, with the reason. Replayed onto the original stream by operators."
            ),
            "messages": {"DeadLetter": {"$ref": MESSAGES + "DeadLetter"}},
        }
    channels[DISCOVERY_CHANNEL] = {
        "address": channel_prefix(DISCOVERY_NAMESPACE) + "{service}",
        "title": "Discovery changes",
        "description": (
            "Redis pub/sub (not a stream): the registry announces here every instance of the service that"
            " registers, deregisters or is found expired. Resolvers re-read the service's instances on any message."
        ),
        "parameters": {"service": {"description": "The service's name, e.g. `orders`."}},
        "messages": {"DiscoveryChange": {"$ref": MESSAGES + "DiscoveryChange"}},
    }
    return channels


def _operations(events: Sequence[EventChannel], streams: Sequence[str], wiring: Wiring) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for stream in streams:
        on_stream = [e for e in events if e.stream == stream]
        for service in sorted({p for e in on_stream for p in e.producers}):
            sent = [e.name for e in on_stream if service in e.producers]
            how = (
                "through its transactional outbox (written in the transaction of the change, XADDed in order"
                " by a relay after the commit; resent after a crash, with the same event ids)"
                if wiring.outbox.get(service)
                else "directly (XADD)"
            )
            operations[f"{service}.send.{stream}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{stream}"},
                "title": f"{service} publishes to {stream}",
                "description": f"The {service} service publishes {_listed(sent)} to `{stream}` {how}.",
                "messages": [{"$ref": f"#/channels/{stream}/messages/{name}"} for name in sent],
                "x-service": service,
            }
        for group in (g for g in wiring.groups if stream in g.streams):
            handled = [e.name for e in on_stream if group in e.groups]
            effects = (
                "its effects and the event id (in the inbox) are committed in one transaction, then the entry"
                " is acked: effects happen once per event id"
                if group.inbox
                else "the entry is acked after its handler returns (no inbox: the handler itself must be"
                " idempotent by event id)"
            )
            operations[f"{group.group}.receive.{stream}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{stream}"},
                "title": f"Consumer group {group.group} reads {stream}",
                "description": (
                    f"The {group.service} service's consumer group `{group.group}` reads `{stream}` with"
                    f" XREADGROUP (one member per instance, named by its instance id) and handles"
                    f" {_listed(handled) if handled else 'none of its types'}; {effects}. Entries of other"
                    " types are acked without effect."
                ),
                "messages": [{"$ref": f"#/channels/{stream}/messages/{name}"} for name in handled],
                "x-service": group.service,
                "x-consumer-group": group.group,
            }
            dead = dlq_stream(stream)
            operations[f"{group.group}.deadLetter.{stream}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{dead}"},
                "title": f"Consumer group {group.group} dead-letters entries of {stream}",
                "description": (
                    f"An entry of `{stream}` that group `{group.group}` cannot decode, or still fails after its"
                    f" retries, goes to `{dead}` with the reason and its delivery count, acked on `{stream}` in"
                    " the same MULTI."
                ),
                "messages": [{"$ref": f"#/channels/{dead}/messages/DeadLetter"}],
                "x-service": group.service,
                "x-consumer-group": group.group,
            }
    change = {"$ref": f"#/channels/{DISCOVERY_CHANNEL}/messages/DiscoveryChange"}
    operations["discovery.announce"] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{DISCOVERY_CHANNEL}"},
        "title": "Instances announce their registration",
        "description": (
            "Every instance with a REDIS_URL registers, heartbeats and deregisters in the registry, whatever"
            " DISCOVERY is (DISCOVERY_REGISTER, on by default); the registry's scripts announce each change"
            " (x-flotilla-discovery)."
        ),
        "messages": [change],
    }
    operations["discovery.watch"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{DISCOVERY_CHANNEL}"},
        "title": "Resolvers watch registrations",
        "description": (
            "Every process that calls other services (the gateway first) keeps a cache of their live"
            " instances, subscribed to every service's channel, and re-reads a service when it announces a change."
        ),
        "messages": [change],
    }
    return operations


def _messages(events: Iterable[EventChannel]) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for event in events:
        groups = sorted({g.group for g in event.groups})
        messages[event.name] = {
            "name": event.tag,
            "title": event.name,
            "summary": f"{event.tag} on {event.stream}",
            "description": (
                f"Published by {_listed(event.producers) or 'no service'} to `{event.stream}`, handled by the"
                f" consumer groups {_listed(groups) or 'none'}. On the stream, this payload is the `payload` of an"
                f" Envelope whose `type` is `{event.tag}` and `version` {event.schema_version}."
            ),
            "contentType": "application/json",
            "payload": {"$ref": SCHEMAS + event.name},
            "x-stream": event.stream,
            "x-schema-version": event.schema_version,
        }
    messages["Envelope"] = {
        "name": "Envelope",
        "title": "Envelope",
        "summary": "Any event on any stream, as the stream entry's `envelope` field holds it",
        "contentType": "application/json",
        "payload": {"$ref": SCHEMAS + "Envelope"},
    }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "An entry a consumer group gave up on, with why",
        "description": "The fields of an entry on `<stream>.dlq` (components.schemas.DeadLetterEntry).",
        "payload": {"$ref": SCHEMAS + "DeadLetterEntry"},
    }
    messages["DiscoveryChange"] = {
        "name": "DiscoveryChange",
        "title": "Discovery change",
        "summary": "An instance registered, deregistered or expired",
        "contentType": "application/json",
        "payload": {"$ref": SCHEMAS + "DiscoveryChange"},
    }
    return messages


def _listed(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)
