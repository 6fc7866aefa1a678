"""The static scan of the services' stream wiring: consumer groups and published streams as the code
writes them, and a clear error, naming the place, for wiring it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest
from release.asyncapi.document import event_channels
from release.asyncapi.wiring import ConsumerGroup, Wiring, WiringError, scan_wiring
from release.cli import main
from release.usage import EventUsage

from flotilla_contracts.events import OrderConfirmed

ROOT = Path(__file__).resolve().parents[5]
EVENTS = "flotilla_contracts.events"
STREAMS = {"ORDERS_EVENTS": "orders.events", "CATALOG_EVENTS": "catalog.events", "PAYMENTS_EVENTS": "payments.events"}


def service(root: Path, name: str, source: str, file: str = "app.py") -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(source)


def test_the_platforms_wiring_is_read_from_the_services_apps() -> None:
    wiring = scan_wiring(ROOT / "src/python/services", STREAMS | {"INVENTORY_EVENTS": "inventory.events"}, EVENTS)
    assert wiring.groups == [
        ConsumerGroup("inventory", "inventory", ("orders.events", "catalog.events")),
        ConsumerGroup("notifications", "notifications", ("orders.events",)),
        ConsumerGroup("orders", "orders", ("inventory.events", "payments.events")),
        ConsumerGroup("payments", "payments", ("orders.events",)),
    ]
    assert wiring.publishes == {
        "catalog": ["catalog.events"],
        "inventory": ["inventory.events"],
        "notifications": [],
        "orders": ["orders.events"],
        "payments": ["payments.events"],
    }
    assert wiring.outbox == {
        "catalog": True,
        "inventory": True,
        "notifications": False,
        "orders": True,
        "payments": True,
    }


def test_streams_are_read_from_constants_module_attributes_and_literals_and_tests_are_skipped(tmp_path) -> None:
    service(
        tmp_path,
        "loyalty",
        "from flotilla_contracts import events as ev\n"
        "from flotilla_contracts.events import ORDERS_EVENTS as ORDERS\n"
        "a = ConsumerSpec(group='loyalty', streams=[ORDERS, ev.CATALOG_EVENTS, 'payments.events'], use_inbox=False)\n"
        "b = messaging(consumers=[a], publishes=[ev.PAYMENTS_EVENTS])\n",
    )
    service(tmp_path, "loyalty/tests", "ConsumerSpec(group=name, streams=streams)\n", file="test_app.py")

    wiring = scan_wiring(tmp_path, STREAMS, EVENTS)

    assert wiring.groups == [
        ConsumerGroup("loyalty", "loyalty", ("orders.events", "catalog.events", "payments.events"), inbox=False)
    ]
    assert wiring.publishes == {"loyalty": ["payments.events"]}
    assert wiring.outbox == {"loyalty": False}


@pytest.mark.parametrize(
    "source, complaint",
    [
        ("ConsumerSpec(group=name, streams=['orders.events'])", "group must be a string literal, not name"),
        ("ConsumerSpec(group='g', streams=[SOMEWHERE])", "cannot tell which stream 'SOMEWHERE' is"),
        ("ConsumerSpec(group='g', streams=computed())", "streams must be a literal list, not 'computed()'"),
        ("ConsumerSpec(group='g', handlers=h)", "ConsumerSpec without streams=[...]"),
    ],
)
def test_wiring_the_scan_cannot_read_is_an_error_naming_the_place(tmp_path, source, complaint) -> None:
    service(tmp_path, "loyalty", f"x = 1\n{source}\n")
    with pytest.raises(WiringError) as raised:
        scan_wiring(tmp_path, STREAMS, EVENTS)
    assert complaint in str(raised.value)
    assert f"{tmp_path / 'loyalty' / 'app.py'}:2" in str(raised.value)


def test_a_producer_that_does_not_declare_its_events_stream_is_an_error() -> None:
    usage = {"OrderConfirmed": EventUsage(producers={"orders": ["orders/saga.py:1"]})}
    wiring = Wiring(publishes={"orders": ["payments.events"]})
    with pytest.raises(WiringError, match="orders produces OrderConfirmed .* belongs on 'orders.events'"):
        event_channels([OrderConfirmed], ["orders.events", "payments.events"], usage, wiring)


def test_the_cli_checks_the_committed_document(capsys) -> None:
    assert main(["--root", str(ROOT), "asyncapi", "--check"]) == 0
    assert "docs/asyncapi.json: up to date" in capsys.readouterr().out
