import asyncio
import re
from pathlib import Path

import pytest

import flotilla_redis
from flotilla_kit.testing.redis import start_redis
from flotilla_redis.factory import create_redis


def test_the_version_comes_from_the_version_file():
    # The file the release tool bumps, next to the package (a literal here would break at every bump).
    version_file = (Path(flotilla_redis.__file__).parent / "VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version_file)
    assert flotilla_redis.__version__ == version_file


async def test_the_client_answers_in_bytes_and_reuses_its_pooled_connection():
    server = start_redis()
    client = create_redis(server.url)
    try:
        await client.set("k", "v")
        assert await client.get("k") == b"v"
        assert len(await client.client_list()) == 1  # one connection, taken back between calls
    finally:
        await client.aclose()
        server.close()


def test_a_url_that_is_not_redis_is_refused():
    with pytest.raises(ValueError, match="redis://"):
        create_redis("http://127.0.0.1:6379")


async def test_a_burst_beyond_the_pool_waits_for_a_connection_instead_of_failing():
    server = start_redis()
    client = create_redis(server.url, max_connections=2)
    try:
        # Eight blocking reads on a pool of two: the later ones wait their turn.
        replies = await asyncio.gather(*(client.blpop([f"list-{i}"], timeout=0.05) for i in range(8)))
        assert replies == [None] * 8
        assert len(await client.client_list()) <= 2
    finally:
        await client.aclose()
        server.close()
