import asyncio

import pytest
from streams_admin.__main__ import main

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.redis import start_redis
from flotilla_redis.factory import create_redis
from flotilla_streams.dlq import DeadLetter, dead_letter
from flotilla_streams.group_counters import record_consumers_removed, record_reclaimed, record_recreated


@pytest.fixture(scope="module")
def redis_url():
    server = start_redis()
    yield server.url
    server.close()


async def _seed(url: str) -> None:
    client = create_redis(url)
    entry_id = await client.xadd("orders.events", {b"junk": b"1"})
    await client.xadd("orders.events", {b"junk": b"2"})
    await client.xgroup_create("orders.events", "inventory", id="0")
    await client.xreadgroup("inventory", "c1", {"orders.events": ">"}, count=1)
    await dead_letter(
        client,
        "orders.events",
        "inventory",
        "c1",
        [DeadLetter(entry_id, {b"junk": b"1"}, "undecodable: no envelope", 1)],
    )
    await client.aclose()


def test_stats_and_dlq_listing(redis_url, capsys):
    asyncio.run(_seed(redis_url))
    assert main(["--redis-url", redis_url, "stats", "orders.events", "inventory"]) == 0
    out = capsys.readouterr().out
    assert (
        "length                   2" in out
        and "lag                      1" in out
        and "dlq_length               1" in out
    )
    assert main(["--redis-url", redis_url, "dlq", "list", "orders.events"]) == 0
    assert "undecodable: no envelope" in capsys.readouterr().out
    assert main(["--redis-url", redis_url, "stats", "orders.events", "nobody"]) == 1


async def _upkeep(url: str) -> None:
    """What consumers of the group, in other processes, recorded while they healed and cleaned it."""
    client = create_redis(url)
    await client.xadd("payments.events", {b"junk": b"1"})
    await client.xgroup_create("payments.events", "orders", id="0")
    await client.xreadgroup("orders", "c1", {"payments.events": ">"}, count=1)
    await record_recreated(client, "payments.events", "orders")
    await record_recreated(client, "payments.events", "orders")
    await record_reclaimed(client, "payments.events", "orders", 7)
    await record_consumers_removed(client, "payments.events", "orders", 3)
    await client.aclose()


def test_stats_show_group_recreations_reclaims_and_consumers(redis_url, capsys):
    asyncio.run(_upkeep(redis_url))
    assert main(["--redis-url", redis_url, "stats", "payments.events", "orders"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["consumers"] == "1"
    assert lines["recreated"] == "2"
    assert lines["last_recreated"] != "never"
    assert lines["reclaimed"] == "7"
    assert lines["consumers_removed"] == "3"


def test_a_group_never_recreated_says_so(redis_url, capsys):
    asyncio.run(_seed_plain_group(redis_url))
    assert main(["--redis-url", redis_url, "stats", "notes.events", "mailer"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert (lines["recreated"], lines["last_recreated"], lines["reclaimed"]) == ("0", "never", "0")


async def _seed_plain_group(url: str) -> None:
    client = create_redis(url)
    await client.xgroup_create("notes.events", "mailer", id="0", mkstream=True)
    await client.aclose()


def test_a_missing_redis_url_is_a_clear_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["stats", "s", "g"]) == 2
    assert "--redis-url" in capsys.readouterr().err


def test_stats_against_an_unreachable_redis_names_it_without_its_password_and_fails(capsys):
    port = free_port()  # nothing listens there
    assert main(["--redis-url", f"redis://:s3cret@127.0.0.1:{port}/0", "stats", "orders.events", "inventory"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"streams-admin: redis at redis://:***@127.0.0.1:{port}/0: ")
    assert "s3cret" not in err
