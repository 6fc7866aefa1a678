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
