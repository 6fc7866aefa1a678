"""flotilla_redis: the Redis clients of a flotilla process, built in one place.

``create_redis`` builds the pooled client a process shares (the service kit makes one per process
and hands it to discovery and messaging); ``PipelinedRedis`` is one auto-pipelined connection for
a hot path that makes one small call per request (the gateway's rate limits). The lowest lib that
talks to Redis: it imports neither the service runtime nor any other flotilla lib.
"""

from __future__ import annotations

from importlib import resources

# Read directly rather than through flotilla_kit.info: flotilla_kit imports this lib, not the reverse.
__version__ = (resources.files(__name__) / "VERSION").read_text().strip()
