"""The AsyncAPI document: valid AsyncAPI 3.0.0, committed up to date, and true to the code: every event
type on its stream with the groups that handle it, payload schemas that accept what the producers
really encode (also with a field a newer producer added), and stream entries, dead letters and
discovery records on a real Redis exactly as documented."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from release.asyncapi import DOCUMENT_PATH, run, stale_paths
from release.asyncapi.document import DLQ_FIELDS, build_document
from release.asyncapi.validation import validate
from release.schemas import dumps

import flotilla_contracts.events as events_module
from flotilla_contracts.catalog import Money
from flotilla_contracts.events import Event, event_type
from flotilla_contracts.orders import OrderLine
from flotilla_discovery.instance import Instance
from flotilla_discovery.registry import RedisRegistry
from flotilla_kit.testing.redis import RedisServer, start_redis
from flotilla_kit.testing.waiting import eventually
from flotilla_redis.factory import create_redis
from flotilla_streams.dlq import DeadLetter, dead_letter, dlq_stream
from flotilla_streams.envelope import PayloadDecoder, decode, encode, wrap
from flotilla_streams.publisher import Publisher

ROOT = Path(__file__).resolve().parents[5]
EVENT_CLASSES = sorted(
    (
        value
        for value in vars(events_module).values()
        if isinstance(value, type) and issubclass(value, Event) and value is not Event
    ),
    key=lambda cls: cls.__name__,
)

# What the services' code says today: the stream, the producing services and the receiving groups.
EXPECTED = {
    "ProductCreated": ("catalog.events", ["catalog"], ["inventory"]),
    "ProductPriceChanged": ("catalog.events", ["catalog"], []),
    "ProductDeactivated": ("catalog.events", ["catalog"], []),
    "OrderPlaced": ("orders.events", ["orders"], ["inventory"]),
    "PaymentRequested": ("orders.events", ["orders"], ["payments"]),
    "OrderConfirmed": ("orders.events", ["orders"], ["inventory", "notifications"]),
    "OrderCancelled": ("orders.events", ["orders"], ["inventory", "notifications", "payments"]),
    "StockReserved": ("inventory.events", ["inventory"], ["orders"]),
    "StockRejected": ("inventory.events", ["inventory"], ["orders"]),
    "PaymentCaptured": ("payments.events", ["payments"], ["orders"]),
    "PaymentDeclined": ("payments.events", ["payments"], ["orders"]),
    "PaymentRefunded": ("payments.events", ["payments"], ["orders"]),
}

EUR = Money(amount=1250, currency="EUR")
ORDER = uuid.uuid4()


def sample(cls: type[Event]) -> Event:
    """A real event of each type, as its producer would build it."""
    product = uuid.uuid4()
    samples: dict[str, Event] = {
        "ProductCreated": events_module.ProductCreated(
            product_id=product, sku="SKU-1", name="Tea", price=EUR, active=True, version=1
        ),
        "ProductPriceChanged": events_module.ProductPriceChanged(
            product_id=product, sku="SKU-1", price=EUR, previous_price=Money(amount=990, currency="EUR"), version=2
        ),
        "ProductDeactivated": events_module.ProductDeactivated(product_id=product, sku="SKU-1", version=3),
        "OrderPlaced": events_module.OrderPlaced(
            order_id=ORDER,
            customer_id="alice",
            lines=[OrderLine(product_id=product, sku="SKU-1", quantity=2, unit_price=EUR)],
            total=Money(amount=2500, currency="EUR"),
        ),
        "PaymentRequested": events_module.PaymentRequested(
            order_id=ORDER, customer_id="alice", amount=EUR, card_token="tok_visa"
        ),
        "OrderConfirmed": events_module.OrderConfirmed(order_id=ORDER, customer_id="alice", total=EUR),
        "OrderCancelled": events_module.OrderCancelled(order_id=ORDER, customer_id="alice", reason="out of stock"),
        "StockReserved": events_module.StockReserved(order_id=ORDER),
        "StockRejected": events_module.StockRejected(
            order_id=ORDER,
            reason="short",
            shortages=[events_module.Shortage(product_id=product, requested=2, available=1)],
        ),
        "PaymentCaptured": events_module.PaymentCaptured(order_id=ORDER, payment_id=uuid.uuid4(), amount=EUR),
        "PaymentDeclined": events_module.PaymentDeclined(order_id=ORDER, reason="card declined"),
        "PaymentRefunded": events_module.PaymentRefunded(order_id=ORDER, payment_id=uuid.uuid4(), amount=EUR),
    }
    return samples[cls.__name__]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(ROOT)


def validator(document: dict[str, Any], schema_or_ref: dict[str, Any]) -> jsonschema.Draft7Validator:
    """A draft-07 validator of one schema of the document, its ``#/components/schemas/...`` refs resolved
    against the document (the way any JSON Schema library resolves them given the whole document)."""
    root = {**schema_or_ref, "components": document["components"]}
    return jsonschema.Draft7Validator(root, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def payload_validator(document: dict[str, Any], message: str) -> jsonschema.Draft7Validator:
    return validator(document, document["components"]["messages"][message]["payload"])


def schema_validator(document: dict[str, Any], name: str) -> jsonschema.Draft7Validator:
    return validator(document, {"$ref": f"#/components/schemas/{name}"})


# The document as a whole


def test_the_document_is_valid_against_the_official_asyncapi_3_schema(document) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert validate(document) == []


def test_the_validator_refuses_what_asyncapi_3_does_not_allow(document) -> None:
    broken = copy.deepcopy(document)
    broken["operations"]["orders.send.orders.events"]["action"] = "publish"  # AsyncAPI 2's word
    broken["channels"]["orders.events"]["bogus"] = True
    problems = validate(broken)
    assert any("operations.orders.send.orders.events" in p for p in problems), problems
    assert any("channels.orders.events" in p and "bogus" in p for p in problems), problems


def test_the_validator_reports_references_that_point_nowhere(document) -> None:
    broken = copy.deepcopy(document)
    broken["channels"]["orders.events"]["messages"]["OrderConfirmed"] = {"$ref": "#/components/messages/Nope"}
    broken["operations"]["payments.receive.orders.events"]["messages"] = [
        {"$ref": "#/channels/payments.events/messages/PaymentCaptured"}
    ]
    problems = validate(broken)
    assert (
        "at channels.orders.events.messages.OrderConfirmed: $ref #/components/messages/Nope points nowhere" in problems
    )
    assert any("operations.payments.receive.orders.events" in p and "not one of" in p for p in problems), problems


def test_the_committed_document_is_what_the_code_gives() -> None:
    committed = (ROOT / DOCUMENT_PATH).read_text()
    assert committed == dumps(
        build_document(ROOT)
    ), "docs/asyncapi.json is stale: run `./pants run src/python/tools/release:release -- asyncapi`"


def test_building_twice_gives_the_same_bytes() -> None:
    assert dumps(build_document(ROOT)) == dumps(build_document(ROOT))


def test_check_passes_on_the_written_document_and_names_what_changed_after_an_edit(tmp_path, capsys) -> None:
    path = tmp_path / "asyncapi.json"
    assert run(ROOT, path) == 0
    assert run(ROOT, path, check=True) == 0
    edited = json.loads(path.read_text())
    del edited["components"]["messages"]["OrderConfirmed"]
    edited["components"]["schemas"]["Money"]["properties"]["amount"]["type"] = "string"
    edited["channels"]["orders.events"]["x-old"] = True
    path.write_text(dumps(edited))
    capsys.readouterr()

    assert run(ROOT, path, check=True) == 1

    err = capsys.readouterr().err
    assert "is stale" in err
    assert "added: components.messages.OrderConfirmed" in err  # the code has it, the file lost it
    assert "changed: components.schemas.Money.properties.amount.type" in err
    assert "removed: channels.orders.events.x-old" in err


def test_check_fails_on_a_missing_document_and_on_a_reformatted_one(tmp_path, capsys) -> None:
    path = tmp_path / "asyncapi.json"
    assert run(ROOT, path, check=True) == 1
    assert "is missing" in capsys.readouterr().err
    path.write_text(json.dumps(build_document(ROOT)))  # same content, not the committed formatting
    assert run(ROOT, path, check=True) == 1
    assert "formatted differently" in capsys.readouterr().err


def test_stale_paths_lists_nothing_for_equal_documents_and_each_difference_otherwise() -> None:
    assert stale_paths({"a": {"b": 1}}, {"a": {"b": 1}}) == []
    assert stale_paths({"a": {"b": 1, "c": 2}}, {"a": {"b": 2, "d": 3}}) == [
        "changed: a.b",
        "removed: a.c",
        "added: a.d",
    ]


# Events, streams, producers and groups


def test_every_event_type_of_the_contracts_is_a_message_on_its_streams_channel(document) -> None:
    messages = document["components"]["messages"]
    streams = {v for k, v in vars(events_module).items() if k.endswith("_EVENTS") and isinstance(v, str)}
    assert {cls.__name__ for cls in EVENT_CLASSES} <= messages.keys()
    for cls in EVENT_CLASSES:
        message = messages[cls.__name__]
        stream = message["x-stream"]
        assert message["name"] == event_type(cls)
        assert stream in streams and stream == event_type(cls).split(".")[0] + ".events"
        assert message["payload"] == {"$ref": f"#/components/schemas/{cls.__name__}"}
        assert document["channels"][stream]["address"] == stream
        assert document["channels"][stream]["messages"][cls.__name__] == {
            "$ref": f"#/components/messages/{cls.__name__}"
        }
    for stream in streams:
        assert document["channels"][dlq_stream(stream)]["address"] == f"{stream}.dlq"


def test_each_event_is_sent_by_its_producer_and_received_by_the_groups_that_handle_it(document) -> None:
    assert sorted(EXPECTED) == sorted(cls.__name__ for cls in EVENT_CLASSES), "a new event: add it to EXPECTED"
    found = {}
    for name, (stream, _, _) in EXPECTED.items():
        ref = f"#/channels/{stream}/messages/{name}"
        senders, receivers = [], []
        for operation in document["operations"].values():
            if ref in [m["$ref"] for m in operation["messages"]]:
                assert operation["channel"] == {"$ref": f"#/channels/{stream}"}
                if operation["action"] == "send":
                    senders.append(operation["x-service"])
                else:
                    receivers.append(operation["x-consumer-group"])
        found[name] = (stream, sorted(senders), sorted(receivers))
    assert found == EXPECTED


def test_every_consumer_group_dead_letters_to_the_dlq_of_each_stream_it_reads(document) -> None:
    operations = document["operations"]
    for operation in operations.values():
        if operation["action"] != "receive" or "x-consumer-group" not in operation:
            continue
        stream = operation["channel"]["$ref"].removeprefix("#/channels/")
        dead = operations[f"{operation['x-consumer-group']}.deadLetter.{stream}"]
        assert dead["action"] == "send"
        assert dead["channel"] == {"$ref": f"#/channels/{stream}.dlq"}


def test_the_delivery_guarantees_are_stated(document) -> None:
    description = document["info"]["description"]
    for promise in (
        "At least once",
        "idempotent by the envelope's `id`",
        "<stream>.dlq",
        "dlq_reason",
        "dlq_deliveries",
    ):
        assert promise in description
    assert document["x-flotilla-delivery"]["guarantee"] == "at-least-once"


# Payload schemas against real events


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_the_payload_schema_accepts_a_real_encoded_event_also_with_an_added_field(document, cls) -> None:
    envelope = json.loads(encode(wrap(sample(cls), source="test")))
    payload = envelope["payload"]
    payloads = payload_validator(document, cls.__name__)
    payloads.validate(payload)
    schema_validator(document, "Envelope").validate(envelope)

    newer = {**payload, "gift_note": "from a newer producer"}
    payloads.validate(newer)
    # The Python consumers agree: the added field is ignored, the rest decodes.
    newer_envelope = {**envelope, "payload": newer, "partition_hint": 3}
    schema_validator(document, "Envelope").validate(newer_envelope)
    decoded = PayloadDecoder([cls]).decode(decode(json.dumps(newer_envelope).encode()))
    assert decoded == msgspec.json.decode(json.dumps(payload).encode(), type=cls)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_the_payload_schema_refuses_a_payload_without_a_required_field_or_of_another_type(document, cls) -> None:
    payload = json.loads(msgspec.json.encode(sample(cls)))
    payloads = payload_validator(document, cls.__name__)
    assert not payloads.is_valid({k: v for k, v in payload.items() if k != "order_id" and k != "product_id"})
    assert not payloads.is_valid({**payload, "type": "somewhere.SomethingElse"})


def test_no_schema_forbids_unknown_fields(document) -> None:
    assert '"additionalProperties": false' not in dumps(document)


# On a real Redis, as documented


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.close()


@pytest.fixture
async def client(redis_server) -> AsyncIterator[Any]:
    client = create_redis(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


async def test_a_published_entry_is_one_envelope_field_holding_a_documented_envelope(document, client) -> None:
    published = await Publisher(client, source="orders").publish("orders.events", sample(events_module.OrderConfirmed))

    [(_, fields)] = await client.xrange("orders.events")

    entry = {k.decode(): v.decode() for k, v in fields.items()}
    assert set(entry) == set(document["components"]["schemas"]["StreamEntry"]["properties"])
    schema_validator(document, "StreamEntry").validate(entry)
    envelope = json.loads(entry["envelope"])
    schema_validator(document, "Envelope").validate(envelope)
    assert set(envelope) == set(document["components"]["schemas"]["Envelope"]["properties"])
    assert envelope["id"] == published.id and envelope["type"] == "orders.OrderConfirmed"
    payload_validator(document, "OrderConfirmed").validate(envelope["payload"])


async def test_a_dead_letter_has_exactly_the_documented_fields(document, client) -> None:
    await Publisher(client, source="orders").publish("orders.events", sample(events_module.OrderPlaced))
    await client.xgroup_create("orders.events", "inventory", id="0")
    [[_, [(entry_id, fields)]]] = await client.xreadgroup("inventory", "inv-1", {"orders.events": ">"})

    await dead_letter(client, "orders.events", "inventory", "inv-1", [DeadLetter(entry_id, fields, "boom", 5)])

    [(_, dead)] = await client.xrange("orders.events.dlq")
    entry = {k.decode(): v.decode() for k, v in dead.items()}
    assert set(entry) == {"envelope", *DLQ_FIELDS}
    schema_validator(document, "DeadLetterEntry").validate(entry)
    assert entry["dlq_reason"] == "boom" and entry["dlq_deliveries"] == "5"


async def test_an_instance_registered_by_the_documented_script_is_found_by_the_python_registry(
    document, client
) -> None:
    """What a service in another language does: EVAL the document's register script with the
    documented keys and arguments; the Python registry (the gateway's view) then sees it."""
    discovery = document["x-flotilla-discovery"]
    keys = {name: key.replace("<service>", "loyalty") for name, key in discovery["keys"].items()}
    channel = discovery["channel"].replace("<service>", "loyalty")
    instance = {"service": "loyalty", "instance_id": "node-1", "url": "http://127.0.0.1:9100", "version": "0.1.0"}
    schema_validator(document, "DiscoveryInstance").validate(instance)
    ttl_ms = int(discovery["ttlSeconds"] * 1000)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1.0)  # the subscription's confirmation

    registered = await client.eval(
        discovery["registerScript"],
        2,
        keys["expiries"],
        keys["instances"],
        "node-1",
        json.dumps(instance),
        ttl_ms,
        channel,
        json.dumps({"change": "registered", "instance_id": "node-1"}),
        "always",
        ttl_ms * discovery["keyGraceTtls"],
    )

    assert registered == 1
    found = await RedisRegistry(client, ttl_seconds=discovery["ttlSeconds"]).instances("loyalty")
    assert found == [Instance(service="loyalty", instance_id="node-1", url="http://127.0.0.1:9100", version="0.1.0")]
    announced = await _next_message(pubsub)
    schema_validator(document, "DiscoveryChange").validate(json.loads(announced))
    await pubsub.aclose()


async def test_a_python_registration_is_stored_as_documented(document, client) -> None:
    discovery = document["x-flotilla-discovery"]
    registry = RedisRegistry(client, ttl_seconds=discovery["ttlSeconds"])
    instance = Instance(service="orders", instance_id="orders-1", url="http://127.0.0.1:8003", started_at=time.time())

    await registry.register(instance)

    keys = {name: key.replace("<service>", "orders") for name, key in discovery["keys"].items()}
    stored = await client.hget(keys["instances"], "orders-1")
    schema_validator(document, "DiscoveryInstance").validate(json.loads(stored))
    assert await client.zscore(keys["expiries"], "orders-1") is not None


async def _next_message(pubsub: Any) -> bytes:
    received: list[bytes] = []

    async def arrived() -> bool:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            received.append(message["data"])
        return bool(received)

    await eventually(arrived, timeout=10.0, what="an announcement on the discovery channel")
    return received[0]
