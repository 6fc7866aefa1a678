"""Where a service's instances come from: the ``Resolver`` protocol and its implementations.

- ``RedisResolver``: the Redis registry, cached and refreshed on change (the default in a fleet);
- ``StaticResolver``: fixed URLs from settings or an environment string (local runs, tests);
- ``DnsResolver``: DNS names, for Kubernetes Services.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from flotilla_discovery.dns_resolver import DnsResolver
from flotilla_discovery.instance import Instance
from flotilla_discovery.redis_resolver import RedisResolver
from flotilla_discovery.static_resolver import StaticResolver

__all__ = ["DnsResolver", "RedisResolver", "RegistrationNotifier", "Resolver", "StaticResolver"]


class Resolver(Protocol):
    async def instances(self, service: str) -> list[Instance]:
        """The instances of ``service`` that are known to be live; [] if none.

        May raise DiscoveryUnavailable (a NoInstances) when the source cannot be reached and
        nothing is cached. The list is the caller's to keep or change.
        """
        ...


@runtime_checkable
class RegistrationNotifier(Protocol):
    """A resolver that can tell when an instance registers (new, or again after a restart)."""

    def add_registration_listener(self, listener: Callable[[Instance], None]) -> None:
        """Call ``listener(instance)`` once the resolver's list holds a newly (re-)registered instance."""
        ...
