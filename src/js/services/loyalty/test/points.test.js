import assert from "node:assert/strict";
import { test } from "node:test";
import { pointsFor } from "../lib/points.js";

test("an order earns one point per whole currency unit, rounded down", () => {
  assert.equal(pointsFor({ amount: 1299, currency: "EUR" }), 12);
  assert.equal(pointsFor({ amount: 99, currency: "EUR" }), 0);
  assert.equal(pointsFor({ amount: 0, currency: "EUR" }), 0);
});

test("currencies without or with three decimals count their own units", () => {
  assert.equal(pointsFor({ amount: 1299, currency: "JPY" }), 1299);
  assert.equal(pointsFor({ amount: 12999, currency: "KWD" }), 12);
});
