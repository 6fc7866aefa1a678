"""A service registers itself when Redis discovery is configured, and deregisters on shutdown."""

import pytest
import redis.asyncio as redis
from litestar.testing import TestClient

from flotilla_discovery.registry import RedisRegistry
from flotilla_discovery.static_resolver import StaticResolver
from flotilla_kit.app import create_service_app
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.waiting import eventually


@pytest.fixture(scope="module")
def redis_url():
    server = start_redis()
    yield server.url
    server.close()


def _settings(tmp_path, **overrides) -> ServiceSettings:
    return ServiceSettings(service_name="catalog", port=8123, database_url=f"sqlite:///{tmp_path}/c.db", **overrides)


async def test_a_service_is_registered_while_it_runs(tmp_path, redis_url):
    settings = _settings(
        tmp_path, discovery="redis", redis_url=redis_url, instance_id="catalog-a", public_url="http://10.0.0.5:8123/"
    )
    registry = RedisRegistry(redis.Redis.from_url(redis_url))

    async def registered() -> list[tuple[str, str, str]]:
        return [(i.instance_id, i.url, i.version) for i in await registry.instances("catalog")]

    with TestClient(create_service_app(settings, version="2.0.1", route_handlers=[])):
        await eventually(
            lambda: _equals(registered(), [("catalog-a", "http://10.0.0.5:8123", "2.0.1")]), what="registered"
        )
    assert await registered() == []


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected


def test_static_mode_gives_the_app_a_resolver(tmp_path):
    settings = _settings(tmp_path, discovery="static", service_urls="inventory=http://127.0.0.1:8002")
    with TestClient(create_service_app(settings, version="1", route_handlers=[])) as client:
        assert isinstance(client.app.state.resolver, StaticResolver)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"discovery": "redis"}, "DISCOVERY=redis needs REDIS_URL"),
        ({"discovery": "static", "service_urls": "nonsense"}, "SERVICE_URLS='nonsense'"),
    ],
)
def test_incomplete_discovery_settings_stop_start_up(tmp_path, caplog, overrides, message):
    with pytest.raises(BaseException):  # noqa: B017 - the server's exception group; the log says why
        with TestClient(create_service_app(_settings(tmp_path, **overrides), version="1", route_handlers=[])):
            pass
    assert message in caplog.text


def test_the_public_url_defaults_to_host_and_port(tmp_path):
    assert _settings(tmp_path, host="127.0.0.1").resolved_public_url() == "http://127.0.0.1:8123"
    assert not _settings(tmp_path, host="0.0.0.0").resolved_public_url().startswith("http://0.0.0.0")
