import re
from urllib.parse import unquote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flotilla_kit.problems import MethodNotAllowed, NotFound
from gateway.routes import (
    Decision,
    Route,
    RouteError,
    decide,
    is_internal,
    load_routes,
    match,
    methods_allowed,
    normalise,
)


def test_the_built_in_table_routes_catalog_reads_publicly_and_writes_to_admins():
    routes = load_routes()
    read = match(routes, "GET", "/api/catalog/products/123")
    assert (
        read is not None
        and read.auth == "public"
        and read.upstream_path("/api/catalog/products/123") == "/products/123"
    )
    write = match(routes, "POST", "/api/catalog/products")
    assert (
        write is not None
        and write.required_role == "admin"
        and write.upstream_path("/api/catalog/products") == "/products"
    )
    assert match(routes, "HEAD", "/api/catalog/products") is not None  # HEAD goes where GET goes
    assert match(routes, "DELETE", "/api/catalog/products/1") is None
    assert methods_allowed(routes, "/api/catalog/products/1") == {"GET", "POST", "PATCH"}
    assert match(routes, "GET", "/api/catalog/productsX") is None
    assert match(routes, "GET", "/api/unknown") is None


def test_the_longest_prefix_wins(tmp_path):
    table = tmp_path / "routes.toml"
    table.write_text(
        '[[routes]]\nprefix = "/api/a"\nservice = "a"\nauth = "public"\n'
        '[[routes]]\nprefix = "/api/a/private"\nservice = "b"\nupstream_prefix = "/p"\n'
    )
    routes = load_routes(str(table))
    assert match(routes, "GET", "/api/a/private/x").service == "b"
    assert match(routes, "GET", "/api/a/public").service == "a"
    assert match(routes, "GET", "/api/a/private/x").upstream_path("/api/a/private/x") == "/p/x"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("not toml [", "routes.toml"),
        ('[[routes]]\nprefix = "api/x"\nservice = "x"\n', "prefix"),
        ('[[routes]]\nprefix = "/api/x"\nservice = "x"\nauth = "everyone"\n', "auth"),
        ('[[routes]]\nprefix = "/api/x"\nservice = "x"\ncolour = "red"\n', "colour"),
    ],
)
def test_a_bad_table_is_refused_naming_the_file_and_problem(tmp_path, text, fragment):
    table = tmp_path / "routes.toml"
    table.write_text(text)
    with pytest.raises(RouteError, match=fragment):
        load_routes(str(table))


def test_a_missing_table_names_the_setting(tmp_path):
    with pytest.raises(RouteError, match="ROUTES_FILE"):
        load_routes(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/info", "/schema/openapi.json", "/internal/x"])
def test_operational_endpoints_are_internal(path):
    assert is_internal(path)
    assert not is_internal("/products/metrics")


def test_the_callers_encoding_is_kept_upstream():
    route = match(load_routes(), "GET", "/api/catalog/products/by-sku/a?b")
    assert route is not None
    assert (
        route.upstream_raw_path("/api/catalog/products/by-sku/a%3Fb", "/api/catalog/products/by-sku/a?b")
        == "/products/by-sku/a%3Fb"
    )
    # A caller who encoded part of the prefix gets the rest re-encoded from the decoded path.
    assert (
        route.upstream_raw_path("/api/%63atalog/products/by-sku/a%3Fb", "/api/catalog/products/by-sku/a?b")
        == "/products/by-sku/a%3Fb"
    )


@pytest.mark.parametrize("path", ["/products/../metrics", "/products/./x", "/.."])
def test_dot_segments_are_never_routed(path):
    assert is_internal(path)


# What a service behind the gateway does with the target it is sent: granian decodes it once,
# Litestar collapses empty segments and strips the ends (litestar.utils.normalize_path).
_SERVICE_INTERNAL = re.compile(r"^/(metrics|healthz|readyz|info|schema|internal)(/|$)")


def _service_view(target: str) -> str:
    return "/" + re.sub("//+", "/", unquote(target).strip("/"))


def _relay(routes: list[Route], raw_path: str, method: str = "GET") -> Decision | None:
    """The relay's decision (``decide``, as the relay calls it) for ``raw_path``; None for a 404."""
    try:
        return decide(routes, method, raw_path, unquote(raw_path))  # the ASGI server decodes once
    except NotFound:
        return None


CATCH_ALL = Route(prefix="/api/catalog", service="catalog", upstream_prefix="/", auth="public")
PRODUCTS = Route(prefix="/api/catalog/products", service="catalog", upstream_prefix="/products", auth="public")
VERSIONED = Route(prefix="/api/v/", service="catalog", upstream_prefix="/v1/", auth="public")
ROUTE_FORMS = [CATCH_ALL, PRODUCTS, VERSIONED]


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/catalog/%2fmetrics",
        "/api/catalog/%2Fmetrics",
        "/api/catalog/%2f%2fmetrics",
        "/api/catalog//metrics",
        "/api/catalog///metrics/",
        "/api/catalog/%2finfo",
        "/api/catalog/%2fhealthz",
        "/api/catalog/%2freadyz",
        "/api/catalog/%2fschema/openapi.json",
        "/api/catalog/%2F/internal/x",
        "/api/catalog/%6detrics",
        "/api/catalog/products/%2f..%2fmetrics",
        "/api/catalog/products/..%2F..%2Fmetrics",
        "/api/catalog/products/%2e%2e/%2e%2e/metrics",
    ],
)
def test_paths_that_a_service_sees_as_internal_are_never_routed(raw_path):
    assert _relay([PRODUCTS, CATCH_ALL], raw_path) is None


@pytest.mark.parametrize(
    "raw_path, target",
    [
        ("/api/catalog/products/by-sku/a%3Fb", "/products/by-sku/a%3Fb"),  # the caller's encoding is kept
        ("/api/catalog/products//by-sku/a%3Fb", "/products/by-sku/a%3Fb"),
        ("/api/catalog/products%2Fby-sku%2Fa%2523b", "/products/by-sku/a%2523b"),
        ("/api/catalog/%2fproducts", "/products"),
        ("/api/catalog//products/x", "/products/x"),
        ("/api/catalog/products/metrics", "/products/metrics"),
    ],
)
def test_the_target_sent_upstream_is_the_normalised_path(raw_path, target):
    decided = _relay([PRODUCTS, CATCH_ALL], raw_path)
    assert decided is not None and decided.target == target


@pytest.mark.parametrize("raw_path", ["/api/a//private/x", "/api/a/%2fprivate/x", "/api/a/%2Fprivate%2Fx"])
def test_empty_segments_cannot_dodge_a_stricter_route(raw_path):
    public = Route(prefix="/api/a", service="a", upstream_prefix="/", auth="public")
    private = Route(prefix="/api/a/private", service="a", upstream_prefix="/private", auth="user")
    decided = _relay([private, public], raw_path)
    assert decided is not None and decided.route is private and decided.target == "/private/x"


def test_normalising_collapses_empty_segments_only():
    assert normalise("/api//catalog///x/") == "/api/catalog/x/"
    assert normalise("/api/catalog/x") == "/api/catalog/x"
    assert normalise("/a/./../b") == "/a/./../b"  # dot segments are refused, not resolved


@pytest.mark.parametrize("path", ["//metrics", "/metrics/", "///healthz", "/x/../metrics"])
def test_internal_paths_are_found_whatever_their_empty_segments(path):
    assert is_internal(path)


_SEGMENTS = st.sampled_from(
    [
        "",
        ".",
        "..",
        "metrics",
        "healthz",
        "readyz",
        "info",
        "schema",
        "internal",
        "products",
        "by-sku",
        "a?b",
        "%",
        "x y",
    ]
)


def _encodings(char: str) -> st.SearchStrategy[str]:
    escaped = "%" + char.encode().hex()
    if char == "/":
        return st.sampled_from(["/", "%2f", "%2F", "//"])
    if char.isalnum() or char in ".-":
        return st.sampled_from([char, escaped, escaped.upper()])
    return st.just(escaped.upper())


@st.composite
def _raw_paths(draw: st.DrawFn) -> str:
    rest = "/".join(draw(st.lists(_SEGMENTS, min_size=1, max_size=5)))
    return draw(st.sampled_from(["/api/catalog", "/api/catalog/products", "/api/v"])) + "".join(
        draw(_encodings(char)) for char in "/" + rest
    )


@given(raw_path=_raw_paths(), forms=st.permutations(ROUTE_FORMS))
@example(raw_path="/api/catalog/%2fmetrics", forms=ROUTE_FORMS)
@example(raw_path="/api/catalog/products/%2F..%2Fmetrics", forms=ROUTE_FORMS)
def test_the_gateway_decides_on_the_path_the_service_will_see(raw_path, forms):
    routes = sorted(forms, key=lambda r: len(r.prefix), reverse=True)  # as load_routes orders them
    decided = _relay(routes, raw_path)
    if decided is None:
        return
    route, target = decided.route, decided.target
    assert target.startswith("/") and not target.startswith("//")  # what the HTTP client accepts
    seen = _service_view(target)
    assert seen == _service_view(route.upstream_path(normalise(unquote(raw_path))))
    assert not _SERVICE_INTERNAL.match(seen) and ".." not in seen.split("/") and "." not in seen.split("/")


def test_a_method_no_route_takes_on_a_routed_path_is_405_listing_the_methods_routed_there():
    routes = load_routes()
    with pytest.raises(MethodNotAllowed) as refused:
        decide(routes, "DELETE", "/api/catalog/products/1", "/api/catalog/products/1")
    assert refused.value.headers == {"Allow": "GET, PATCH, POST"}
    with pytest.raises(NotFound):
        decide(routes, "DELETE", "/api/nothing", "/api/nothing")


def test_a_method_is_decided_on_the_normalised_path_too():
    # "//" must neither dodge the method check nor reach another route's methods.
    routes = load_routes()
    with pytest.raises(MethodNotAllowed):
        decide(routes, "DELETE", "/api/catalog//products/1", "/api/catalog//products/1")
    decided = decide(routes, "GET", "/api//catalog/products/1", "/api//catalog/products/1")
    assert decided.route.prefix == "/api/catalog/products" and decided.target == "/products/1"
