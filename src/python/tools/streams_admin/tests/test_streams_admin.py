import asyncio

import pytest
from streams_admin.__main__ import main

from flotilla_kit.testing.redis import start_redis
from flotilla_streams.connection import create_redis
from flotilla_streams.dlq import DeadLetter, dead_letter


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


def test_a_missing_redis_url_is_a_clear_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["stats", "s", "g"]) == 2
    assert "--redis-url" in capsys.readouterr().err
