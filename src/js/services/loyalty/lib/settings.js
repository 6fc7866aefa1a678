// Settings from environment variables, named as the Python services name theirs
// (flotilla_kit/settings.py): every bad value is reported at once, each naming its variable.

import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
// src/js/services/loyalty/lib -> the repository root, where docs/asyncapi.json is published.
export const DEFAULT_ASYNCAPI_FILE = path.resolve(here, "..", "..", "..", "..", "..", "docs", "asyncapi.json");

export class SettingsError extends Error {
  constructor(problems) {
    super("invalid settings:\n" + problems.map((p) => `  - ${p}`).join("\n"));
    this.problems = problems;
  }
}

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off"]);

function integer(min, max) {
  return (raw) => {
    if (!/^\s*-?\d+\s*$/.test(raw)) throw new Error("Expected an integer");
    const value = Number(raw);
    if (value < min || value > max) throw new Error(`Expected an integer from ${min} to ${max}`);
    return value;
  };
}

function positiveNumber(raw) {
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value)) throw new Error("Expected a number");
  if (value <= 0) throw new Error("Expected a number > 0");
  return value;
}

function boolean(raw) {
  const lowered = raw.trim().toLowerCase();
  if (TRUE.has(lowered)) return true;
  if (FALSE.has(lowered)) return false;
  throw new Error("Expected a boolean (true/false, 1/0, yes/no, on/off)");
}

function oneOf(...allowed) {
  return (raw) => {
    if (!allowed.includes(raw)) throw new Error(`Expected one of: ${allowed.join(", ")}`);
    return raw;
  };
}

function redisUrl(raw) {
  if (!/^rediss?:\/\/\S+$/.test(raw)) throw new Error("Expected a redis:// or rediss:// URL");
  return raw;
}

// Registered in discovery: the gateway calls it, so it must be a URL the gateway can call.
function httpUrl(raw) {
  // The WHATWG parser forgives much ("http:/host", spaces); the registry entry must be the URL as written.
  if (!/^https?:\/\/[^\s/?#]+(\/\S*)?$/i.test(raw) || !URL.canParse(raw)) throw new Error("Expected an http:// or https:// URL");
  return raw;
}

const text = (raw) => raw;

// The host others reach this instance at: an IP address (no IPv6 zone: it names an interface of
// this host) or an RFC 1123 host name; as flotilla_kit.discovery checks ADVERTISE_HOST.
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
function advertisedHost(raw) {
  if ((net.isIP(raw) && !raw.includes("%")) || HOST_NAME.test(raw)) return raw;
  throw new Error("Expected a host name or an IP address (no port, no brackets, no IPv6 zone)");
}

// variable -> [default, parser]; the defaults are the Python services' where they have the setting.
const FIELDS = {
  SERVICE_NAME: ["loyalty", text],
  HOST: ["127.0.0.1", text],
  PORT: [8007, integer(1, 65535)],
  REDIS_URL: ["", redisUrl],
  INSTANCE_ID: ["", text],
  DISCOVERY: ["none", oneOf("none", "redis", "static", "dns")],
  // Registered in the Redis registry whatever DISCOVERY is (operators and the console see every
  // instance); only DISCOVERY=redis makes the registration a readiness check, as in Python.
  DISCOVERY_REGISTER: [true, boolean],
  PUBLIC_URL: ["", httpUrl],
  ADVERTISE_HOST: ["", advertisedHost],
  DISCOVERY_TTL_SECONDS: [10, positiveNumber],
  LOG_LEVEL: ["INFO", oneOf("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")],
  LOG_JSON: [true, boolean],
  SHUTDOWN_TIMEOUT_SECONDS: [15, positiveNumber],
  STREAM_CLAIM_IDLE_SECONDS: [30, positiveNumber],
  // This service's own: where the published contract is, and how long processed event ids are
  // kept (longer than any redelivery or dead-letter replay can come: the stream keeps 168 h).
  ASYNCAPI_FILE: [DEFAULT_ASYNCAPI_FILE, text],
  PROCESSED_RETENTION_HOURS: [720, positiveNumber],
  STREAM_MAX_DELIVERIES: [5, integer(1, 1000)],
};

/** Settings from `environ`; throws SettingsError naming every unusable variable. */
export function loadSettings(environ = process.env) {
  const values = {};
  const problems = [];
  for (const [variable, [fallback, parse]] of Object.entries(FIELDS)) {
    const raw = environ[variable];
    if (raw === undefined) {
      values[variable] = fallback;
      continue;
    }
    try {
      // Empty means "unset" where the default is empty (REDIS_URL, INSTANCE_ID, PUBLIC_URL), as in Python.
      values[variable] = raw === "" && fallback === "" ? "" : parse(raw);
    } catch (error) {
      problems.push(`${variable}=${JSON.stringify(raw)}: ${error.message}`);
    }
  }
  if (!problems.length && !values.REDIS_URL) {
    problems.push('REDIS_URL="": the loyalty service keeps its points in Redis and reads its events there; set it');
  }
  if (problems.length) throw new SettingsError(problems);
  const instanceId = values.INSTANCE_ID || `${os.hostname()}-${values.PORT}`;
  const host = values.ADVERTISE_HOST || (["0.0.0.0", "::", ""].includes(values.HOST) ? os.hostname() : values.HOST);
  const publicHost = host.includes(":") ? `[${host}]` : host; // an IPv6 address, as URLs write it
  return {
    serviceName: values.SERVICE_NAME,
    host: values.HOST,
    port: values.PORT,
    redisUrl: values.REDIS_URL,
    instanceId,
    discovery: values.DISCOVERY,
    discoveryRegister: values.DISCOVERY_REGISTER,
    publicUrl: (values.PUBLIC_URL || `http://${publicHost}:${values.PORT}`).replace(/\/+$/, ""),
    discoveryTtlSeconds: values.DISCOVERY_TTL_SECONDS,
    logLevel: values.LOG_LEVEL,
    logJson: values.LOG_JSON,
    shutdownTimeoutSeconds: values.SHUTDOWN_TIMEOUT_SECONDS,
    claimIdleMs: Math.round(values.STREAM_CLAIM_IDLE_SECONDS * 1000),
    asyncapiFile: path.resolve(values.ASYNCAPI_FILE),
    processedRetentionMs: Math.round(values.PROCESSED_RETENTION_HOURS * 3_600_000),
    maxDeliveries: values.STREAM_MAX_DELIVERIES,
  };
}
