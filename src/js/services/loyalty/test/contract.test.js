// Validation against the published AsyncAPI document: the committed docs/asyncapi.json (or
// ASYNCAPI_FILE), and small documents made here for the loader's own rules.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ContractError, contractFrom, loadContract } from "../lib/contract.js";
import { DEFAULT_ASYNCAPI_FILE } from "../lib/settings.js";

const EVENT = "orders.OrderConfirmed";
const published = process.env.ASYNCAPI_FILE || DEFAULT_ASYNCAPI_FILE;

const confirmed = () => ({
  type: EVENT,
  order_id: "0b6f3c1e-8f43-4f57-9b0a-2a8a2f1d9c10",
  customer_id: "customer-1",
  total: { amount: 1299, currency: "EUR" },
});

const envelopeOf = (payload) => ({
  id: "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
  type: EVENT,
  version: 1,
  occurred_at: "2024-05-01T10:00:00.123456Z",
  source: "orders",
  correlation_id: "req-1",
  causation_id: null,
  traceparent: null,
  payload,
});

test("the published document describes OrderConfirmed on orders.events", () => {
  const contract = loadContract(published, { eventType: EVENT });
  assert.equal(contract.stream, "orders.events");
});

test("an OrderConfirmed as the orders service sends it fits the published schema", () => {
  const contract = loadContract(published, { eventType: EVENT });
  assert.equal(contract.checkPayload(confirmed()), null);
  assert.equal(contract.checkEnvelope(envelopeOf(confirmed())), null);
});

test("an OrderConfirmed with an added unknown field still fits (a newer producer's)", () => {
  const contract = loadContract(published, { eventType: EVENT });
  const newer = { ...confirmed(), loyalty_multiplier: 2, total: { ...confirmed().total, tax: 208 } };
  assert.equal(contract.checkPayload(newer), null);
  assert.equal(contract.checkEnvelope({ ...envelopeOf(newer), version: 2, tenant: "eu-1" }), null);
});

for (const [what, change, reason] of [
  ["without a customer", (p) => delete p.customer_id, /must have required property 'customer_id'/],
  ["with a total as text", (p) => (p.total = "12.99"), /\/total must be object/],
  ["with a negative amount", (p) => (p.total.amount = -1), /\/total\/amount must be >= 0/],
  ["with a fractional amount", (p) => (p.total.amount = 12.5), /\/total\/amount must be integer/],
  ["with an order id that is no UUID", (p) => (p.order_id = "order-1"), /\/order_id must match format "uuid"/],
  ["of another type tag", (p) => (p.type = "orders.OrderPlaced"), /\/type must be equal to one of the allowed values/],
]) {
  test(`an OrderConfirmed ${what} breaks the published schema, with the reason`, () => {
    const contract = loadContract(published, { eventType: EVENT });
    const payload = confirmed();
    change(payload);
    assert.match(contract.checkPayload(payload) ?? "", reason);
  });
}

test("an envelope without a correlation id or with a payload that is no object breaks the published Envelope schema", () => {
  const contract = loadContract(published, { eventType: EVENT });
  const { correlation_id, ...uncorrelated } = envelopeOf(confirmed());
  assert.match(contract.checkEnvelope(uncorrelated) ?? "", /must have required property 'correlation_id'/);
  assert.match(contract.checkEnvelope(envelopeOf("{}")) ?? "", /\/payload must be object/);
});

// The loader's rules, on small documents of the published structure.

const money = { type: "object", required: ["amount", "currency"], properties: { amount: { type: "integer" }, currency: { type: "string" } } };
const orderConfirmed = {
  type: "object",
  required: ["type", "customer_id", "total"],
  properties: { type: { enum: [EVENT] }, customer_id: { type: "string" }, total: { $ref: "#/components/schemas/Money" } },
};
const documentWith = (messages, schemas = { Money: money, OrderConfirmed: orderConfirmed }) => ({
  asyncapi: "3.0.0",
  components: { schemas, messages },
});

test("a payload's references into components.schemas resolve as written", () => {
  const contract = contractFrom(
    documentWith({ Confirmed: { name: EVENT, "x-stream": "orders.events", payload: { $ref: "#/components/schemas/OrderConfirmed" } } }),
    { eventType: EVENT },
  );
  assert.equal(contract.checkPayload(confirmed()), null);
  assert.match(contract.checkPayload({ ...confirmed(), total: { amount: 1 } }), /\/total must have required property 'currency'/);
});

test("the message is found by its name (the event type), whatever its key", () => {
  const contract = contractFrom(
    documentWith({ Other: { name: "orders.OrderPlaced", payload: {} }, Anything: { name: EVENT, payload: orderConfirmed } }),
    { eventType: EVENT },
  );
  assert.equal(contract.messageKey, "Anything");
  assert.equal(contract.stream, null);
});

test("a schema in a Multi Format Schema Object (AsyncAPI 3) is used, in its JSON Schema draft", () => {
  const payload = { schemaFormat: "application/schema+json;version=draft-2020-12", schema: { $ref: "#/components/schemas/OrderConfirmed" } };
  const contract = contractFrom(documentWith({ Confirmed: { name: EVENT, payload } }), { eventType: EVENT });
  assert.equal(contract.checkPayload(confirmed()), null);
  assert.notEqual(contract.checkPayload({ ...confirmed(), customer_id: 7 }), null);
});

test("a document without the OrderConfirmed message is refused, saying what is missing", () => {
  assert.throws(
    () => contractFrom(documentWith({ Placed: { name: "orders.OrderPlaced", payload: {} } }), { eventType: EVENT, source: "doc.json" }),
    (error) => error instanceof ContractError && /doc\.json has no message named "orders\.OrderConfirmed"/.test(error.message),
  );
});

test("a message without a payload schema is refused", () => {
  assert.throws(() => contractFrom(documentWith({ Confirmed: { name: EVENT } }), { eventType: EVENT }), /has no payload schema/);
});

test("a payload referring to a schema the document lacks is refused", () => {
  const doc = documentWith({ Confirmed: { name: EVENT, payload: { $ref: "#/components/schemas/OrderConfirmed" } } }, { OrderConfirmed: orderConfirmed });
  assert.throws(() => contractFrom(doc, { eventType: EVENT }), (error) => error instanceof ContractError && /cannot be used/.test(error.message));
});

test("a missing document is refused, naming the file and ASYNCAPI_FILE", () => {
  assert.throws(() => loadContract("/nonexistent/asyncapi.json", { eventType: EVENT }), /\/nonexistent\/asyncapi\.json \(ENOENT\).*ASYNCAPI_FILE/);
});
