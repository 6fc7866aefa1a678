"""A service with a REDIS_URL registers itself, whatever its discovery mode, and deregisters on shutdown."""

import os
import signal
import sys

import pytest
import redis as sync_redis
import redis.asyncio as redis
from litestar.testing import TestClient

from flotilla_discovery.redis_resolver import RedisResolver
from flotilla_discovery.redis_store import RedisStore, service_keys
from flotilla_discovery.registry import RedisRegistry
from flotilla_discovery.static_resolver import StaticResolver
from flotilla_kit.app import create_service_app
from flotilla_kit.settings import ServiceSettings, SettingsError
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.waiting import eventually, eventually_sync
from flotilla_kit.tests import demo_service


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
    client = redis.Redis.from_url(redis_url)
    registry = RedisRegistry(client)

    async def registered() -> list[tuple[str, str, str]]:
        return [(i.instance_id, i.url, i.version) for i in await registry.instances("catalog")]

    with TestClient(create_service_app(settings, version="2.0.1", route_handlers=[])):
        await eventually(
            lambda: _equals(registered(), [("catalog-a", "http://10.0.0.5:8123", "2.0.1")]), what="registered"
        )
        resolver = RedisResolver(client)
        assert [i.instance_id for i in await resolver.instances("catalog")] == ["catalog-a"]  # routable
        await resolver.close()
    assert await registered() == []
    await client.aclose()


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected


async def test_a_heartbeat_stopped_by_an_unexpected_error_is_not_ready_restarts_and_registers_again(
    tmp_path, redis_url, monkeypatch
):
    settings = _settings(
        tmp_path,
        discovery="redis",
        redis_url=redis_url,
        instance_id="catalog-bug",
        public_url="http://10.0.0.6:8123",
        discovery_ttl_seconds=0.6,
    )
    write = RedisStore.write
    bug = {"present": False}

    async def write_with_a_bug(self, *args, **kwargs):
        # Not a Redis or OS error: nothing in the heartbeat expects it.
        if bug["present"]:
            raise ValueError("a bug in the heartbeat")
        return await write(self, *args, **kwargs)

    monkeypatch.setattr(RedisStore, "write", write_with_a_bug)
    observer = redis.Redis.from_url(redis_url)
    registry = RedisRegistry(observer)
    with TestClient(create_service_app(settings, version="1", route_handlers=[])) as http:
        await eventually(lambda: _ready(http), what="ready")
        bug["present"] = True
        await eventually(
            lambda: _not_ready_because(http, "discovery registration: failed", "ValueError: a bug in the heartbeat"),
            what="readiness failing while the heartbeat is down",
        )
        restarts = "flotilla_discovery_heartbeat_restarts_total"
        await eventually(lambda: _counted_at_least(http, restarts, 2), what="restarts counted, with backoff")
        assert http.get("/healthz").status_code == 200

        bug["present"] = False
        await eventually(lambda: _ready(http), what="ready again once the heartbeat runs")
        assert "catalog-bug" in [i.instance_id for i in await registry.instances("catalog")]
    await observer.aclose()


async def test_readiness_fails_once_the_registration_expires_and_recovers_when_it_registers_again(tmp_path):
    server = start_redis()  # its own: the test stops it
    try:
        settings = _settings(
            tmp_path,
            discovery="redis",
            redis_url=server.url,
            instance_id="catalog-c",
            public_url="http://10.0.0.7:8123",
            discovery_ttl_seconds=0.6,
        )
        with TestClient(create_service_app(settings, version="1", route_handlers=[])) as http:
            await eventually(lambda: _ready(http), what="ready")
            server.stop()  # heartbeats fail; past the TTL no caller finds this instance any more
            await eventually(
                lambda: _not_ready_because(http, "discovery registration: failed", "expired"),
                what="readiness failing once the registration expired",
            )
            # Same port, no persistence: the restarted Redis knows nothing, so being ready again
            # needs a re-registration.
            server.start()
            await eventually(lambda: _ready(http), what="ready again after re-registering")
            observer = redis.Redis.from_url(server.url)
            assert "catalog-c" in [i.instance_id for i in await RedisRegistry(observer).instances("catalog")]
            await observer.aclose()
    finally:
        server.close()


async def _ready(http) -> bool:
    return http.get("/readyz").status_code == 200


async def _not_ready_because(http, *parts: str) -> bool:
    answer = http.get("/readyz")
    return answer.status_code == 503 and all(part in answer.json()["detail"] for part in parts)


async def _counted_at_least(http, sample: str, n: float) -> bool:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1]) >= n
    return False


def test_static_mode_gives_the_app_a_resolver(tmp_path):
    settings = _settings(tmp_path, discovery="static", service_urls="inventory=http://127.0.0.1:8002")
    with TestClient(create_service_app(settings, version="1", route_handlers=[])) as client:
        assert isinstance(client.app.state.resolver, StaticResolver)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"discovery": "redis"}, "DISCOVERY=redis needs REDIS_URL"),
        ({"discovery": "static", "service_urls": "nonsense"}, "SERVICE_URLS='nonsense'"),
        ({"advertise_host": "10.0.0.5:8000"}, "ADVERTISE_HOST='10.0.0.5:8000': a host name or an IP address"),
        ({"advertise_host": "fe80::1%eth0"}, "ADVERTISE_HOST='fe80::1%eth0'"),
        ({"advertise_host": "$(POD_IP)"}, "ADVERTISE_HOST='$(POD_IP)'"),  # a manifest reference left unexpanded
        ({"advertise_host": "-pod"}, "ADVERTISE_HOST='-pod'"),
    ],
)
def test_incomplete_discovery_settings_are_refused_when_the_app_is_built(tmp_path, overrides, message):
    # Before any server starts, so the CLI reports them as a usage error (exit 2), not a failed start-up.
    with pytest.raises(SettingsError) as refused:
        create_service_app(_settings(tmp_path, **overrides), version="1", route_handlers=[])
    assert message in str(refused.value)


def test_the_public_url_defaults_to_host_and_port(tmp_path):
    assert _settings(tmp_path, host="127.0.0.1").resolved_public_url() == "http://127.0.0.1:8123"
    assert not _settings(tmp_path, host="0.0.0.0").resolved_public_url().startswith("http://0.0.0.0")


async def test_an_instance_with_an_internal_port_registers_where_its_metrics_answer(tmp_path, redis_url):
    port = free_port()
    settings = _settings(
        tmp_path, discovery="redis", redis_url=redis_url, instance_id="catalog-i", host="127.0.0.1", internal_port=port
    )
    registry = RedisRegistry(redis.Redis.from_url(redis_url))

    async def registered() -> list[tuple[str, str]]:
        return [(i.url, i.internal_url) for i in await registry.instances("catalog") if i.instance_id == "catalog-i"]

    with TestClient(create_service_app(settings, version="2.0.1", route_handlers=[])):
        expected = [("http://127.0.0.1:8123", f"http://127.0.0.1:{port}")]
        await eventually(lambda: _equals(registered(), expected), what="registered with its internal URL")


@pytest.mark.parametrize("mode", ["dns", "static", "none"])
async def test_an_instance_with_a_redis_url_registers_in_every_discovery_mode_at_its_advertised_host(
    tmp_path, redis_url, mode
):
    # As a pod runs: listening on every address, reached at its pod IP (ADVERTISE_HOST).
    port = free_port()
    settings = _settings(
        tmp_path,
        discovery=mode,
        redis_url=redis_url,
        instance_id=f"catalog-{mode}",
        host="0.0.0.0",
        advertise_host="127.0.0.1",
        internal_port=port,
    )
    observer = redis.Redis.from_url(redis_url)
    registry = RedisRegistry(observer)

    async def registered() -> list[tuple[str, str, str, bool]]:
        found = await registry.instances("catalog")
        return [(i.url, i.internal_url, i.version, i.routable) for i in found if i.instance_id == f"catalog-{mode}"]

    with TestClient(create_service_app(settings, version="2.0.2", route_handlers=[])) as http:
        # Registered to be seen, not to be called: a resolver of the registry does not route to it.
        expected = [("http://127.0.0.1:8123", f"http://127.0.0.1:{port}", "2.0.2", False)]
        await eventually(lambda: _equals(registered(), expected), what=f"registered in {mode} mode")
        resolver = RedisResolver(observer)
        assert f"catalog-{mode}" not in [i.instance_id for i in await resolver.instances("catalog")]
        await resolver.close()
        # Callers find it by DNS or a list here: the registry is not one of its readiness checks.
        assert "discovery registration" not in http.get("/readyz").json()["checks"]
    assert await registered() == [], "deregistered on shutdown"
    await observer.aclose()


async def test_discovery_register_false_keeps_the_instance_out_of_the_registry(tmp_path, redis_url, caplog):
    observer = redis.Redis.from_url(redis_url)
    registry = RedisRegistry(observer)
    for mode in ("dns", "redis"):
        settings = _settings(
            tmp_path, discovery=mode, redis_url=redis_url, instance_id=f"hidden-{mode}", discovery_register=False
        )
        with TestClient(create_service_app(settings, version="1", route_handlers=[])) as http:
            assert http.get("/readyz").status_code == 200
            assert f"hidden-{mode}" not in [i.instance_id for i in await registry.instances("catalog")]
    # In redis mode nothing else finds it: said once at start.
    assert "DISCOVERY_REGISTER=false: this instance is not registered, so no service can call it" in caplog.text
    await observer.aclose()


async def test_outside_redis_mode_a_registry_out_of_reach_leaves_the_instance_ready(tmp_path, caplog):
    server = start_redis()  # its own: the test stops it
    try:
        settings = _settings(
            tmp_path,
            discovery="dns",
            redis_url=server.url,
            instance_id="catalog-d",
            public_url="http://10.0.0.8:8123",
            discovery_ttl_seconds=0.6,
        )
        with TestClient(create_service_app(settings, version="1", route_handlers=[])) as http:
            observer = redis.Redis.from_url(server.url)
            await eventually(
                lambda: _contains(RedisRegistry(observer).instances("catalog"), "catalog-d"), what="registered"
            )
            await observer.aclose()
            server.stop()
            await eventually(
                lambda: _logged(caplog, "registry unreachable, catalog/catalog-d keeps retrying"),
                what="the heartbeat failing",
            )
            assert http.get("/readyz").status_code == 200
    finally:
        server.close()


async def _contains(awaitable, instance_id: str) -> bool:
    return instance_id in [i.instance_id for i in await awaitable]


async def _logged(caplog, text: str) -> bool:
    return text in caplog.text


def test_an_advertised_host_makes_the_registered_urls_and_an_ipv6_address_gets_brackets(tmp_path):
    pod = _settings(tmp_path, host="0.0.0.0", advertise_host="10.1.2.3", internal_port=9090)
    assert (pod.resolved_public_url(), pod.resolved_internal_url()) == ("http://10.1.2.3:8123", "http://10.1.2.3:9090")
    six = _settings(tmp_path, host="::", advertise_host="fd00::17")
    assert six.resolved_public_url() == "http://[fd00::17]:8123"
    assert _settings(tmp_path, host="::1").resolved_public_url() == "http://[::1]:8123"
    # An explicit PUBLIC_URL still wins for the public one.
    assert _settings(tmp_path, advertise_host="10.1.2.3", public_url="https://c.example").resolved_public_url() == (
        "https://c.example"
    )


def test_a_stalled_redis_does_not_hold_the_shutdown(tmp_path):
    # Redis stops answering (SIGSTOP) under a running service: the deregistration cannot finish, and
    # must not keep the rest of the shutdown waiting until the server kills the worker.
    server = start_redis()
    port = free_port()
    env = {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "SERVICE_NAME": "catalog",
        "DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
        "REDIS_URL": server.url,
        "DISCOVERY": "dns",
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        "LOG_JSON": "false",
    }
    service = ServiceProcess(
        [sys.executable, "-m", demo_service.__name__, "serve", "--port", str(port)], port=port, env=env
    )
    try:
        service.wait_ready(timeout=60)
        with sync_redis.Redis.from_url(server.url) as observer:
            instances = service_keys("flotilla", "catalog").instances
            eventually_sync(lambda: observer.hlen(instances) == 1, what="registered")
        os.kill(server.process.pid, signal.SIGSTOP)
        assert service.stop(timeout=60) == 0
        log = service.output()
        assert "left to expire with its TTL" in log
        assert "refused to gracefully stop" not in log  # granian's words when it kills a worker
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        service.stop()
        server.close()
