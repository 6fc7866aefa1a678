import asyncio
import sys

import pytest
from redis.exceptions import ConnectionError

from flotilla_discovery.balancer import Balancer
from flotilla_discovery.errors import DiscoveryUnavailable, NoInstances
from flotilla_discovery.instance import Instance
from flotilla_discovery.redis_store import RedisStore
from flotilla_discovery.registry import RedisRegistry
from flotilla_discovery.resolver import RedisResolver
from flotilla_kit.testing.waiting import eventually

AN_HOUR = 3600.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def catalog(instance_id: str) -> Instance:
    return Instance(service="catalog", instance_id=instance_id, url=f"http://{instance_id}:8000")


async def ids(resolver: RedisResolver, service: str = "catalog") -> list[str]:
    return [instance.instance_id for instance in await resolver.instances(service)]


async def test_a_new_instance_is_seen_through_its_notification(client):
    registry = RedisRegistry(client)
    await registry.register(catalog("a"))
    # Refreshing only hourly: within this test, only the notification can bring "b" in.
    resolver = RedisResolver(client, refresh_seconds=AN_HOUR)
    await resolver.start()
    try:
        assert await ids(resolver) == ["a"]

        await registry.register(catalog("b"))

        async def sees_b() -> bool:
            return await ids(resolver) == ["a", "b"]

        await eventually(sees_b, timeout=5, what="the resolver seeing the new instance")

        await registry.deregister(catalog("a"))

        async def a_gone() -> bool:
            return await ids(resolver) == ["b"]

        await eventually(a_gone, timeout=5, what="the resolver dropping the deregistered instance")
    finally:
        await resolver.close()


async def test_an_instance_registered_only_to_be_seen_is_not_routed_to(client):
    # A process that resolves its peers by DNS or a static list registers for the console and
    # operators (routable=False), possibly at an address callers here cannot reach.
    registry = RedisRegistry(client)
    await registry.register(catalog("routed"))
    await registry.register(
        Instance(service="catalog", instance_id="seen", url="http://192.0.2.1:8000", routable=False)
    )
    resolver = RedisResolver(client)
    try:
        assert await ids(resolver) == ["routed"]
        assert [i.instance_id for i in await registry.instances("catalog")] == ["routed", "seen"]
    finally:
        await resolver.close()


async def test_an_entry_of_an_older_registrant_without_the_routable_field_is_routed_to(client):
    store = RedisStore(client, "flotilla")
    old = b'{"service":"catalog","instance_id":"old","url":"http://old:8000","version":"","started_at":0.0}'
    await client.hset("flotilla:discovery:{catalog}:instances", "old", old)
    await client.zadd("flotilla:discovery:{catalog}:expiries", {"old": 2**50})
    assert [i.routable for i in await store.live("catalog")] == [True]
    resolver = RedisResolver(client)
    try:
        assert await ids(resolver) == ["old"]
    finally:
        await resolver.close()


async def test_notifications_for_other_namespaces_are_ignored(client):
    resolver = RedisResolver(client, namespace="blue", refresh_seconds=AN_HOUR, empty_refresh_seconds=AN_HOUR)
    await resolver.start()
    try:
        assert await ids(resolver) == []
        await RedisRegistry(client, namespace="green").register(catalog("x"))
        await RedisRegistry(client, namespace="blue").register(catalog("a"))

        async def sees_only_blue() -> bool:
            return await ids(resolver) == ["a"]

        await eventually(sees_only_blue, timeout=5, what="the blue instance")
    finally:
        await resolver.close()


async def test_without_notifications_the_list_is_reread_once_it_is_refresh_seconds_old(client):
    clock = FakeClock()
    resolver = RedisResolver(client, refresh_seconds=5.0, clock=clock)  # never started: no listener
    registry = RedisRegistry(client)
    await registry.register(catalog("a"))
    assert await ids(resolver) == ["a"]

    await registry.register(catalog("b"))
    clock.now += 4.9
    assert await ids(resolver) == ["a"]  # cached
    clock.now += 0.1
    assert await ids(resolver) == ["a", "b"]


async def test_a_service_without_instances_is_reread_once_it_is_empty_refresh_seconds_old(client):
    clock = FakeClock()
    resolver = RedisResolver(client, refresh_seconds=5.0, empty_refresh_seconds=0.5, clock=clock)
    assert await ids(resolver) == []

    await RedisRegistry(client).register(catalog("a"))
    clock.now += 0.4
    assert await ids(resolver) == []  # cached, but not for long: the first instance back matters
    clock.now += 0.1
    assert await ids(resolver) == ["a"]


async def test_listeners_hear_of_an_instance_registering_again_under_its_id_and_of_a_new_one(client):
    registry = RedisRegistry(client)
    await registry.register(catalog("a"))
    # Refreshing only hourly: within this test, only the announcements can tell of a registration.
    resolver = RedisResolver(client, refresh_seconds=AN_HOUR, empty_refresh_seconds=AN_HOUR)
    heard: list[Instance] = []
    resolver.add_registration_listener(heard.append)
    await resolver.start()
    try:
        assert await ids(resolver) == ["a"]
        assert heard == []  # a first read tells nothing: nobody knew the service before

        restarted = Instance(service="catalog", instance_id="a", url="http://a:8000", started_at=2.0)
        await registry.register(restarted)  # a new process under the old id, its entry still live

        async def heard_of_restart() -> bool:
            return heard == [restarted]

        await eventually(heard_of_restart, timeout=5, what="the restart announced to the listener")
        await registry.register(catalog("b"))

        async def heard_of_b() -> bool:
            return heard == [restarted, catalog("b")]

        await eventually(heard_of_b, timeout=5, what="the new instance announced to the listener")
        await registry.heartbeat(catalog("b"))  # a heartbeat of a live instance is no registration
        await registry.deregister(restarted)

        async def a_gone() -> bool:
            return await ids(resolver) == ["b"]

        await eventually(a_gone, timeout=5, what="the deregistration")
        assert heard == [restarted, catalog("b")]
    finally:
        await resolver.close()


async def test_listeners_hear_of_an_instance_a_reread_finds_without_an_announcement(client):
    clock = FakeClock()
    resolver = RedisResolver(client, refresh_seconds=5.0, clock=clock)  # never started: no announcements
    heard: list[str] = []
    resolver.add_registration_listener(lambda instance: heard.append(instance.instance_id))
    registry = RedisRegistry(client)
    await registry.register(catalog("a"))
    assert await ids(resolver) == ["a"]

    await registry.register(catalog("b"))
    clock.now += 5
    assert await ids(resolver) == ["a", "b"]

    assert heard == ["b"]


async def test_a_failing_listener_does_not_stop_the_others_or_the_cache(client):
    clock = FakeClock()
    resolver = RedisResolver(client, refresh_seconds=5.0, clock=clock)
    heard: list[str] = []

    def broken(instance: Instance) -> None:
        raise RuntimeError("a listener's bug")

    resolver.add_registration_listener(broken)
    resolver.add_registration_listener(lambda instance: heard.append(instance.instance_id))
    assert await ids(resolver) == []
    await RedisRegistry(client).register(catalog("a"))
    clock.now += 5

    assert await ids(resolver) == ["a"]
    assert heard == ["a"]


async def test_a_restarted_instance_is_chosen_as_soon_as_it_registers_although_it_was_ejected(client):
    registry = RedisRegistry(client)
    await registry.register(catalog("a"))
    resolver = RedisResolver(client, refresh_seconds=AN_HOUR, empty_refresh_seconds=AN_HOUR)
    await resolver.start()
    # The balancer's clock never moves: only the registration can end the ejection.
    balancer = Balancer(resolver, eject_after_failures=1, ejection_seconds=AN_HOUR, clock=FakeClock())
    try:
        balancer.report_failure(await balancer.choose("catalog"))  # the process died
        with pytest.raises(NoInstances):
            await balancer.choose("catalog")

        await registry.register(catalog("a"))  # ... and started again under its id

        async def chosen_again() -> bool:
            try:
                return (await balancer.choose("catalog")).instance_id == "a"
            except NoInstances:
                return False

        await eventually(chosen_again, timeout=5, what="the restarted instance chosen")
    finally:
        await resolver.close()


async def test_the_last_known_list_is_served_while_redis_is_down(own_redis_server, own_client):
    clock = FakeClock()
    await RedisRegistry(own_client).register(catalog("a"))
    resolver = RedisResolver(own_client, refresh_seconds=5.0, clock=clock)
    await resolver.start()
    try:
        assert await ids(resolver) == ["a"]

        await asyncio.to_thread(own_redis_server.stop)
        clock.now += 60  # stale: the next call must ask Redis, which is down

        assert await ids(resolver) == ["a"]
        assert await ids(resolver) == ["a"]
        with pytest.raises(DiscoveryUnavailable):
            await resolver.instances("inventory")  # never seen, so nothing to serve

        await asyncio.to_thread(own_redis_server.start)  # empty: the restart lost the registry
        clock.now += 60

        async def reread_after_restart() -> bool:
            return await ids(resolver) == []

        await eventually(reread_after_restart, timeout=30, what="a re-read once Redis is back")
    finally:
        await resolver.close()


async def test_unreachable_redis_with_nothing_cached_is_a_kind_of_no_instances(unreachable_client):
    resolver = RedisResolver(unreachable_client)
    await resolver.start()  # does not raise: it keeps trying in the background
    try:
        with pytest.raises(NoInstances) as raised:
            await resolver.instances("catalog")
        assert isinstance(raised.value, DiscoveryUnavailable)
        assert raised.value.service == "catalog"
    finally:
        await resolver.close()


async def test_the_resolver_picks_up_changes_after_redis_comes_back(own_redis_server, own_client):
    resolver = RedisResolver(own_client, refresh_seconds=AN_HOUR, empty_refresh_seconds=AN_HOUR)
    await resolver.start()
    registry = RedisRegistry(own_client)
    try:
        assert await ids(resolver) == []
        await asyncio.to_thread(own_redis_server.restart)

        # The listener re-subscribes by itself; keep announcing until a notice gets through.
        async def sees_new_instance() -> bool:
            try:
                await registry.register(catalog("a"))
            except ConnectionError:
                return False  # redis-py may fail a first command on a pooled connection the restart closed
            return await ids(resolver) == ["a"]

        await eventually(sees_new_instance, timeout=30, what="a notification after the restart")
    finally:
        await resolver.close()


async def test_close_ends_the_listener_even_when_a_reread_lost_its_cancellation(client, monkeypatch):
    """redis-py writes a command inside asyncio.wait_for; on Python 3.11 a cancellation that arrives
    just as the write completes is dropped and the command goes on (CPython gh-86296). A listener
    that lost its cancellation so kept ``close`` (and the app's shutdown) waiting for ever."""
    registry = RedisRegistry(client)
    await registry.register(catalog("a"))
    resolver = RedisResolver(client, refresh_seconds=AN_HOUR)
    await resolver.start()
    assert await ids(resolver) == ["a"]
    written = asyncio.Event()
    lost: list[bool] = []

    async def write() -> None:
        # Wakes the test before wait_for's own waiter is released: the test closes the resolver,
        # cancelling the listener exactly between the write's completion and wait_for's return.
        written.set()

    async def live_sending_like_redis_py(_store: RedisStore, _service: str) -> list[Instance]:
        await asyncio.wait_for(write(), 10)
        task = asyncio.current_task()
        assert task is not None
        lost.append(task.cancelling() > 0)  # cancelled, yet still running
        return []

    monkeypatch.setattr(RedisStore, "live", live_sending_like_redis_py)
    await registry.register(catalog("b"))  # its announcement makes the listener re-read catalog
    await written.wait()
    async with asyncio.timeout(30):  # a guard: without the fix, close never returns
        await resolver.close()
    if sys.version_info < (3, 12):  # the race is Python 3.11's: make sure this test provoked it
        assert lost == [True]
