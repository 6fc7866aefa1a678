"""What the client refuses to write: header names that are not tokens, values with CR, LF or NUL,
bad methods. Refused with a typed error before anything reaches the upstream."""

from __future__ import annotations

from collections import Counter

import pytest

from flotilla_http import InvalidHeader, InvalidRequest

# A `sub` claim a gateway relays as x-caller-id: the CR LF would end the request and start another.
SMUGGLING = (
    b"u1\r\ncontent-length: 0\r\n\r\n"
    b"POST /fixed/201 HTTP/1.1\r\nhost: upstream\r\nx-caller-roles: admin\r\ncontent-length: 0\r\n\r\n"
)


async def call(client, how: str, headers, method: str = "GET") -> None:
    if how == "request":
        await client.request("catalog", method, "/status", headers=headers)
    else:
        async with client.stream("catalog", method, "/status", headers=headers, body=b"") as response:
            await response.read()


@pytest.mark.parametrize("how", ["request", "stream"])
async def test_a_relayed_header_value_with_cr_lf_never_reaches_the_upstream_as_a_second_request(
    make_client, upstreams, how
):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    with pytest.raises(InvalidHeader, match="x-caller-id") as caught:
        await call(client, how, [(b"accept", b"*/*"), (b"x-caller-id", SMUGGLING)])

    assert isinstance(caught.value, ValueError) and caught.value.name == "x-caller-id"
    await call(client, how, [(b"x-caller-id", b"u1")])
    assert upstream.hits == Counter({"/status": 1})  # the safe call only: nothing before it, no POST


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ([(b"x-a", b"a\nb")], "x-a"),
        ([(b"x-a", b"a\rb")], "x-a"),
        ([(b"x-a", b"a\x00b")], "x-a"),
        ([(b"x a", b"v")], "x a"),
        ([(b"transfer-encoding ", b"chunked")], "transfer-encoding "),
        ([(b"x-a:\r\nx-b", b"v")], "x-a:\r\nx-b"),
        ([(b"", b"v")], ""),
        ({"x-a": "a\r\nb"}, "x-a"),
        ([("x a", "v")], "x a"),
        ([("x-a", "caf\u00e9\u2603")], "x-a"),
    ],
    ids=[
        "LF",
        "CR",
        "NUL",
        "space in name",
        "space after name",
        "CR LF in name",
        "empty name",
        "str CR LF",
        "str name",
        "not latin-1",
    ],
)
async def test_unsafe_headers_are_refused_naming_the_header(make_client, upstreams, headers, named):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    with pytest.raises(InvalidHeader) as caught:
        await client.request("catalog", "GET", "/status", headers=headers)

    assert repr(named) in str(caught.value) and caught.value.name == named
    assert sum(upstream.hits.values()) == 0


@pytest.mark.parametrize("method", ["GET /admin HTTP/1.1\r\nx:", "GE T", "", "G\u00c9T", "GET\x00"])
async def test_a_method_that_is_not_a_token_is_refused(make_client, upstreams, method):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    with pytest.raises(InvalidRequest, match="method"):
        await client.request("catalog", method, "/status")

    assert sum(upstream.hits.values()) == 0


async def test_safe_headers_pass_as_given_values_with_tabs_and_obs_text_included(make_client, upstreams):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    headers = [(b"X-Odd_!#$%&'*+.^`|~", b"a\tb \x80\xff"), (b"x-empty", b"")]
    assert (await client.request("catalog", "GET", "/status", headers=headers)).status == 200

    received = upstream.headers[0]  # names lowercased by the client; obs-text decoded by aiohttp its way
    assert received["x-odd_!#$%&'*+.^`|~"].startswith("a\tb ") and received["x-empty"] == ""
