// Loyalty points kept in Redis, applied atomically with the stream ack.
//
// Why Redis and not a database of its own: the service must record each event's effect exactly
// once although delivery is at least once. The Python services get that from an inbox table in the
// same SQL transaction as the effect, then ack. Node 20 has no SQLite without a native module, and
// the events already live in Redis: one Lua script there checks the event id against the processed
// ids, adds the points, records the id and XACKs the entry, all or nothing. A crash between effect
// and ack cannot happen (they are one step), and a redelivery (a restart, a reclaim by another
// instance, a replayed dead letter) finds its id and adds nothing. The points are as durable as
// the Redis that holds the streams (AOF in the stack). Redis Cluster would need the stream and
// these keys in one slot; the platform runs one Redis.

export const POINTS_KEY = "flotilla:loyalty:points"; // hash: customer id -> points
export const PROCESSED_KEY = "flotilla:loyalty:processed"; // sorted set: event id, scored by when (ms)

// KEYS: stream, processed ids, points. ARGV: group, now (ms), then per entry 4 values: entry id,
// event id ("" for an entry acked without an effect), customer id, points.
// Returns, per entry, 1 when its effect was applied now, 0 when its event id had been processed
// before (a duplicate), -1 for an entry only acked.
const APPLY_AND_ACK = `
local stream, processed, points = KEYS[1], KEYS[2], KEYS[3]
local group, now = ARGV[1], ARGV[2]
local results, ids = {}, {}
for i = 3, #ARGV, 4 do
  local entry_id, event_id, customer, earned = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if event_id == '' then
    table.insert(results, -1)
  elseif redis.call('ZADD', processed, 'NX', now, event_id) == 1 then
    redis.call('HINCRBY', points, customer, earned)
    table.insert(results, 1)
  else
    table.insert(results, 0)
  end
  table.insert(ids, entry_id)
end
if #ids > 0 then redis.call('XACK', stream, group, unpack(ids)) end
return results
`;

/**
 * Registers the script on `client` (ioredis runs it by EVALSHA and loads it again after NOSCRIPT).
 * Returns the store's operations.
 */
export function pointsStore(client) {
  client.defineCommand("loyaltyApplyAndAck", { numberOfKeys: 3, lua: APPLY_AND_ACK });
  return {
    /**
     * Apply `items` ({entryId, eventId, customerId, points}; eventId null: ack only) and ack
     * their entries, in one atomic step. Returns per item "applied", "duplicate" or "acked".
     */
    async applyAndAck(stream, group, items) {
      if (!items.length) return [];
      const args = [];
      for (const item of items) {
        args.push(item.entryId, item.eventId ?? "", item.customerId ?? "", String(item.points ?? 0));
      }
      const results = await client.loyaltyApplyAndAck(stream, PROCESSED_KEY, POINTS_KEY, group, String(Date.now()), ...args);
      return results.map((r) => (r === 1 ? "applied" : r === 0 ? "duplicate" : "acked"));
    },
    /** Points of `customerId` (0 when none yet). */
    async points(customerId) {
      const value = await client.hget(POINTS_KEY, customerId);
      return value === null ? 0 : Number(value);
    },
    /** Forget event ids processed more than `olderThanMs` ago; returns how many. */
    async purgeProcessed(olderThanMs) {
      return client.zremrangebyscore(PROCESSED_KEY, "-inf", `(${Date.now() - olderThanMs}`);
    },
  };
}
