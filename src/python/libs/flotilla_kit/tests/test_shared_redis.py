"""The process's one Redis client: made from REDIS_URL at start-up, shared, closed at shutdown."""

import pytest
import redis.asyncio as redis
from litestar.testing import TestClient

from flotilla_kit.app import create_service_app
from flotilla_kit.settings import ServiceSettings, SettingsError
from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.waiting import eventually


def _settings(tmp_path, **overrides) -> ServiceSettings:
    return ServiceSettings(service_name="catalog", database_url=f"sqlite:///{tmp_path}/c.db", **overrides)


async def test_a_service_with_redis_gets_one_client_that_discovery_uses_and_shutdown_closes(tmp_path):
    server = start_redis()
    observer = redis.Redis.from_url(server.url)
    try:
        settings = _settings(tmp_path, redis_url=server.url, discovery="redis", instance_id="c-1")
        with TestClient(create_service_app(settings, version="1", route_handlers=[])) as http:
            assert http.app.state.resolver._client is http.app.state.redis

            async def ready() -> bool:  # once its first registration is written
                return http.get("/readyz").status_code == 200

            await eventually(ready, what="the service ready")
            assert len(await observer.client_list()) > 1
        await eventually(lambda: _connections_are(observer, 1), what="the service's connections closed")
    finally:
        await observer.aclose()
        server.close()


async def _connections_are(observer, n: int) -> bool:
    return len(await observer.client_list()) == n


def test_a_service_without_redis_has_no_client(tmp_path):
    with TestClient(create_service_app(_settings(tmp_path), version="1", route_handlers=[])) as http:
        assert http.app.state.redis is None


def test_a_redis_url_redis_cannot_use_stops_start_up_naming_the_variable(tmp_path, caplog):
    settings = _settings(tmp_path, redis_url="http://127.0.0.1:6379")
    # The lifespan runs in a task group: the error comes out wrapped in its exception group.
    with pytest.RaisesGroup(pytest.RaisesExc(SettingsError, match="REDIS_URL: ")):
        with TestClient(create_service_app(settings, version="1", route_handlers=[])):
            pass
    assert "REDIS_URL: " in caplog.text and "redis://" in caplog.text
