"""How instances are laid out in Redis: keys, atomic scripts and change notifications.

Per service, two keys and one channel (``flotilla`` is the namespace, ``catalog`` the service):

- ``flotilla:discovery:{catalog}:expiries``: sorted set, member = instance id, score = expiry time
  in milliseconds of Redis server time;
- ``flotilla:discovery:{catalog}:instances``: hash, field = instance id, value = Instance as JSON;
- ``flotilla:discovery:catalog``: pub/sub channel announcing every change (a ``Change`` as JSON).

Why a sorted set scored by expiry rather than one key per instance with EX plus an index set:
Redis cannot expire a member of a set, so with per-instance keys the index keeps ghost members
of expired instances, and every read would need the index, then a GET per member, then a cleanup.
Here one script reads a service's live instances in a single round trip and prunes the expired
ones with ZREMRANGEBYSCORE as it goes, expiry is still per instance, and a pruning read can
announce the expiry on the channel (a key expiring on its own announces nothing without keyspace
notifications, which are off by default). Both keys also get a key-level expiry a grace period
after the latest instance's expiry, so a service whose instances all died leaves nothing behind.

Expiry times come from Redis's own clock (TIME inside the scripts), never the callers': instances
on hosts with skewed clocks still agree on who is alive. The ``{service}`` hash tag keeps both keys
in one slot, so the scripts stay valid on Redis Cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import msgspec
import redis.asyncio as redis

from flotilla_discovery.instance import Instance, instance_decoder, instance_encoder

log = logging.getLogger(__name__)

ChangeKind = Literal["registered", "deregistered", "expired"]


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """What the service channel announces; subscribers may also just re-read on any message."""

    change: str  # one of ChangeKind; a plain str so that new kinds don't break old subscribers
    instance_id: str


_change_encoder = msgspec.json.Encoder()

# The keys outlive their last instance by this many TTLs, so that a resolver's periodic read still
# finds the expired entry to prune and announce (keys vanishing on their own would announce nothing).
KEY_GRACE_TTLS = 10

# Registers or refreshes one instance. Returns 1 if it was not live before (new, expired, or lost
# with a Redis restart), else 0; announces the change when asked to always, or when it was not live.
_WRITE_SCRIPT = """
local expiries, instances = KEYS[1], KEYS[2]
local instance_id, data, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local channel, message, announce = ARGV[4], ARGV[5], ARGV[6]
local keys_grace_ms = tonumber(ARGV[7])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local previous = redis.call('ZSCORE', expiries, instance_id)
local was_live = previous and tonumber(previous) > now
redis.call('ZADD', expiries, now + ttl_ms, instance_id)
redis.call('HSET', instances, instance_id, data)
local latest = redis.call('ZRANGE', expiries, -1, -1, 'WITHSCORES')
local keys_expire_at = tonumber(latest[2]) + keys_grace_ms
redis.call('PEXPIREAT', expiries, keys_expire_at)
redis.call('PEXPIREAT', instances, keys_expire_at)
if announce == 'always' or not was_live then
  redis.call('PUBLISH', channel, message)
end
if was_live then return 0 end
return 1
"""

# Prunes expired instances (announcing each) and returns the live ones' data, in one atomic step.
# unpack() is bounded by Lua's stack (~8000 values): far above any realistic instance count.
_READ_LIVE_SCRIPT = """
local expiries, instances = KEYS[1], KEYS[2]
local channel = ARGV[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', expiries, '-inf', now)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', expiries, '-inf', now)
  redis.call('HDEL', instances, unpack(expired))
  for _, instance_id in ipairs(expired) do
    redis.call('PUBLISH', channel, cjson.encode({change = 'expired', instance_id = instance_id}))
  end
end
local live = redis.call('ZRANGEBYSCORE', expiries, '(' .. now, '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', instances, unpack(live))
"""


@dataclass(frozen=True)
class ServiceKeys:
    """The Redis names for one service's instances."""

    expiries: str
    instances: str
    channel: str


def service_keys(namespace: str, service: str) -> ServiceKeys:
    """Key and channel names of ``service``; raises ValueError for a name that cannot be one."""
    if not service or any(char in service for char in "{}*?[] \t\r\n"):
        raise ValueError(f"not a usable service name: {service!r}")
    prefix = f"{namespace}:discovery"
    return ServiceKeys(
        expiries=f"{prefix}:{{{service}}}:expiries",
        instances=f"{prefix}:{{{service}}}:instances",
        channel=f"{prefix}:{service}",
    )


def channel_prefix(namespace: str) -> str:
    """What every service channel starts with; the rest of the channel name is the service."""
    return f"{namespace}:discovery:"


def channel_pattern(namespace: str) -> str:
    """A PSUBSCRIBE pattern matching every service channel of ``namespace``."""
    escaped = "".join(f"\\{char}" if char in "*?[]\\" else char for char in channel_prefix(namespace))
    return escaped + "*"


def as_text(value: bytes | str) -> str:
    """Redis replies are bytes or str depending on the client's ``decode_responses``; accept both."""
    return value.decode() if isinstance(value, bytes) else value


class RedisStore:
    """The scripts and commands over the layout above, registered once per client."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        # Script objects run by EVALSHA and reload themselves after a Redis restart (NOSCRIPT).
        self._write = client.register_script(_WRITE_SCRIPT)
        self._read_live = client.register_script(_READ_LIVE_SCRIPT)

    async def write(self, instance: Instance, *, ttl_ms: int, announce: Literal["always", "if_new"]) -> bool:
        """Store ``instance`` live for ``ttl_ms``; True if it was not live before. Raises RedisError."""
        keys = service_keys(self.namespace, instance.service)
        message = _change_encoder.encode(Change(change="registered", instance_id=instance.instance_id))
        data = instance_encoder.encode(instance)
        args = [instance.instance_id, data, ttl_ms, keys.channel, message, announce, ttl_ms * KEY_GRACE_TTLS]
        was_new = await self._write(keys=[keys.expiries, keys.instances], args=args)
        return bool(int(was_new))

    async def remove(self, instance: Instance) -> None:
        """Remove ``instance`` and announce it (idempotent). Raises RedisError."""
        keys = service_keys(self.namespace, instance.service)
        message = _change_encoder.encode(Change(change="deregistered", instance_id=instance.instance_id))
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.expiries, instance.instance_id)
            pipe.hdel(keys.instances, instance.instance_id)
            pipe.publish(keys.channel, message)
            await pipe.execute()

    async def live(self, service: str) -> list[Instance]:
        """Live instances of ``service`` sorted by instance id, pruning expired ones. Raises RedisError."""
        keys = service_keys(self.namespace, service)
        found = await self._read_live(keys=[keys.expiries, keys.instances], args=[keys.channel])
        instances = []
        for data in found:
            if data is None:
                continue  # cannot happen with the atomic scripts; tolerated rather than crash a caller
            try:
                instances.append(instance_decoder.decode(data))
            except msgspec.DecodeError:
                # An entry this version cannot read must not hide the others.
                log.warning("skipping an unreadable instance of %s: %r", service, data)
        return sorted(instances, key=lambda instance: instance.instance_id)
