"""Fixed URLs per service, from settings or an environment variable: for local runs and tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from flotilla_discovery.instance import Instance


class StaticResolver:
    """Resolves each service to the URLs it was given, in the given order; unknown services to [].

    Each URL is one instance whose ``instance_id`` is the URL itself (unique within a service).
    """

    def __init__(self, urls: Mapping[str, Sequence[str]]) -> None:
        """Raises ValueError naming the service or URL that is not usable."""
        self._instances: dict[str, list[Instance]] = {}
        for service, service_urls in urls.items():
            if not service or service != service.strip():
                raise ValueError(f"not a usable service name: {service!r}")
            if isinstance(service_urls, str):
                # A bare string is a Sequence[str] too; iterating it would make one "URL" per character.
                raise ValueError(f"{service}: give a list of URLs, not the string {service_urls!r}")
            if not service_urls:
                raise ValueError(f"{service}: no URLs")
            if len(set(service_urls)) != len(service_urls):
                raise ValueError(f"{service}: a URL is listed twice in {list(service_urls)!r}")
            for url in service_urls:
                _check_url(service, url)
            self._instances[service] = [Instance(service=service, instance_id=url, url=url) for url in service_urls]

    @classmethod
    def from_env_string(cls, value: str) -> StaticResolver:
        """Parse ``"catalog=http://a:1,http://b:2;inventory=http://c:3"``.

        Whitespace around parts and an empty part (a trailing ``;``) are ignored; an empty string
        means no services. Raises ValueError naming the bad part.
        """
        urls: dict[str, list[str]] = {}
        for part in value.split(";"):
            part = part.strip()
            if not part:
                continue
            service, separator, listed = part.partition("=")
            service = service.strip()
            if not separator or not service:
                raise ValueError(f"expected service=url[,url...], got {part!r}")
            if service in urls:
                raise ValueError(f"service {service!r} is given twice, again in {part!r}")
            service_urls = [url.strip() for url in listed.split(",")]
            if not all(service_urls):
                raise ValueError(f"an empty URL in {part!r}")
            urls[service] = service_urls
        return cls(urls)

    async def instances(self, service: str) -> list[Instance]:
        """The configured instances of ``service`` (a new list; never raises)."""
        return list(self._instances.get(service, ()))


def _check_url(service: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{service}: not an http(s) base URL: {url!r}")
    try:
        parts.port  # noqa: B018 - property access validates the port
    except ValueError:
        raise ValueError(f"{service}: bad port in {url!r}") from None
