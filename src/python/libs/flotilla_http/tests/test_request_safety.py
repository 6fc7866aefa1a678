"""What the client refuses to write: header names that are not tokens, values with CR, LF or NUL,
bad methods. Refused with a typed error before anything reaches the upstream."""

from __future__ import annotations

from collections import Counter

import pytest

from flotilla_http import InvalidHeader, InvalidRequest
from flotilla_http.client import _headers

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


@pytest.mark.parametrize("control", [b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x1f", b"\x7f"])
async def test_a_header_value_with_any_control_but_htab_is_refused(make_client, upstreams, control):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    with pytest.raises(InvalidHeader, match="control character"):
        await client.request("catalog", "GET", "/status", headers=[(b"x-a", b"a" + control + b"b")])

    assert sum(upstream.hits.values()) == 0


@pytest.mark.parametrize("pair", [(b"x-a", "v"), ("x-a", b"v")], ids=["bytes name", "bytes value"])
async def test_a_header_pair_of_bytes_and_str_is_refused(make_client, upstreams, pair):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    # Before: the bytes half went out as its repr ("b'x-a'").
    with pytest.raises(TypeError, match="both as bytes or both as str"):
        await client.request("catalog", "GET", "/status", headers=[pair])

    assert sum(upstream.hits.values()) == 0


async def test_a_callers_expect_header_is_not_relayed(make_client, upstreams):
    # The transport never waits for 100 Continue: relayed, Expect would promise what it never does.
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    answer = await client.request("catalog", "POST", "/status", headers={"expect": "100-continue"}, content=b"x")

    assert answer.status == 200 and "expect" not in {name.lower() for name in upstream.headers[0]}


def test_names_in_use_are_memoised_again_after_callers_invented_many():
    checked: dict[bytes, bytes] = {}
    _headers([(b"x-invented-%d" % index, b"v") for index in range(2000)], checked)

    _headers([(b"Accept", b"*/*")], checked)

    # Before: the memo stopped taking names once full, so every name was matched by regex for good.
    assert checked.get(b"Accept") == b"accept"
