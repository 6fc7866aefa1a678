import pytest

from gateway.routes import RouteError, is_internal, load_routes, match, methods_allowed


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
