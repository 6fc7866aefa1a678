"""Instances from DNS names, for Kubernetes Services (a headless Service gives one address per pod)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from flotilla_discovery.errors import DiscoveryUnavailable
from flotilla_discovery.instance import Instance

log = logging.getLogger(__name__)


@dataclass
class _Resolved:
    instances: list[Instance]
    checked_at: float


class DnsResolver:
    """Resolves ``template.format(service=...)``'s host name to one Instance per A/AAAA address.

    An instance's URL is the template's with the address in place of the name, and its
    ``instance_id`` is ``address:port``. Results are cached for ``ttl_seconds``; when a lookup
    fails, the last known addresses are served (and the lookup retried after another TTL).
    Note that requests then go to an IP address, so the Host header carries the address.
    """

    def __init__(
        self,
        template: str = "http://{service}:8000",
        *,
        ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.template = template
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._cache: dict[str, _Resolved] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def instances(self, service: str) -> list[Instance]:
        """Instances of ``service`` sorted by instance id.

        Raises DiscoveryUnavailable if the name does not resolve and nothing is cached, ValueError
        if the template does not make a URL with a host. Concurrent calls share one lookup.
        """
        cached = self._cache.get(service)
        if cached is not None and self._clock() - cached.checked_at < self.ttl_seconds:
            return list(cached.instances)
        async with self._locks.setdefault(service, asyncio.Lock()):
            cached = self._cache.get(service)
            if cached is not None and self._clock() - cached.checked_at < self.ttl_seconds:
                return list(cached.instances)  # another caller looked it up while we waited
            try:
                found = await self._look_up(service)
            except OSError as error:  # socket.gaierror is an OSError
                if cached is None:
                    raise DiscoveryUnavailable(service, f"DNS lookup failed: {error}") from error
                log.warning("DNS lookup for %s failed, serving the last known addresses: %r", service, error)
                cached.checked_at = self._clock()
                return list(cached.instances)
            self._cache[service] = _Resolved(found, self._clock())
            return list(found)

    async def _look_up(self, service: str) -> list[Instance]:
        url = self.template.format(service=service)
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"template {self.template!r} gives no host name for {service!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        addresses = sorted({str(address[4][0]) for address in found})
        instances = []
        for address in addresses:
            host = f"[{address}]" if ":" in address else address
            netloc = f"{host}:{port}" if parts.port else host
            instances.append(
                Instance(
                    service=service,
                    instance_id=f"{host}:{port}",
                    url=urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
                )
            )
        return sorted(instances, key=lambda instance: instance.instance_id)
