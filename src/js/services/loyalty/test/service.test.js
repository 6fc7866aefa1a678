// The service as a process (`node main.js`): bad requests cannot end it, bad settings stop its start
// with a message, and a poison entry goes to the dead-letter stream on its first delivery while the
// rest of its batch is handled, against a real redis-server (see support.js for where it is found).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Redis from "ioredis";
import { exchange, freePort, startRedis, startService, waitFor, withoutRedis } from "./support.js";

const STREAM = "orders.events";
const DLQ = "orders.events.dlq";

test("bad request lines get 400 and the service goes on serving", async () => {
  // No Redis at all: the HTTP face must stand whatever its dependencies do.
  const service = await startService({ REDIS_URL: `redis://127.0.0.1:${await freePort()}/0` });
  try {
    for (const target of ["//[", "http://[/", "/points/%ZZ", "*"]) {
      const answer = await exchange(service.port, `GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 400 /, `GET ${target}`);
      assert.match(answer, /content-type: application\/problem\+json/i);
    }
    assert.equal((await fetch(`${service.baseUrl}/healthz`)).status, 200);
    assert.ok(service.running(), "the service is still running");
    assert.doesNotMatch(service.stderr(), /unhandled|uncaught/i);
  } finally {
    await service.stop();
  }
});

test("while Redis does not answer, /readyz says so with 503 and Retry-After", async () => {
  const service = await startService({ REDIS_URL: `redis://127.0.0.1:${await freePort()}/0` });
  try {
    const response = await fetch(`${service.baseUrl}/readyz`, { headers: { "x-request-id": "probe-7" } });
    assert.equal(response.status, 503);
    assert.equal(response.headers.get("retry-after"), "1");
    const body = await response.json();
    assert.equal(body.request_id, "probe-7");
    assert.match(body.detail, /redis: failed/);
  } finally {
    await service.stop();
  }
});

for (const url of ["ftp://loyalty:8007", "loyalty:8007", "http:/loyalty"]) {
  test(`PUBLIC_URL=${url} stops the start with a message naming it, exit 2`, async () => {
    const service = await startService({ REDIS_URL: "redis://127.0.0.1:1/0", PUBLIC_URL: url }, { waitUntilServing: false });
    try {
      await waitFor(() => !service.running(), { what: "the service to refuse to start" });
      assert.equal((await service.exit).code, 2);
      assert.equal(service.stderr(), `loyalty: invalid settings:\n  - PUBLIC_URL="${url}": Expected an http:// or https:// URL\n`);
    } finally {
      await service.stop();
    }
  });
}

const orderConfirmed = (id, customer, amount) => ({
  id,
  type: "orders.OrderConfirmed",
  version: 1,
  occurred_at: "2024-05-01T10:00:00.123456Z",
  source: "orders",
  correlation_id: "req-1",
  causation_id: null,
  traceparent: null,
  payload: {
    type: "orders.OrderConfirmed",
    order_id: "0b6f3c1e-8f43-4f57-9b0a-2a8a2f1d9c10",
    customer_id: customer,
    total: { amount, currency: "EUR" },
  },
});

describe("against a real Redis", { skip: withoutRedis() }, () => {
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

  test("an envelope nested 200,000 deep is dead-lettered on its first delivery and the rest of its batch is handled", async () => {
    await client.flushall();
    const deep = "[".repeat(200_000) + "]".repeat(200_000);
    const poison = JSON.stringify(orderConfirmed("placeholder", "nobody", 100)).replace('"placeholder"', deep);
    await client.xadd(STREAM, "*", "envelope", JSON.stringify(orderConfirmed("event-1", "alice", 1299)));
    const poisonId = await client.xadd(STREAM, "*", "envelope", poison);
    await client.xadd(STREAM, "*", "envelope", JSON.stringify(orderConfirmed("event-2", "bob", 500)));

    // Started after the three were added: its first read takes them as one batch.
    const service = await startService({ REDIS_URL: redis.url, INSTANCE_ID: "loyalty-t1" });
    try {
      const admin = { "x-caller-id": "ops", "x-caller-roles": "admin" };
      const points = async (customer) => {
        const response = await fetch(`${service.baseUrl}/points/${customer}`, { headers: admin });
        return (await response.json()).points;
      };
      await waitFor(async () => (await points("alice")) === 12 && (await points("bob")) === 5, { what: "the good entries' points" });
      const [[, flat]] = await client.xrange(DLQ, "-", "+");
      const letter = {};
      for (let i = 0; i < flat.length; i += 2) letter[flat[i]] = flat[i + 1];
      assert.equal(letter.dlq_entry_id, poisonId);
      assert.equal(letter.dlq_deliveries, "1");
      assert.equal(
        letter.dlq_reason,
        'undecodable: not a valid envelope: "id" must be a non-empty string, got an array that cannot be shown (RangeError: Maximum call stack size exceeded)',
      );
      assert.equal(await client.xlen(DLQ), 1);
      const [, pending] = await client.xpending(STREAM, "loyalty");
      assert.equal(pending, null, "nothing left pending");
      const metrics = await (await fetch(`${service.baseUrl}/metrics`)).text();
      assert.doesNotMatch(metrics, /flotilla_stream_consumer_restarts_total\{[^}]*\} [1-9]/);
      assert.equal((await fetch(`${service.baseUrl}/readyz`)).status, 200);
    } finally {
      await service.stop();
    }
  });

  test("points are read for the caller or an admin only, and odd ids are plain ids", async () => {
    await client.flushall();
    await client.hset("flotilla:loyalty:points", "alice", 12);
    const service = await startService({ REDIS_URL: redis.url, INSTANCE_ID: "loyalty-t2" });
    try {
      const get = (customer, headers) => fetch(`${service.baseUrl}/points/${customer}`, { headers });
      assert.deepEqual(await (await get("alice", { "x-caller-id": "alice" })).json(), { customer_id: "alice", points: 12 });
      assert.equal((await get("alice", {})).status, 401);
      assert.equal((await get("alice", { "x-caller-id": "mallory" })).status, 403);
      assert.equal((await get("%00%0d%0a", { "x-caller-id": "ops", "x-caller-roles": "admin" })).status, 400);
      assert.equal((await get("x".repeat(10_000), { "x-caller-id": "ops", "x-caller-roles": "admin" })).status, 400);
      const proto = await get("__proto__", { "x-caller-id": "__proto__" });
      assert.deepEqual(await proto.json(), { customer_id: "__proto__", points: 0 });
    } finally {
      await service.stop();
    }
  });
});
