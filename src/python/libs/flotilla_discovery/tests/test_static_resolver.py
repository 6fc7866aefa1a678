import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla_discovery.instance import Instance
from flotilla_discovery.resolver import StaticResolver


async def urls(resolver: StaticResolver, service: str) -> list[str]:
    return [instance.url for instance in await resolver.instances(service)]


async def test_the_env_string_gives_each_service_its_urls_in_order():
    resolver = StaticResolver.from_env_string("catalog=http://a:1,http://b:2;inventory=http://c:3")

    assert await resolver.instances("catalog") == [
        Instance(service="catalog", instance_id="http://a:1", url="http://a:1"),
        Instance(service="catalog", instance_id="http://b:2", url="http://b:2"),
    ]
    assert await urls(resolver, "inventory") == ["http://c:3"]
    assert await resolver.instances("payments") == []


async def test_whitespace_and_empty_parts_are_tolerated():
    resolver = StaticResolver.from_env_string(" catalog = http://a:1 , https://b ; ;inventory=http://c:3; ")

    assert await urls(resolver, "catalog") == ["http://a:1", "https://b"]
    assert await urls(resolver, "inventory") == ["http://c:3"]


async def test_an_empty_string_means_no_services():
    assert await StaticResolver.from_env_string("").instances("catalog") == []


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("catalog", "'catalog'"),
        ("=http://a:1", "'=http://a:1'"),
        ("catalog=", "'catalog='"),
        ("catalog=http://a:1,,http://b:2", "'catalog=http://a:1,,http://b:2'"),
        ("catalog=a:1", "'a:1'"),
        ("catalog=ftp://a:1", "'ftp://a:1'"),
        ("catalog=http://:1", "'http://:1'"),
        ("catalog=http://a:port", "'http://a:port'"),
        ("catalog=http://a:1;catalog=http://b:2", "'catalog=http://b:2'"),
        ("catalog=http://a:1,http://a:1", "'http://a:1'"),
    ],
)
def test_a_bad_env_string_is_refused_naming_the_bad_part(value, named):
    with pytest.raises(ValueError) as raised:
        StaticResolver.from_env_string(value)
    assert named in str(raised.value)


def test_a_bare_string_instead_of_a_list_of_urls_is_refused():
    with pytest.raises(ValueError, match="catalog"):
        StaticResolver({"catalog": "http://a:1"})


service_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
base_urls = st.builds(
    lambda scheme, host, port: f"{scheme}://{host}" + (f":{port}" if port else ""),
    st.sampled_from(["http", "https"]),
    hosts,
    st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
)
configurations = st.dictionaries(service_names, st.lists(base_urls, min_size=1, max_size=5, unique=True), max_size=6)


@given(configurations)
async def test_any_configuration_written_as_an_env_string_reads_back_the_same(configuration):
    value = ";".join(f"{service}={','.join(service_urls)}" for service, service_urls in configuration.items())
    resolver = StaticResolver.from_env_string(value)

    for service, service_urls in configuration.items():
        assert await urls(resolver, service) == service_urls
