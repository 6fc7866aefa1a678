"""``check`` and ``bump`` on a temporary copy of a lib (never the repository's files), with the
dependents (Pants) injected, and the producer/consumer scan over services' sources."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest
from release import schemas
from release.cli import main
from release.compat import BACKWARD, FORWARD
from release.usage import find_usage
from release.workflow import DependentsError, Workspace, bump, deploy_order, split_dependents

from flotilla_contracts.events import Event

ROOT = Path(__file__).resolve().parents[5]
REAL_CONTRACTS = ROOT / "src/python/libs/flotilla_contracts"
DAY = date(2025, 3, 14)

# What `./pants dependents --transitive src/python/libs/flotilla_contracts::` prints, in part.
PANTS_OUTPUT = [
    "src/python/libs/flotilla_streams/envelope.py",
    "src/python/libs/orders_client/__init__.py",
    "src/python/services/orders:orders",
    "src/python/services/orders/saga.py:src",
    "src/python/services/inventory/handlers.py:src",
    "src/python/services/inventory/tests/test_handlers.py:tests",
    "src/python/services/notifications/handlers.py:src",
    "src/python/services/payments/tests/test_api.py:tests",  # a test alone does not put it in the PEX
    "src/python/tools/stack:stack",
]

ORDERS_SAGA = """
from flotilla_contracts.events import ORDERS_EVENTS, OrderConfirmed

def follow_up(order):
    return OrderConfirmed(order_id=order.id, customer_id=order.customer_id, total=order.total)

async def step(outbox, session, order):
    await outbox.add(session, ORDERS_EVENTS, follow_up(order))
"""
INVENTORY_HANDLERS = """
from flotilla_contracts import events as ev

def register(handlers):
    handlers.on(ev.OrderConfirmed)(on_confirmed)

async def on_confirmed(event, ctx):
    await ctx.publish("inventory.events", ev.StockReserved(order_id=event.order_id))
"""
NOTIFICATIONS_HANDLERS = """
from flotilla_contracts.events import OrderConfirmed as Confirmed

def register(handlers):
    @handlers.on(Confirmed)
    async def on_confirmed(event, ctx):
        pass
"""
PAYMENTS_TEST = """
from flotilla_contracts.events import OrderConfirmed

def test_something(handlers):
    handlers.on(OrderConfirmed)
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A scratch repository: a copy of flotilla_contracts (VERSION, snapshot) and four small services."""
    libs = tmp_path / "src/python/libs"
    contracts = libs / "flotilla_contracts"
    shutil.copytree(REAL_CONTRACTS, contracts, ignore=shutil.ignore_patterns("__pycache__"))
    # The copy is released as 0.1.0 with today's models, whatever the real lib's version: the tests
    # read versions and changes against that baseline.
    (contracts / "VERSION").write_text("0.1.0\n")
    for snapshot in (contracts / "schemas").glob("*.json"):
        snapshot.unlink()
    baseline = schemas.build_document(
        schemas.defined_structs(schemas.lib_modules("flotilla_contracts")), lib="flotilla_contracts", version="0.1.0"
    )
    (contracts / "schemas/0.1.0.json").write_text(schemas.dumps(baseline))
    (libs / "orders_client").mkdir()
    (libs / "orders_client/VERSION").write_text("0.1.0\n")
    (libs / "flotilla_http").mkdir()
    (libs / "flotilla_http/VERSION").write_text("0.1.0\n")
    services = tmp_path / "src/python/services"
    for name, files in {
        "orders": {"saga.py": ORDERS_SAGA},
        "inventory": {"handlers.py": INVENTORY_HANDLERS},
        "notifications": {"handlers.py": NOTIFICATIONS_HANDLERS},
        "payments": {"tests/test_api.py": PAYMENTS_TEST},
    }.items():
        for file, text in files.items():
            (services / name / file).parent.mkdir(parents=True, exist_ok=True)
            (services / name / file).write_text(text)
        (services / name / "BUILD").write_text(f'python_sources(name="src")\npex_binary(name="{name}")\n')
    (tmp_path / "pants.toml").write_text("")
    return tmp_path


def order_confirmed_v2(required: bool) -> type[Event]:
    """OrderConfirmed with a new field: required (breaks backward) or nullable with a default."""
    field: tuple[Any, ...] = ("channel", str) if required else ("channel", str | None, None)
    from flotilla_contracts.catalog import Money

    cls = msgspec.defstruct(
        "OrderConfirmed",
        [("order_id", uuid.UUID), ("customer_id", str), ("total", Money), field],
        bases=(Event,),
        tag="orders.OrderConfirmed",
        kw_only=True,
        frozen=True,
    )
    return cls  # type: ignore[return-value]


def contracts_with(replacement: type[msgspec.Struct] | None) -> schemas.Document:
    """The real contracts' document, with one model swapped for a test version of it."""
    structs = schemas.defined_structs(schemas.lib_modules("flotilla_contracts"))
    if replacement is not None:
        structs = [replacement if s.__name__ == replacement.__name__ else s for s in structs]
    return schemas.build_document(structs, lib="flotilla_contracts")


def workspace(root: Path, replacement: type[msgspec.Struct] | None = None, calls: list[str] | None = None) -> Workspace:
    def dependents(where: Path, lib: str) -> list[str]:
        assert where == root
        if calls is not None:
            calls.append(lib)
        return PANTS_OUTPUT

    def collect(lib: str) -> schemas.Document:
        return contracts_with(replacement) if lib == "flotilla_contracts" else schemas.current_document(lib)

    return Workspace(root=root, collect=collect, dependents=dependents, today=lambda: DAY)


def lib_files(root: Path) -> Path:
    return root / "src/python/libs/flotilla_contracts"


def test_patch_bump_without_changes_writes_version_changelog_and_snapshot(repo: Path) -> None:
    real_version = (REAL_CONTRACTS / "VERSION").read_text()
    calls: list[str] = []
    result = bump(workspace(repo, calls=calls), "flotilla_contracts", "patch", "Docs only.")
    lib = lib_files(repo)
    assert (str(result.old), str(result.new)) == ("0.1.0", "0.1.1")
    assert (lib / "VERSION").read_text() == "0.1.1\n"
    log = (lib / "CHANGELOG.md").read_text()
    assert log.startswith("# Changelog\n")
    assert "## [0.1.1] - 2025-03-14" in log and "Docs only." in log
    old_snapshot = json.loads((lib / "schemas/0.1.0.json").read_text())
    new_snapshot = json.loads((lib / "schemas/0.1.1.json").read_text())
    assert new_snapshot == {**old_snapshot, "version": "0.1.1"}
    assert calls == ["flotilla_contracts"]
    assert result.services == ["inventory", "notifications", "orders"]  # not payments: only its tests use it
    assert result.libs == ["flotilla_streams", "orders_client"]
    assert result.plans == []
    # The repository's own files were not touched.
    assert (REAL_CONTRACTS / "VERSION").read_text() == real_version
    assert not (REAL_CONTRACTS / "schemas/0.1.1.json").exists()


def test_minor_bump_for_a_breaking_change_is_refused_and_writes_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    ws = workspace(repo, order_confirmed_v2(required=True), calls)
    before = sorted(p.name for p in lib_files(repo).iterdir())
    code = main(["bump", "flotilla_contracts", "minor", "-m", "channel"], workspace=ws)
    err = capsys.readouterr().err
    assert code == 2
    assert "a minor bump (0.1.0 -> 0.2.0) is too small" in err and "major bump (to 1.0.0 or later)" in err
    assert "OrderConfirmed.channel: FIELD_ADDED_REQUIRED [BREAKING backward]" in err
    assert "Traceback" not in err
    assert (lib_files(repo) / "VERSION").read_text() == "0.1.0\n"
    assert sorted(p.name for p in lib_files(repo).iterdir()) == before
    assert calls == []  # refused before asking Pants


def test_major_bump_for_a_new_required_field_orders_producers_before_consumers(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace(repo, order_confirmed_v2(required=True))
    assert main(["bump", "flotilla_contracts", "major", "-m", "Orders say where they came from."], workspace=ws) == 0
    out = capsys.readouterr().out
    lib = lib_files(repo)
    assert (lib / "VERSION").read_text() == "1.0.0\n"
    assert json.loads((lib / "schemas/1.0.0.json").read_text())["components"]["OrderConfirmed"]["required"][-1] == (
        "channel"
    )
    log = (lib / "CHANGELOG.md").read_text()
    assert "### Added" in log and "**Breaking (backward)**: `OrderConfirmed.channel`: FIELD_ADDED_REQUIRED" in log
    assert "rebuild and redeploy (their PEX contains flotilla_contracts): inventory, notifications, orders" in out
    assert (
        "orders.OrderConfirmed (OrderConfirmed): producers first [orders]; then consumers [inventory, notifications]"
        " once the old OrderConfirmed events have drained" in out
    )
    # After the bump the check is clean again: the new snapshot is the baseline.
    assert main(["check", "flotilla_contracts"], workspace=ws) == 0


def test_a_field_made_nullable_orders_consumers_before_producers(repo: Path) -> None:
    from flotilla_contracts.catalog import Money

    nullable = msgspec.defstruct(
        "OrderConfirmed",
        [("order_id", uuid.UUID), ("customer_id", str | None), ("total", Money)],
        bases=(Event,),
        tag="orders.OrderConfirmed",
        kw_only=True,
        frozen=True,
    )
    result = bump(workspace(repo, nullable), "flotilla_contracts", "major")
    (plan,) = result.plans
    assert plan.breaks == {FORWARD}
    assert plan.order.startswith("consumers first [inventory, notifications], then producers [orders]")


def test_compatible_change_takes_a_minor_bump_and_any_deploy_order(repo: Path) -> None:
    result = bump(workspace(repo, order_confirmed_v2(required=False)), "flotilla_contracts", "minor")
    assert str(result.new) == "0.2.0"
    (plan,) = result.plans
    assert plan.breaks == frozenset() and plan.order.startswith("any order")


def test_a_change_in_a_contained_model_plans_every_event_that_carries_it(repo: Path) -> None:
    # Money with a new nullable field, edited in the document: a second Money class would clash by name.
    document = contracts_with(None)
    money = document["components"]["Money"]
    money["properties"]["rate"] = {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None}
    ws = workspace(repo)
    ws.collect = lambda lib: document
    result = bump(ws, "flotilla_contracts", "minor")
    assert [c.line() for c in result.changes] == [
        "flotilla_contracts: Money.rate: FIELD_ADDED_OPTIONAL [compatible] default None"
    ]
    planned = {plan.event for plan in result.plans}
    assert {"OrderConfirmed", "OrderPlaced", "PaymentCaptured", "ProductCreated"} <= planned
    assert "StockReserved" not in planned


def test_check_fails_on_a_breaking_change_unless_the_major_version_is_already_past_the_snapshot(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace(repo, order_confirmed_v2(required=True))
    assert main(["check", "flotilla_contracts"], workspace=ws) == 1
    out = capsys.readouterr().out
    assert "flotilla_contracts: OrderConfirmed.channel: FIELD_ADDED_REQUIRED [BREAKING backward]" in out
    assert "needs a major bump (to 1.0.0 or later)" in out and "check: FAIL" in out
    (lib_files(repo) / "VERSION").write_text("1.0.0\n")
    assert main(["check", "--json", "flotilla_contracts"], workspace=ws) == 0
    report = json.loads(capsys.readouterr().out)
    (lib,) = report["libs"]
    assert report["ok"] and lib["needed"] == "major" and lib["snapshot"] == "0.1.0"
    assert lib["changes"][0]["rule"] == "FIELD_ADDED_REQUIRED" and lib["changes"][0]["breaks"] == [BACKWARD]


def test_check_passes_a_compatible_change_and_says_the_bump_it_needs(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"], workspace=workspace(repo, order_confirmed_v2(required=False))) == 0
    out = capsys.readouterr().out
    assert "FIELD_ADDED_OPTIONAL [compatible]" in out and "needs a minor bump (to 0.2.0 or later); ok" in out
    assert "orders_client 0.1.0 (snapshot none): no contract change; no models of its own" in out
    assert "flotilla_http" not in out  # not a contract lib


def test_bump_of_a_lib_without_models_writes_version_and_changelog_only(repo: Path) -> None:
    result = bump(workspace(repo), "flotilla_http", "minor", "Retries honour Retry-After.")
    lib = repo / "src/python/libs/flotilla_http"
    assert (lib / "VERSION").read_text() == "0.2.0\n"
    log = (lib / "CHANGELOG.md").read_text()  # created: the lib had none
    assert log.startswith("# Changelog\n") and "## [0.2.0] - 2025-03-14\n\nRetries honour Retry-After." in log
    assert not (lib / "schemas").exists() and result.changes == []


def test_changelog_entry_goes_above_the_last_release_and_below_unreleased(repo: Path) -> None:
    log = lib_files(repo) / "CHANGELOG.md"
    log.write_text("# Changelog\n\nIntro.\n\n## [Unreleased]\n\n- pending\n\n## [0.1.0] - 2025-01-01\n\n- first\n")
    bump(workspace(repo), "flotilla_contracts", "patch", "Second.")
    text = log.read_text()
    assert text.index("## [Unreleased]") < text.index("## [0.1.1] - 2025-03-14") < text.index("## [0.1.0]")
    assert text.startswith("# Changelog\n\nIntro.\n")


def test_bad_use_gets_a_message_and_exit_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = workspace(repo)
    assert main(["bump", "no_such_lib", "minor"], workspace=ws) == 2
    assert "unknown lib 'no_such_lib'" in capsys.readouterr().err
    (lib_files(repo) / "VERSION").write_text("one\n")
    assert main(["check", "flotilla_contracts"], workspace=ws) == 2
    assert "'one' is not a version MAJOR.MINOR.PATCH" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bump", "flotilla_contracts", "huge"], workspace=ws)
    assert exit_info.value.code == 2


def test_pants_failing_stops_the_bump_before_anything_is_written(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(root: Path, lib: str) -> list[str]:
        raise DependentsError("./pants --concurrent dependents --transitive src/python/libs/x:: failed (exit 1):\nboom")

    ws = Workspace(root=repo, collect=lambda lib: contracts_with(None), dependents=failing, today=lambda: DAY)
    assert main(["bump", "flotilla_contracts", "patch"], workspace=ws) == 1
    assert "boom" in capsys.readouterr().err
    assert (lib_files(repo) / "VERSION").read_text() == "0.1.0\n"
    assert (lib_files(repo) / "CHANGELOG.md").exists() == (REAL_CONTRACTS / "CHANGELOG.md").exists()
    if (REAL_CONTRACTS / "CHANGELOG.md").exists():
        assert (lib_files(repo) / "CHANGELOG.md").read_text() == (REAL_CONTRACTS / "CHANGELOG.md").read_text()
    assert not (lib_files(repo) / "schemas/0.1.1.json").exists()


def test_snapshot_refuses_to_rewrite_a_released_version_with_other_models(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace(repo, order_confirmed_v2(required=False))
    assert main(["snapshot", "flotilla_contracts"], workspace=ws) == 2
    assert "0.1.0 is released; bump the version instead" in capsys.readouterr().err
    assert main(["snapshot", "flotilla_contracts"], workspace=workspace(repo)) == 0  # same models: unchanged


def test_split_dependents_keeps_services_with_a_pex_and_other_libs(repo: Path) -> None:
    services, libs = split_dependents(repo, "flotilla_contracts", PANTS_OUTPUT)
    assert services == ["inventory", "notifications", "orders"]
    assert libs == ["flotilla_streams", "orders_client"]


def test_usage_scan_finds_producers_and_consumers_through_aliases_and_skips_tests(repo: Path) -> None:
    usage = find_usage(
        repo / "src/python/services", ["OrderConfirmed", "StockReserved"], ["flotilla_contracts.events"], base=repo
    )
    assert sorted(usage["OrderConfirmed"].producers) == ["orders"]
    assert sorted(usage["OrderConfirmed"].consumers) == ["inventory", "notifications"]
    assert sorted(usage["StockReserved"].producers) == ["inventory"]
    assert usage["OrderConfirmed"].producers["orders"] == ["src/python/services/orders/saga.py:5"]


def test_usage_scan_of_the_real_services_matches_the_saga() -> None:
    services = ROOT / "src/python/services"
    events = ["OrderPlaced", "OrderConfirmed", "OrderCancelled", "PaymentRequested", "StockReserved", "ProductCreated"]
    usage = find_usage(services, events, ["flotilla_contracts.events"], base=ROOT)
    assert sorted(usage["OrderPlaced"].producers) == ["orders"]
    assert sorted(usage["OrderPlaced"].consumers) == ["inventory"]
    assert sorted(usage["OrderConfirmed"].consumers) == ["inventory", "notifications"]
    assert sorted(usage["OrderCancelled"].consumers) == ["inventory", "notifications", "payments"]
    assert sorted(usage["PaymentRequested"].consumers) == ["payments"]
    assert sorted(usage["StockReserved"].producers) == ["inventory"]
    assert sorted(usage["ProductCreated"].producers) == ["catalog"]  # built in domain.py, published by api.py


def test_deploy_order_rules() -> None:
    assert deploy_order(frozenset(), "E", ["p"], ["c"]).startswith("any order")
    assert deploy_order(frozenset({FORWARD}), "E", ["p"], ["c"]).startswith("consumers first [c], then producers [p]")
    assert deploy_order(frozenset({BACKWARD}), "E", ["p"], ["c"]).startswith("producers first [p]; then consumers [c]")
    assert "add a new event type (e.g. EV2)" in deploy_order(frozenset({FORWARD, BACKWARD}), "E", ["p"], ["c"])
