from __future__ import annotations

import hashlib
import json

from flotilla_http import RetryPolicy
from flotilla_http.tests.upstream_app import CHUNK

FAST = RetryPolicy(max_attempts=3, base_backoff=0.001, max_backoff=0.002)
FIVE_MB = 5 * 1024 * 1024


async def test_a_5_mb_answer_arrives_in_many_chunks_none_bigger_than_asked(make_client, granian_upstream):
    client = await make_client({"files": [granian_upstream]})
    digest = hashlib.sha256()
    sizes = []

    async with client.stream("files", "GET", f"/bytes/{FIVE_MB}") as response:
        assert response.status == 200
        assert ("x-size", str(FIVE_MB)) in response.headers
        async for chunk in response.iter_chunks(chunk_size=64 * 1024):
            sizes.append(len(chunk))
            digest.update(chunk)

    assert sum(sizes) == FIVE_MB
    assert len(sizes) > 1 and max(sizes) <= 64 * 1024
    expected = hashlib.sha256(CHUNK * (FIVE_MB // len(CHUNK))).hexdigest()
    assert digest.hexdigest() == expected


async def test_a_request_body_is_streamed_from_an_async_iterable(make_client, granian_upstream):
    client = await make_client({"files": [granian_upstream]})
    produced = []

    async def body():
        for index in range(80):  # 5 MB in 64 KiB chunks
            produced.append(index)
            yield CHUNK

    async with client.stream(
        "files", "POST", "/upload", body=body(), headers={"content-type": "application/octet-stream"}
    ) as response:
        answer = (await response.read()).decode()

    assert response.status == 200
    result = json.loads(answer)
    assert result["size"] == 80 * len(CHUNK) == FIVE_MB
    assert result["sha256"] == hashlib.sha256(CHUNK * 80).hexdigest()
    assert result["transfer_encoding"] == "chunked"  # streamed, not measured up front
    assert len(produced) == 80


async def test_raw_headers_keep_repeats_in_order(make_client, upstreams):
    upstream = await upstreams()
    client = await make_client({"files": [upstream.url]})

    async with client.stream("files", "GET", "/repeats") as response:
        assert [value for name, value in response.headers if name.lower() == "x-repeat"] == ["one", "two"]
        assert await response.read() == b"ok"


async def test_a_started_streamed_body_is_not_sent_again_after_a_503(make_client, upstreams):
    first, second = await upstreams(), await upstreams()
    first.status = second.status = 503
    client = await make_client({"files": [first.url, second.url]}, retry=FAST)

    async def body():
        yield b"part-1;"
        yield b"part-2"

    async with client.stream("files", "PUT", "/status", body=body()) as response:
        assert response.status == 503

    assert first.hits["/status"] + second.hits["/status"] == 1


async def test_a_bytes_body_is_replayed_to_another_instance_after_a_503(make_client, upstreams):
    failing, healthy = await upstreams(), await upstreams()
    failing.status = 503
    client = await make_client({"files": [failing.url, healthy.url]}, retry=FAST)

    async with client.stream("files", "PUT", "/status", body=b"whole") as response:
        assert response.status == 200
        assert response.instance.url == healthy.url

    assert healthy.bodies == [b"whole"]


async def test_a_streamed_body_is_sent_to_another_instance_when_the_first_refuses_connections(
    make_client, upstreams, dead_url
):
    alive = await upstreams()
    client = await make_client({"files": [dead_url(), alive.url]}, retry=FAST)

    async def body():
        yield b"a"
        yield b"b"

    async with client.stream("files", "POST", "/status", body=body()) as response:
        assert response.status == 200

    assert alive.bodies == [b"ab"]


async def test_in_flight_counts_are_released_when_the_stream_ends(make_client, granian_upstream):
    client = await make_client({"files": [granian_upstream]})

    async with client.stream("files", "GET", "/bytes/1000") as response:
        assert client.balancer.in_flight(response.instance) == 1
        # Leave the body unread: closing must still give the instance back.
    assert client.balancer.in_flight(response.instance) == 0
