from gateway.domain import request_headers_upstream, response_headers_downstream


def test_hop_by_hop_and_connection_listed_headers_are_not_forwarded():
    headers = request_headers_upstream(
        [
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("X-Secret-Hop", "1"),
            ("TE", "trailers"),
            ("Accept", "application/json"),
        ],
        client_ip="10.1.1.1",
        scheme="https",
        host="shop.example",
        caller=None,
    )
    assert headers == {
        "accept": "application/json",
        "x-forwarded-for": "10.1.1.1",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "shop.example",
    }


def test_spoofed_identity_headers_are_replaced_by_the_verified_caller():
    inbound = [("X-Caller-Id", "admin"), ("X-Caller-Roles", "admin"), ("Authorization", "Bearer t")]
    anonymous = request_headers_upstream(inbound, client_ip=None, scheme="http", host=None, caller=None)
    assert "x-caller-id" not in anonymous and "x-caller-roles" not in anonymous
    verified = request_headers_upstream(
        inbound, client_ip=None, scheme="http", host=None, caller=("u7", frozenset({"b", "a"}))
    )
    assert verified["x-caller-id"] == "u7" and verified["x-caller-roles"] == "a,b"
    assert verified["authorization"] == "Bearer t"


def test_the_forwarded_chain_is_kept_and_the_peer_appended():
    headers = request_headers_upstream(
        [("X-Forwarded-For", "1.2.3.4")], client_ip="10.0.0.9", scheme="http", host=None, caller=None
    )
    assert headers["x-forwarded-for"] == "1.2.3.4, 10.0.0.9"


def test_per_hop_ids_and_deadlines_are_set_by_the_gateway_not_copied():
    headers = request_headers_upstream(
        [
            ("X-Request-Id", "r1"),
            ("traceparent", "00-a-b-01"),
            ("X-Deadline-Ms", "999999"),
            ("Host", "x"),
            ("Content-Length", "3"),
        ],
        client_ip=None,
        scheme="http",
        host=None,
        caller=None,
    )
    assert set(headers) == {"x-forwarded-proto"}


def test_repeated_response_headers_survive_and_hop_by_hop_ones_do_not():
    upstream = [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
        ("Content-Type", "text/plain"),
    ]
    assert response_headers_downstream(upstream) == [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Type", "text/plain"),
    ]
