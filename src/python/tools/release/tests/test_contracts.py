"""The committed snapshot of flotilla_contracts against the code, and the snapshot's own properties."""

from __future__ import annotations

import inspect
from pathlib import Path

import msgspec
from release import schemas
from release.compat import compare
from release.versions import newest_snapshot, read_version, snapshot_path

import flotilla_contracts.events as events_module
from flotilla_contracts.events import Event, event_type

ROOT = Path(__file__).resolve().parents[5]
CONTRACTS = ROOT / "src/python/libs/flotilla_contracts"
CLIENTS = sorted(p.name for p in (ROOT / "src/python/libs").glob("*_client"))


def committed() -> schemas.Document:
    version = newest_snapshot(CONTRACTS)
    assert version is not None, "flotilla_contracts has no snapshot: run `release snapshot flotilla_contracts`"
    return schemas.load(snapshot_path(CONTRACTS, version))


def test_current_contracts_against_their_own_snapshot_have_no_change() -> None:
    assert compare(committed(), schemas.current_document("flotilla_contracts")) == []


def test_the_snapshot_of_the_current_version_is_what_the_code_gives_byte_for_byte() -> None:
    version = read_version(CONTRACTS)
    document = {**schemas.current_document("flotilla_contracts"), "version": str(version)}
    assert snapshot_path(CONTRACTS, version).read_text() == schemas.dumps(document)


def test_building_the_document_twice_gives_the_same_text() -> None:
    first = schemas.dumps(schemas.current_document("flotilla_contracts"))
    structs = schemas.defined_structs(schemas.lib_modules("flotilla_contracts"))
    second = schemas.dumps(schemas.build_document(list(reversed(structs)), lib="flotilla_contracts"))
    assert first == second


def test_every_event_class_is_in_the_snapshot_with_its_envelope_type_and_version() -> None:
    classes = [
        cls
        for cls in vars(events_module).values()
        if inspect.isclass(cls) and issubclass(cls, Event) and cls is not Event
    ]
    snapshot_events = committed()["events"]
    assert sorted(snapshot_events) == sorted(cls.__name__ for cls in classes)
    for cls in classes:
        entry = snapshot_events[cls.__name__]
        assert entry["tag"] == event_type(cls)  # the envelope's "type"
        assert entry["schema_version"] == cls.schema_version  # the envelope's "version"
        assert committed()["models"][cls.__name__]["tag_field"] == "type"


def test_every_struct_of_the_contracts_is_a_model_of_the_snapshot() -> None:
    structs = schemas.defined_structs(schemas.lib_modules("flotilla_contracts"))
    assert {s.__name__ for s in structs} == set(committed()["models"])
    assert all(issubclass(s, msgspec.Struct) for s in structs)


def test_clients_define_no_models_of_their_own_so_only_contracts_are_snapshotted() -> None:
    assert CLIENTS, "expected *_client libs"
    for client in CLIENTS:
        assert not schemas.has_models(schemas.current_document(client)), client
        assert not (ROOT / "src/python/libs" / client / "schemas").exists()
