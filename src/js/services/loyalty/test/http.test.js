// The HTTP face in this process, on a real socket: who may read whose points, what a bad request
// gets, and that no request's error escapes the handler. service.test.js runs it as a process.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createServer, targetPath } from "../lib/http.js";
import { exchange } from "./support.js";

const points = new Map([["customer-1", 12], ["customer-2", 7]]);
const logged = [];
const log = { error: (msg, extra, error) => logged.push({ msg, extra, error }), warning: () => {}, info: () => {} };
const broken = { store: false, metrics: false, ready: true };
let server;
let base;

before(async () => {
  server = createServer({
    checks: {
      redis: async () => {
        if (!broken.ready) throw new Error("connection refused");
      },
    },
    state: { accepting: true },
    metrics: {
      render: () => {
        if (broken.metrics) throw new TypeError("cannot read properties of undefined");
        return "";
      },
    },
    info: { service: "loyalty" },
    points: async (customer) => {
      if (broken.store) throw new Error("Connection is closed.");
      return points.get(customer) ?? 0;
    },
    log,
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((resolve) => server.close(resolve)));

const get = (path, headers = {}) => fetch(base + path, { headers });
const asCustomer = (id) => ({ "x-caller-id": id });
const asAdmin = { "x-caller-id": "ops-1", "x-caller-roles": "support, admin" };

async function assertProblem(response, status, typeName) {
  assert.equal(response.status, status);
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  const body = await response.json();
  assert.equal(body.type, `https://flotilla.dev/problems/${typeName}`);
  assert.equal(body.status, status);
  assert.equal(typeof body.title, "string");
  assert.equal(typeof body.detail, "string");
  return body;
}

test("a customer reads their own points", async () => {
  const response = await get("/points/customer-1", asCustomer("customer-1"));
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { customer_id: "customer-1", points: 12 });
});

test("without a caller the points are refused with 401", async () => {
  const body = await assertProblem(await get("/points/customer-1"), 401, "unauthorized");
  assert.match(body.detail, /No authenticated caller/);
});

test("a customer asking for another customer's points is refused with 403", async () => {
  const body = await assertProblem(await get("/points/customer-2", asCustomer("customer-1")), 403, "forbidden");
  assert.equal(body.detail, "a customer can see only their own points");
});

test("a caller with the admin role reads any customer's points", async () => {
  const response = await get("/points/customer-2", asAdmin);
  assert.deepEqual(await response.json(), { customer_id: "customer-2", points: 7 });
});

test("a role that only contains the word admin is no admin role", async () => {
  await assertProblem(await get("/points/customer-2", { "x-caller-id": "c", "x-caller-roles": "administrator,sysadmin" }), 403, "forbidden");
});

for (const [what, segment] of [
  ["NUL and CR LF", "%00%0d%0a"],
  ["a space", "customer%201"],
  ["a non-ASCII letter", "caf%C3%A9"],
  ["256 characters", "c".repeat(256)],
  ["10,000 characters", "c".repeat(10_000)],
  ["broken percent-encoding", "%E0%A4%A"],
  ["percent-encoding that is not UTF-8", "%FF"],
]) {
  test(`a customer id with ${what} is refused with 400, even for an admin`, async () => {
    await assertProblem(await get(`/points/${segment}`, asAdmin), 400, "bad-request");
  });
}

test("a customer id of 255 visible ASCII characters is accepted", async () => {
  const id = "~!".repeat(127) + "z";
  const response = await get(`/points/${encodeURIComponent(id)}`, asCustomer(id));
  assert.deepEqual(await response.json(), { customer_id: id, points: 0 });
});

test("object property names as customer ids are plain ids with no points", async () => {
  for (const id of ["__proto__", "constructor", "hasOwnProperty"]) {
    const response = await get(`/points/${id}`, asAdmin);
    assert.deepEqual(await response.json(), { customer_id: id, points: 0 });
  }
});

test("request targets that are not paths get 400 and the server goes on serving", async () => {
  const { port } = server.address();
  for (const target of ["//[", "http://[/", "*", "http://localhost/healthz"]) {
    const answer = await exchange(port, `GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 400 /, `GET ${target}`);
    assert.match(answer, /content-type: application\/problem\+json/i);
    assert.match(answer, /"title":"Bad Request"/);
  }
  assert.equal((await get("/healthz")).status, 200);
});

test("a path with a query is routed by its path", async () => {
  assert.equal(targetPath("/healthz?verbose=1"), "/healthz");
  assert.equal((await get("/healthz?[")).status, 200);
});

test("problem documents carry the caller's request id, or a fresh one instead of an unsafe one", async () => {
  let response = await get("/nowhere", { "x-request-id": "req-42.a:b" });
  assert.equal((await assertProblem(response, 404, "not-found")).request_id, "req-42.a:b");
  assert.equal(response.headers.get("x-request-id"), "req-42.a:b");
  response = await get("/nowhere", { "x-request-id": "a b\"<script>" });
  const { request_id: fresh } = await assertProblem(response, 404, "not-found");
  assert.match(fresh, /^[0-9a-f]{32}$/);
  assert.equal(response.headers.get("x-request-id"), fresh);
});

test("an error in a handler answers 500 without internals, is logged with the request id, and the server goes on", async () => {
  broken.metrics = true;
  try {
    const body = await assertProblem(await get("/metrics", { "x-request-id": "req-500" }), 500, "internal-error");
    assert.equal(body.detail, "An unexpected error occurred.");
    assert.equal(body.request_id, "req-500");
    const entry = logged.find((e) => e.extra?.request_id === "req-500");
    assert.match(entry.msg, /request failed: GET \/metrics/);
    assert.ok(entry.error instanceof TypeError);
  } finally {
    broken.metrics = false;
  }
  assert.equal((await get("/metrics")).status, 200);
});

test("a points store that does not answer gives 503 with Retry-After", async () => {
  broken.store = true;
  try {
    const response = await get("/points/customer-1", asCustomer("customer-1"));
    await assertProblem(response, 503, "dependency-unavailable");
    assert.equal(response.headers.get("retry-after"), "1");
  } finally {
    broken.store = false;
  }
});

test("not ready answers 503 with Retry-After, naming the failing check", async () => {
  broken.ready = false;
  try {
    const response = await get("/readyz", { "x-request-id": "probe-1" });
    const body = await assertProblem(response, 503, "not-ready");
    assert.equal(response.headers.get("retry-after"), "1");
    assert.equal(body.detail, "redis: failed: connection refused");
    assert.equal(body.request_id, "probe-1");
    assert.deepEqual(body.errors, [{ check: "redis", result: "failed: connection refused" }]);
  } finally {
    broken.ready = true;
  }
  const ready = await get("/readyz");
  assert.equal(ready.status, 200);
  assert.equal(ready.headers.get("retry-after"), null);
});

test("methods other than GET and HEAD get 405 with Allow", async () => {
  const response = await fetch(`${base}/points/customer-1`, { method: "POST", headers: asCustomer("customer-1") });
  await assertProblem(response, 405, "method-not-allowed");
  assert.equal(response.headers.get("allow"), "GET, HEAD");
});
