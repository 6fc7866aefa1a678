// The envelope every event travels in, as flotilla_streams.envelope writes it: a stream entry has
// one field, `envelope`, holding the JSON envelope; the event's payload is the envelope's `payload`
// (a JSON object whose `type` is the event type tag, e.g. "orders.OrderConfirmed").

export const ENVELOPE_FIELD = "envelope";

/** An entry that is not a valid envelope; its message is the dead letter's reason (after "undecodable: "). */
export class UndecodableEntry extends Error {}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The fields of a stream entry as Redis returns them ([name, value, name, value, ...], Buffers
 * or strings) as a Map of name (string) to value (Buffer or string), in their order.
 */
export function entryFields(flat) {
  const fields = new Map();
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(String(flat[i]), flat[i + 1]);
  return fields;
}

/**
 * The envelope of a stream entry's fields, decoded from JSON; throws UndecodableEntry when the
 * entry has no envelope field, it is not UTF-8 JSON, or lacks what every envelope has (id, type,
 * version). Fields beyond those are kept as they are: a newer producer may add some.
 */
export function decodeEnvelope(fields) {
  const data = fields.get(ENVELOPE_FIELD);
  if (data === undefined) {
    const names = [...fields.keys()].map((name) => JSON.stringify(name)).sort();
    throw new UndecodableEntry(`entry has no "${ENVELOPE_FIELD}" field (fields: [${names.join(", ")}])`);
  }
  let envelope;
  try {
    envelope = JSON.parse(typeof data === "string" ? data : utf8.decode(data));
  } catch (error) {
    throw new UndecodableEntry(`not a valid envelope: ${error.message}`);
  }
  if (envelope === null || typeof envelope !== "object" || Array.isArray(envelope)) {
    throw new UndecodableEntry(`not a valid envelope: expected a JSON object, got ${describe(envelope)}`);
  }
  for (const name of ["id", "type"]) {
    if (typeof envelope[name] !== "string" || envelope[name] === "") {
      throw new UndecodableEntry(`not a valid envelope: "${name}" must be a non-empty string, got ${describe(envelope[name])}`);
    }
  }
  if (!Number.isInteger(envelope.version)) {
    throw new UndecodableEntry(`not a valid envelope: "version" must be an integer, got ${describe(envelope.version)}`);
  }
  if (!("payload" in envelope)) envelope.payload = null; // msgspec's default for a missing payload
  return envelope;
}

/** `value` shown in a reason, at most 80 characters; never throws (the reason is all a dead letter has). */
export function describe(value) {
  if (value === undefined) return "nothing";
  let text;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    // Nesting deeper than the stack (JSON.parse itself has no depth limit) or a BigInt.
    const kind = Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : `a ${typeof value}`;
    return `${kind} that cannot be shown (${error.name}: ${error.message})`;
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
