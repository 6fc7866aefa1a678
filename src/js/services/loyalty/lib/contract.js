// The published contract: the AsyncAPI document (docs/asyncapi.json). The service validates what it
// consumes against it, not against a copy of its own: a message's `name` is its event type tag,
// `x-stream` its stream, `payload` its JSON Schema, whose $refs point into components.schemas;
// components.schemas.Envelope describes the envelope every event travels in.

import fs from "node:fs";
import Ajv from "ajv";
import Ajv2019 from "ajv/dist/2019.js";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

/** The document is missing, unreadable, or lacks what this service needs: it must not start. */
export class ContractError extends Error {}

const ROOT_ID = "urn:flotilla:asyncapi";

/**
 * The contract of `eventType` from the AsyncAPI document at `file`: its stream and validators of
 * its payload and of the envelope. Throws ContractError saying what is missing.
 */
export function loadContract(file, { eventType }) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    throw new ContractError(
      `cannot read the AsyncAPI document ${file} (${error.code ?? error.message}); ` +
        "publish it (docs/asyncapi.json) or point ASYNCAPI_FILE at it",
    );
  }
  let document;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new ContractError(`the AsyncAPI document ${file} is not JSON: ${error.message}`);
  }
  return contractFrom(document, { eventType, source: file });
}

/** As loadContract, from a parsed document (`source` names it in errors). */
export function contractFrom(document, { eventType, source = "the AsyncAPI document" }) {
  const messages = document?.components?.messages;
  if (!messages || typeof messages !== "object") {
    throw new ContractError(`${source} has no components.messages: it describes no event, so ${eventType} cannot be validated`);
  }
  const key = Object.keys(messages).find((name) => messages[name]?.name === eventType);
  if (key === undefined) {
    throw new ContractError(
      `${source} has no message named ${JSON.stringify(eventType)} (components.messages.*.name): ` +
        `without its schema the service cannot validate the events it consumes`,
    );
  }
  const message = messages[key];
  const payload = message.payload;
  if (!payload || typeof payload !== "object") {
    throw new ContractError(`${source}: components.messages.${key} (${eventType}) has no payload schema`);
  }
  // AsyncAPI 3 wraps a schema of another format in a Multi Format Schema Object.
  const wrapped = typeof payload.schemaFormat === "string" && payload.schema !== undefined;
  const schemaFormat = wrapped ? payload.schemaFormat : String(message.schemaFormat ?? "");
  const ajv = validatorFor(schemaFormat);
  // Only the parts that are schemas go to Ajv, at the same JSON pointers as in the document, so
  // that the payload's "#/components/schemas/<Name>" references resolve as they are written.
  const root = {
    $id: ROOT_ID,
    components: { schemas: document.components.schemas ?? {}, messages: { [key]: { payload } } },
  };
  ajv.addSchema(root);
  const pointer = `${ROOT_ID}#/components/messages/${escape(key)}/payload${wrapped ? "/schema" : ""}`;
  const validatePayload = compile(ajv, pointer, `the payload schema of ${eventType}`, source);
  const envelopeSchema = document.components.schemas?.Envelope;
  const validateEnvelope = envelopeSchema
    ? compile(ajv, `${ROOT_ID}#/components/schemas/Envelope`, "the Envelope schema", source)
    : null;
  return {
    eventType,
    messageKey: key,
    stream: typeof message["x-stream"] === "string" ? message["x-stream"] : null,
    source,
    /** null when `payload` fits the published schema, else why not (every violation). */
    checkPayload: (value) => (validatePayload(value) ? null : describeErrors(validatePayload.errors)),
    /** null when `envelope` fits the published Envelope schema (or there is none), else why not. */
    checkEnvelope: (value) =>
      validateEnvelope === null || validateEnvelope(value) ? null : describeErrors(validateEnvelope.errors),
  };
}

function validatorFor(schemaFormat) {
  // The AsyncAPI Schema format (the default) is a superset of JSON Schema draft 07. Extensions
  // (x-...) and keywords Ajv does not know are annotations here, not errors: strict mode off.
  const options = { strict: false, allErrors: true, validateFormats: true };
  const Class = schemaFormat.includes("2020-12") ? Ajv2020 : schemaFormat.includes("2019-09") ? Ajv2019 : Ajv;
  const ajv = new (Class.default ?? Class)(options);
  (addFormats.default ?? addFormats)(ajv);
  return ajv;
}

function compile(ajv, ref, what, source) {
  try {
    return ajv.compile({ $ref: ref });
  } catch (error) {
    throw new ContractError(`${source}: ${what} cannot be used: ${error.message}`);
  }
}

function escape(key) {
  return encodeURIComponent(key.replaceAll("~", "~0").replaceAll("/", "~1"));
}

function describeErrors(errors) {
  return (errors ?? [])
    .map((e) => `${e.instancePath || "/"} ${e.message}${e.params?.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : ""}`)
    .join("; ");
}
