// The rule: one loyalty point per whole unit of the order's total in its currency. Amounts are
// integers in the currency's minor unit (flotilla_contracts.catalog.Money: cents for EUR).

// ISO 4217 currencies whose minor unit is not a hundredth of the major one; the rest have two decimals.
const ZERO_DECIMALS = new Set("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(" "));
const THREE_DECIMALS = new Set("BHD IQD JOD KWD LYD OMR TND".split(" "));

/** Minor units per major unit of `currency` (100 for EUR, 1 for JPY, 1000 for KWD). */
export function minorUnitsPerUnit(currency) {
  if (ZERO_DECIMALS.has(currency)) return 1;
  if (THREE_DECIMALS.has(currency)) return 1000;
  return 100;
}

/** Points an order of `total` ({amount, currency}) earns: whole currency units, rounded down. */
export function pointsFor(total) {
  return Math.floor(total.amount / minorUnitsPerUnit(total.currency));
}
