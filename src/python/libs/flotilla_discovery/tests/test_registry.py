import asyncio
import logging

import msgspec
import pytest
from redis.exceptions import ConnectionError

from flotilla_discovery.instance import Instance
from flotilla_discovery.redis_store import RedisStore, service_keys
from flotilla_discovery.registry import Heartbeat, RedisRegistry
from flotilla_kit.testing.waiting import eventually


def catalog(instance_id: str, port: int = 8001) -> Instance:
    return Instance(
        service="catalog", instance_id=instance_id, url=f"http://127.0.0.1:{port}", version="1.2.3", started_at=1.5
    )


async def ids(registry: RedisRegistry, service: str = "catalog") -> list[str]:
    return [instance.instance_id for instance in await registry.instances(service)]


async def test_registered_instances_are_listed_sorted_by_id_with_their_data(client):
    registry = RedisRegistry(client)
    await registry.register(catalog("b", 8002))
    await registry.register(catalog("a", 8001))
    await registry.register(Instance(service="inventory", instance_id="c", url="http://127.0.0.1:8003"))

    assert await registry.instances("catalog") == [catalog("a", 8001), catalog("b", 8002)]
    assert await ids(registry, "inventory") == ["c"]
    assert await registry.instances("payments") == []


async def test_deregistered_instance_is_no_longer_listed_and_deregistering_twice_is_harmless(client):
    registry = RedisRegistry(client)
    await registry.register(catalog("a"))
    await registry.register(catalog("b"))

    await registry.deregister(catalog("a"))
    await registry.deregister(catalog("a"))

    assert await ids(registry) == ["b"]


async def test_registering_again_updates_the_instance_data(client):
    registry = RedisRegistry(client)
    await registry.register(catalog("a", 8001))
    await registry.register(catalog("a", 9001))

    assert await registry.instances("catalog") == [catalog("a", 9001)]


async def test_namespaces_keep_registries_apart(client):
    await RedisRegistry(client, namespace="blue").register(catalog("a"))

    assert await RedisRegistry(client, namespace="green").instances("catalog") == []


async def test_an_instance_without_heartbeats_expires_while_one_with_heartbeats_stays(client):
    registry = RedisRegistry(client, ttl_seconds=0.5)
    await registry.register(catalog("silent"))
    await registry.register(catalog("beating"))

    async def only_the_beating_one_is_left() -> bool:
        await registry.heartbeat(catalog("beating"))
        return await ids(registry) == ["beating"]

    await eventually(only_the_beating_one_is_left, timeout=10, what="the silent instance expiring")


async def test_a_service_whose_instances_all_expired_leaves_no_keys_behind(client):
    registry = RedisRegistry(client, ttl_seconds=0.2)  # the keys outlive it by a grace of 10 TTLs
    await registry.register(catalog("a"))
    keys = service_keys("flotilla", "catalog")

    async def keys_gone() -> bool:
        return await client.exists(keys.expiries, keys.instances) == 0

    await eventually(keys_gone, timeout=10, what="the service's keys expiring")


async def test_heartbeat_recreates_an_expired_entry(client):
    registry = RedisRegistry(client, ttl_seconds=0.5)
    await registry.register(catalog("a"))

    async def expired() -> bool:
        return await ids(registry) == []

    await eventually(expired, timeout=10, what="the instance expiring")
    await registry.heartbeat(catalog("a"))

    assert await registry.instances("catalog") == [catalog("a")]


async def test_changes_are_announced_on_the_service_channel(client):
    registry = RedisRegistry(client, ttl_seconds=0.5)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("flotilla:discovery:catalog")
    received: list[dict] = []

    async def received_kinds(*kinds: str) -> bool:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        if message is not None:
            received.append(msgspec.json.decode(message["data"]))
        return [change["change"] for change in received] == list(kinds)

    await registry.register(catalog("a"))
    await eventually(lambda: received_kinds("registered"), timeout=5, what="a registration notice")
    await registry.heartbeat(catalog("a"))  # a live instance's heartbeat is no change
    await registry.deregister(catalog("a"))
    await eventually(lambda: received_kinds("registered", "deregistered"), timeout=5, what="a deregistration notice")
    await registry.register(catalog("b"))

    async def expired_after_a_read() -> bool:
        await registry.instances("catalog")  # expiry is noticed, and announced, by a read
        return await received_kinds("registered", "deregistered", "registered", "expired")

    await eventually(expired_after_a_read, timeout=10, what="an expiry notice")
    assert received[-1] == {"change": "expired", "instance_id": "b"}
    await pubsub.aclose()


async def test_run_heartbeat_keeps_the_instance_alive_and_deregisters_when_stopped(client):
    registry = RedisRegistry(client, ttl_seconds=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(registry.run_heartbeat(catalog("a"), stop))

    async def registered() -> bool:
        return await ids(registry) == ["a"]

    await eventually(registered, timeout=5, what="registration")
    # Outlive several TTLs: still listed only because heartbeats keep coming.
    for _ in range(6):
        expiry = await client.zscore(service_keys("flotilla", "catalog").expiries, "a")

        async def heartbeat_moved_expiry(previous: float = expiry) -> bool:
            current = await client.zscore(service_keys("flotilla", "catalog").expiries, "a")
            return current is not None and current > previous

        await eventually(heartbeat_moved_expiry, timeout=5, what="a heartbeat")
        assert await ids(registry) == ["a"]

    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert await ids(registry) == []


async def test_run_heartbeat_deregisters_when_cancelled(client):
    registry = RedisRegistry(client, ttl_seconds=30)
    task = asyncio.create_task(registry.run_heartbeat(catalog("a"), asyncio.Event()))

    async def registered() -> bool:
        return await ids(registry) == ["a"]

    await eventually(registered, timeout=5, what="registration")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await ids(registry) == []


async def test_run_heartbeat_rides_out_a_redis_restart_and_registers_again(own_redis_server, own_client, caplog):
    caplog.set_level(logging.WARNING, logger="flotilla_discovery.registry")
    registry = RedisRegistry(own_client, ttl_seconds=0.6)
    stop = asyncio.Event()
    task = asyncio.create_task(registry.run_heartbeat(catalog("a"), stop))

    async def registered() -> bool:
        return await ids(registry) == ["a"]

    await eventually(registered, timeout=5, what="registration")

    await asyncio.to_thread(own_redis_server.stop)

    async def outage_noticed() -> bool:
        return "registry unreachable" in caplog.text

    await eventually(outage_noticed, timeout=30, what="the heartbeat noticing the outage")
    assert not task.done()

    # Same port, no persistence: the restarted Redis knows nothing, so a listing proves re-registration.
    await asyncio.to_thread(own_redis_server.start)

    async def registered_again() -> bool:
        try:
            return await registered()
        except ConnectionError:
            return False  # redis-py may fail a first command on a pooled connection the restart closed

    await eventually(registered_again, timeout=30, what="re-registration after the restart")

    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert await ids(registry) == []


async def test_run_heartbeat_restarts_after_an_unexpected_error_and_registers_again(client, monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="flotilla_discovery.registry")
    registry = RedisRegistry(client, ttl_seconds=0.6)
    write = RedisStore.write
    bug = {"present": True}

    async def write_with_a_bug(self, *args, **kwargs):
        if bug["present"]:
            raise ValueError("a bug in the heartbeat")
        return await write(self, *args, **kwargs)

    monkeypatch.setattr(RedisStore, "write", write_with_a_bug)
    stop = asyncio.Event()
    task = asyncio.create_task(registry.run_heartbeat(catalog("a"), stop))

    async def restarted_twice() -> bool:
        return caplog.text.count("stopped by an unexpected error, restarting") >= 2

    await eventually(restarted_twice, timeout=10, what="two restarts, each logged")
    assert "ValueError: a bug in the heartbeat" in caplog.text  # with its traceback
    bug["present"] = False

    async def registered() -> bool:
        return await ids(registry) == ["a"]

    await eventually(registered, timeout=10, what="registration once the error went away")
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert await ids(registry) == []


async def test_a_heartbeat_says_why_its_instance_cannot_be_found(client, unreachable_client):
    never = Heartbeat(RedisRegistry(unreachable_client, ttl_seconds=0.3), catalog("never"))
    live = Heartbeat(RedisRegistry(client, ttl_seconds=30), catalog("live"))
    assert never.problem() == "not registered yet"
    stop = asyncio.Event()
    tasks = [asyncio.create_task(heartbeat.run(stop)) for heartbeat in (never, live)]

    async def settled() -> bool:
        return live.problem() is None and "ConnectionError" in (never.problem() or "")

    await eventually(settled, timeout=10, what="one registered, one failing")
    assert never.problem().startswith("not registered yet: ")
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)


async def test_service_names_that_would_break_the_key_layout_are_refused(client):
    registry = RedisRegistry(client)
    with pytest.raises(ValueError, match="service name"):
        await registry.register(Instance(service="cat{alog}", instance_id="a", url="http://x:1"))
    with pytest.raises(ValueError, match="service name"):
        await registry.instances("")
