"""Removing consumers that left a group: idle past a threshold, with nothing pending.

A consumer stays in its group after its process is gone (consumer name = instance id, and every
deploy brings new ids), so without this a group lists every instance it ever had. A consumer with
pending entries is never removed: XGROUP DELCONSUMER would drop those entries from the group's
pending list, and nobody would ever handle or reclaim them. The check and the removal run in one
script, so a consumer cannot read new entries between being found idle and being removed.
"""

from __future__ import annotations

import weakref

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

_REMOVE_IDLE = """
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    table.insert(removed, info['name'])
  end
end
return removed
"""
# Registered once per client (by the first pass), rather than hashed again on every pass.
_scripts: weakref.WeakKeyDictionary[redis.Redis, AsyncScript] = weakref.WeakKeyDictionary()


def _script(client: redis.Redis) -> AsyncScript:
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(_REMOVE_IDLE)
    return script


async def remove_idle_consumers(client: redis.Redis, stream: str, group: str, *, idle_ms: int, keep: str) -> list[str]:
    """Remove the consumers of ``group`` idle for ``idle_ms`` or more with nothing pending; never ``keep``.

    Returns the names removed. A missing stream or group removes nothing (the consumer's next read
    heals the group). Raises RedisError for anything else. Safe to run from every instance at once.
    """
    try:
        removed = await _script(client)(keys=[stream], args=[group, idle_ms, keep])
    except ResponseError as exc:
        if "NOGROUP" in str(exc) or "no such key" in str(exc):
            return []
        raise
    return [name.decode() if isinstance(name, bytes) else name for name in removed]
