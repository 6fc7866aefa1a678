import pytest

from flotilla_discovery.errors import DiscoveryUnavailable
from flotilla_discovery.resolver import DnsResolver


async def test_localhost_resolves_to_one_instance_per_loopback_address():
    instances = await DnsResolver("http://{service}:8123").instances("localhost")

    urls = [instance.url for instance in instances]
    assert "http://127.0.0.1:8123" in urls
    assert set(urls) <= {"http://127.0.0.1:8123", "http://[::1]:8123"}
    assert all(instance.service == "localhost" for instance in instances)
    assert [instance.instance_id for instance in instances] == sorted(instance.url[7:] for instance in instances)


async def test_the_template_path_is_kept_and_the_default_port_follows_the_scheme():
    instances = await DnsResolver("https://{service}/api").instances("localhost")

    assert "https://127.0.0.1/api" in [instance.url for instance in instances]
    assert "127.0.0.1:443" in [instance.instance_id for instance in instances]


async def test_a_name_that_does_not_resolve_is_discovery_unavailable():
    # .invalid is reserved (RFC 6761): it never resolves.
    with pytest.raises(DiscoveryUnavailable) as raised:
        await DnsResolver().instances("no-such-service.invalid")
    assert raised.value.service == "no-such-service.invalid"
