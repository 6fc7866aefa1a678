"""flotilla_discovery: how services find each other and spread calls over instances.

Each instance registers itself in Redis with a TTL kept alive by a heartbeat and removed on
shutdown (``registry``); callers look instances up through a ``Resolver`` (a cache over Redis kept
fresh by change notifications, static URLs from the environment, or DNS names for Kubernetes
Services), and a ``Balancer`` picks one instance per call (round robin or power of two choices on
in-flight requests), ejecting for a while an instance whose connections keep failing (or until
it registers again).
"""

from __future__ import annotations

from importlib import resources

# Read directly rather than through flotilla_kit.info: flotilla_kit imports this lib, not the reverse.
__version__ = (resources.files(__name__) / "VERSION").read_text().strip()
