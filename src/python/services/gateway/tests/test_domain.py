from gateway.domain import public_problem, request_headers_upstream, response_headers_downstream


def test_hop_by_hop_and_connection_listed_headers_are_not_forwarded():
    headers = request_headers_upstream(
        [
            (b"Connection", b"keep-alive, X-Secret-Hop"),
            (b"Keep-Alive", b"timeout=5"),
            (b"X-Secret-Hop", b"1"),
            (b"TE", b"trailers"),
            (b"Accept", b"application/json"),
            (b"Host", b"shop.example"),
        ],
        client_ip="10.1.1.1",
        scheme="https",
        caller=None,
    )
    assert headers == [
        (b"accept", b"application/json"),
        (b"x-forwarded-for", b"10.1.1.1"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"shop.example"),
    ]


def test_spoofed_identity_headers_are_replaced_by_the_verified_caller():
    inbound = [(b"X-Caller-Id", b"admin"), (b"X-Caller-Roles", b"admin"), (b"Authorization", b"Bearer t")]
    anonymous = dict(request_headers_upstream(inbound, client_ip=None, scheme="http", caller=None))
    assert b"x-caller-id" not in anonymous and b"x-caller-roles" not in anonymous
    verified = dict(request_headers_upstream(inbound, client_ip=None, scheme="http", caller=("u7", frozenset("ba"))))
    assert verified[b"x-caller-id"] == b"u7" and verified[b"x-caller-roles"] == b"a,b"
    assert verified[b"authorization"] == b"Bearer t"


def test_the_forwarded_chain_is_kept_and_the_peer_appended():
    headers = dict(
        request_headers_upstream([(b"X-Forwarded-For", b"1.2.3.4")], client_ip="10.0.0.9", scheme="http", caller=None)
    )
    assert headers[b"x-forwarded-for"] == b"1.2.3.4, 10.0.0.9"


def test_per_hop_ids_and_deadlines_are_set_by_the_gateway_not_copied():
    headers = request_headers_upstream(
        [
            (b"X-Request-Id", b"r1"),
            (b"traceparent", b"00-a-b-01"),
            (b"X-Deadline-Ms", b"999999"),
            (b"Content-Length", b"3"),
        ],
        client_ip=None,
        scheme="http",
        caller=None,
    )
    assert headers == [(b"x-forwarded-proto", b"http")]


def test_repeated_headers_survive_both_ways():
    inbound = [(b"accept", b"text/html"), (b"accept", b"application/json")]
    assert request_headers_upstream(inbound, client_ip=None, scheme="http", caller=None)[:2] == inbound


def test_repeated_response_headers_survive_and_hop_by_hop_ones_do_not():
    upstream = [
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Connection", b"close"),
        (b"Content-Type", b"text/plain"),
        (b"Content-Length", b"12"),
    ]
    assert response_headers_downstream(upstream) == [
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-type", b"text/plain"),
    ]


def test_a_relayed_problem_names_the_path_the_caller_asked_for():
    problem_type = [(b"content-type", b"application/problem+json")]
    body = b'{"status":404,"instance":"/products/x","detail":"d"}'
    assert public_problem(body, problem_type, instance="/api/catalog/products/x") == (
        b'{"status":404,"instance":"/api/catalog/products/x","detail":"d"}'
    )
    assert public_problem(body, [(b"content-type", b"application/json")], instance="/a") == body
    assert public_problem(b"not json", problem_type, instance="/a") == b"not json"
    assert public_problem(b"[1]", problem_type, instance="/a") == b"[1]"
