// The consumer loop in this process against a real redis-server: an error while deciding on one
// entry is that entry's alone.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Redis from "ioredis";
import { LoyaltyConsumer } from "../lib/consumer.js";
import { loadContract } from "../lib/contract.js";
import { silentLogger } from "../lib/log.js";
import { createMetrics } from "../lib/metrics.js";
import { DEFAULT_ASYNCAPI_FILE } from "../lib/settings.js";
import { POINTS_KEY, pointsStore } from "../lib/store.js";
import { startRedis, waitFor, withoutRedis } from "./support.js";

const STREAM = "orders.events";
const EVENT = "orders.OrderConfirmed";

const envelope = (id, customer, amount) =>
  JSON.stringify({
    id,
    type: EVENT,
    version: 1,
    occurred_at: "2024-05-01T10:00:00.123456Z",
    source: "orders",
    correlation_id: "req-1",
    payload: { type: EVENT, order_id: "0b6f3c1e-8f43-4f57-9b0a-2a8a2f1d9c10", customer_id: customer, total: { amount, currency: "EUR" } },
  });

describe("the consumer against a real Redis", { skip: withoutRedis() }, () => {
  let redis;
  let client;

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url, { lazyConnect: true });
    await client.connect();
  });

  after(async () => {
    await client?.quit();
    await redis?.stop();
  });

  test("an entry whose decision throws is dead-lettered at once as undecodable and the rest of its batch is handled", async () => {
    const published = loadContract(process.env.ASYNCAPI_FILE || DEFAULT_ASYNCAPI_FILE, { eventType: EVENT });
    // As a validator overflowing its stack on one payload would: a throw that is no UndecodableEntry.
    const contract = {
      ...published,
      checkPayload: (payload) => {
        if (payload.customer_id === "poison") throw new RangeError("Maximum call stack size exceeded");
        return published.checkPayload(payload);
      },
    };
    await client.xadd(STREAM, "*", "envelope", envelope("event-1", "alice", 1299));
    const poisonId = await client.xadd(STREAM, "*", "envelope", envelope("event-2", "poison", 100));
    await client.xadd(STREAM, "*", "envelope", envelope("event-3", "bob", 500));
    const consumerClient = new Redis(redis.url);
    const metrics = createMetrics({ service: "loyalty", version: "test" });
    const consumer = new LoyaltyConsumer({
      client: consumerClient,
      store: pointsStore(consumerClient),
      contract,
      stream: STREAM,
      group: "loyalty",
      consumer: "c1",
      options: { blockMs: 100 },
      metrics,
      log: silentLogger.child("test"),
    });
    const running = consumer.run();
    try {
      await waitFor(async () => (await client.xlen(`${STREAM}.dlq`)) === 1 && (await client.hlen(POINTS_KEY)) === 2, {
        what: "one dead letter and two customers with points",
      });
      assert.deepEqual(await client.hgetall(POINTS_KEY), { alice: "12", bob: "5" });
      const [[, flat]] = await client.xrange(`${STREAM}.dlq`, "-", "+");
      const letter = new Map();
      for (let i = 0; i < flat.length; i += 2) letter.set(flat[i], flat[i + 1]);
      assert.equal(letter.get("dlq_entry_id"), poisonId);
      assert.equal(letter.get("dlq_reason"), "undecodable: RangeError: Maximum call stack size exceeded");
      assert.equal(letter.get("dlq_deliveries"), "1");
      assert.equal(consumer.lastError, null);
      assert.equal(metrics.restarts.get({ group: "loyalty" }), 0);
      assert.equal(metrics.counter("dead_lettered").get({ stream: STREAM, group: "loyalty" }), 1);
    } finally {
      consumer.stop();
      await running;
      await consumerClient.quit();
    }
  });
});
