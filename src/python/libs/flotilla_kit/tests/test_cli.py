import json
import logging
import socket

import msgspec
import pytest

from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.settings import ServiceSettings


class ShopSettings(ServiceSettings, kw_only=True, frozen=True):
    payment_api_token: str = ""
    page_size: int = 20


SHOP = ServiceDefinition(
    name="shop", version="1.0.0", settings_class=ShopSettings, create_app=lambda settings: None, default_port=8009
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No setting from the environment the tests run in; and the logging set-up main() replaces, restored."""
    for field in msgspec.structs.fields(ShopSettings):
        monkeypatch.delenv(field.encode_name.upper(), raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _settings_printed(capsys) -> dict:
    assert main(SHOP, ["settings"]) == 0
    return json.loads(capsys.readouterr().out)


def test_settings_prints_the_values_the_service_will_use_with_defaults_resolved(capsys):
    shown = _settings_printed(capsys)
    assert shown["service_name"] == "shop"
    assert shown["port"] == 8009
    assert shown["database_url"] == "sqlite+aiosqlite:///.data/shop.db"
    assert shown["instance_id"] == f"{socket.gethostname()}-8009"
    assert shown["public_url"] == "http://127.0.0.1:8009"
    assert shown["page_size"] == 20


def test_settings_masks_secrets(capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://shop:db-secret@db.internal/shop")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-secret@cache.internal:6379/0")
    monkeypatch.setenv("PAYMENT_API_TOKEN", "tok-secret")
    monkeypatch.setenv("INSTANCE_ID", "shop-7")
    output = json.dumps(shown := _settings_printed(capsys))
    assert "secret" not in output
    assert shown["database_url"] == "postgresql+asyncpg://shop:***@db.internal/shop"
    assert shown["redis_url"] == "redis://:***@cache.internal:6379/0"
    assert shown["payment_api_token"] == "***"
    assert shown["instance_id"] == "shop-7"


SAMPLE_MIGRATIONS = "flotilla_kit.tests.sample_service.migrations"


def _notes(migrations: str = SAMPLE_MIGRATIONS) -> ServiceDefinition:
    return ServiceDefinition(
        name="notes",
        version="1.0.0",
        settings_class=ShopSettings,
        create_app=lambda settings: None,
        default_port=8009,
        migrations=migrations,
    )


@pytest.fixture
def database(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/notes.db")


def _migrate(capsys, *args: str, service: ServiceDefinition | None = None) -> tuple[int, str, str]:
    code = main(service or _notes(), ["migrate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_upgrades_to_head_once(capsys, database):
    code, out, _ = _migrate(capsys)
    assert code == 0
    assert "applied  0001_create_notes\napplied  0002_add_note_author\n2 migration(s) applied" in out
    code, out, _ = _migrate(capsys)
    assert code == 0 and "0 migration(s) applied" in out


def test_migrate_status_shows_the_current_revision_the_head_and_what_is_pending(capsys, database):
    code, out, _ = _migrate(capsys, "--status")
    assert code == 0
    assert out.splitlines() == [
        "current  base (no revision)",
        "head     0002",
        "pending  0001_create_notes",
        "pending  0002_add_note_author",
    ]
    _migrate(capsys)
    assert _migrate(capsys, "--status")[1].splitlines() == ["current  0002", "head     0002", "up to date"]


def test_migrate_downgrade_reverts_to_the_revision_given(capsys, database):
    _migrate(capsys)
    code, out, _ = _migrate(capsys, "--downgrade", "-1")
    assert code == 0
    assert out.startswith("reverted  0002_add_note_author\n1 migration(s) reverted;") and out.endswith("is at 0001\n")
    code, out, _ = _migrate(capsys, "--downgrade", "base")
    assert code == 0 and out.endswith("is at base (no revision)\n")


@pytest.mark.parametrize("revision", ["0009", "-5"])
def test_migrate_downgrade_to_a_revision_it_cannot_reach_fails_naming_it(capsys, database, revision):
    _migrate(capsys)
    code, out, err = _migrate(capsys, "--downgrade", revision)
    assert code == 2
    assert err.startswith(f"notes: {SAMPLE_MIGRATIONS}: ") and revision in err
    assert _migrate(capsys, "--status")[1].startswith("current  0002")


def test_a_failing_migration_exits_non_zero_naming_the_revision(capsys, database, tmp_path, monkeypatch):
    package = tmp_path / "broken_notes" / "migrations"
    (package / "versions").mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "env.py").write_text("from flotilla_kit.migrations import run_env\n\nrun_env()\n")
    (package / "versions" / "0001_broken.py").write_text(
        'revision = "0001"\ndown_revision = None\n\n\ndef upgrade():\n    raise ValueError("bad data")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = _migrate(capsys, service=_notes("broken_notes.migrations"))
    assert code == 1
    assert "notes: migration failed: broken_notes.migrations: revision 0001_broken failed" in err
    assert "ValueError: bad data" in err


def test_migrate_status_and_downgrade_go_one_at_a_time(capsys, database):
    with pytest.raises(SystemExit) as usage:
        main(_notes(), ["migrate", "--status", "--downgrade", "base"])
    assert usage.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
