// The envelope of a stream entry, as flotilla_streams writes it: one field `envelope` with JSON.

import assert from "node:assert/strict";
import { test } from "node:test";
import { UndecodableEntry, decodeEnvelope, describe, entryFields } from "../lib/envelope.js";

const envelope = {
  id: "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
  type: "orders.OrderConfirmed",
  version: 1,
  occurred_at: "2024-05-01T10:00:00.123456Z",
  source: "orders",
  correlation_id: "req-1",
  causation_id: null,
  traceparent: null,
  payload: { type: "orders.OrderConfirmed", order_id: "0b6f3c1e-8f43-4f57-9b0a-2a8a2f1d9c10", customer_id: "c1", total: { amount: 1299, currency: "EUR" } },
};

const entry = (value, name = "envelope") => entryFields([Buffer.from(name), Buffer.from(value)]);

test("an entry's envelope field decodes to the envelope with its payload", () => {
  assert.deepEqual(decodeEnvelope(entry(JSON.stringify(envelope))), envelope);
});

test("fields given as strings decode like Buffers", () => {
  assert.deepEqual(decodeEnvelope(entryFields(["envelope", JSON.stringify(envelope)])), envelope);
});

test("fields an envelope of a newer producer adds are kept", () => {
  const decoded = decodeEnvelope(entry(JSON.stringify({ ...envelope, tenant: "eu-1" })));
  assert.equal(decoded.tenant, "eu-1");
});

test("an envelope without a payload gets a null payload, as msgspec's default", () => {
  const { payload, ...bare } = envelope;
  assert.equal(decodeEnvelope(entry(JSON.stringify(bare))).payload, null);
});

test("an entry without an envelope field is undecodable and its fields are named", () => {
  assert.throws(() => decodeEnvelope(entry("x", "other")), (error) => {
    assert.ok(error instanceof UndecodableEntry);
    assert.match(error.message, /no "envelope" field \(fields: \["other"\]\)/);
    return true;
  });
});

for (const [what, value, reason] of [
  ["invalid JSON", "{not json", /not a valid envelope: .*JSON/],
  ["bytes that are not UTF-8", Buffer.from([0xff, 0xfe]), /not a valid envelope: .*utf-8/],
  ["a JSON array", "[1, 2]", /expected a JSON object/],
  ["an envelope without an id", JSON.stringify({ ...envelope, id: undefined }), /"id" must be a non-empty string, got nothing/],
  ["an envelope with an empty type", JSON.stringify({ ...envelope, type: "" }), /"type" must be a non-empty string/],
  ["a version that is no integer", JSON.stringify({ ...envelope, version: "1" }), /"version" must be an integer, got "1"/],
]) {
  test(`${what} is undecodable with the reason`, () => {
    const fields = entryFields([Buffer.from("envelope"), Buffer.isBuffer(value) ? value : Buffer.from(value)]);
    assert.throws(() => decodeEnvelope(fields), (error) => error instanceof UndecodableEntry && reason.test(error.message));
  });
}

test("an id nested deeper than the stack is undecodable with a reason, not a RangeError", () => {
  const deep = "[".repeat(200_000) + "]".repeat(200_000);
  const fields = entryFields(["envelope", `{"id": ${deep}, "type": "orders.OrderConfirmed", "version": 1}`]);
  assert.throws(
    () => decodeEnvelope(fields),
    (error) =>
      error instanceof UndecodableEntry &&
      error.message ===
        'not a valid envelope: "id" must be a non-empty string, got an array that cannot be shown (RangeError: Maximum call stack size exceeded)',
  );
});

test("a value JSON cannot write is described by its kind", () => {
  assert.match(describe(10n), /^a bigint that cannot be shown \(TypeError: /);
  assert.equal(describe({ a: 1 }), '{"a":1}');
  assert.equal(describe("x".repeat(100)), `"${"x".repeat(76)}...`);
});
