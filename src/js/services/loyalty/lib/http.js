// The HTTP face: /healthz, /readyz (the truth: 503 while the consumer loop is not consuming or Redis
// does not answer), /metrics, /info, and GET /points/{customer} for that customer (or an admin).
// Errors are RFC 9457 problem documents, as flotilla_kit.problems writes them, with the request id.
// No request can end the process: a target that is not a path answers 400, and any error in a
// handler answers 500 (logged) instead of escaping as an unhandled rejection.

import { randomBytes } from "node:crypto";
import http from "node:http";

const PROBLEM_TYPE_BASE = "https://flotilla.dev/problems/";
const CHECK_TIMEOUT_MS = 2000; // a check that has not answered by then has failed: /readyz answers fast
const RETRY_AFTER_SECONDS = 1; // on 503s, as flotilla_kit answers for an unreachable database

// The caller's identity as the gateway forwards it after verifying the token (flotilla_kit.identity).
export const CALLER_ID_HEADER = "x-caller-id";
export const CALLER_ROLES_HEADER = "x-caller-roles"; // comma-separated
export const ADMIN_ROLE = "admin";
// RFC 3986 absolute-path: "/" segment, repeated; a segment's characters are pchar.
const PATH = /^(?:\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)+$/;
const REQUEST_ID_HEADER = "x-request-id";
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/; // flotilla_http.context: a caller's id must be a sane token
// A customer id: 1 to 255 visible ASCII characters (no spaces, controls, NUL or non-ASCII).
const CUSTOMER_ID = /^[\x21-\x7e]{1,255}$/;
const MAX_CUSTOMER_SEGMENT = 255 * 3; // every character percent-encoded

/** An answer other than success, raised by a handler and written as a problem document. */
export class Problem extends Error {
  constructor(status, detail, { typeName, errors, headers } = {}) {
    super(detail);
    this.status = status;
    this.typeName = typeName;
    this.errors = errors;
    this.headers = headers;
  }
}

function send(response, status, body, contentType = "application/json", headers = {}) {
  const data = typeof body === "string" ? body : JSON.stringify(body);
  response.writeHead(status, { ...headers, "content-type": contentType, "content-length": Buffer.byteLength(data) });
  response.end(data);
}

function sendProblem(response, context, problem) {
  const { status } = problem;
  const title = http.STATUS_CODES[status] ?? "Error";
  const slug = problem.typeName ?? title.toLowerCase().replaceAll(" ", "-").replaceAll("'", "");
  const body = { type: PROBLEM_TYPE_BASE + slug, title, status, detail: problem.message, instance: context.path };
  body.request_id = context.requestId;
  if (problem.errors) body.errors = problem.errors;
  send(response, status, body, "application/problem+json", problem.headers);
}

async function runCheck(check) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_TIMEOUT_MS / 1000}s`)), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([check(), timeout]);
    return "ok";
  } catch (error) {
    return `failed: ${error.message}`;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The path of a request target, without its query; throws Problem (400) for a target that is not
 * an RFC 3986 absolute path: absolute-form ("http://host/..."), authority-form, "*", or a path with
 * characters a path cannot have ("//["). Split by hand, not with `new URL`, which throws on such
 * targets (an unhandled rejection once ended the process) and would need a base to trust.
 */
export function targetPath(target) {
  const path = String(target ?? "").split("?", 1)[0];
  if (!PATH.test(path)) {
    throw new Problem(400, "the request target must be a path: /, then segments of RFC 3986 path characters", { typeName: "bad-request" });
  }
  return path;
}

/** The caller's request id when it is a sane token (it ends up in logs), else a fresh one. */
export function requestIdOf(request) {
  const given = request.headers[REQUEST_ID_HEADER];
  return typeof given === "string" && REQUEST_ID.test(given) ? given : randomBytes(16).toString("hex");
}

/**
 * Whose points a request for `segment` (the raw path segment) may read: the decoded customer id.
 * Throws Problem: 401 without a caller, 400 for an id that is not 1-255 visible ASCII characters,
 * 403 when a caller without the admin role asks for another customer (flotilla_kit.identity's
 * visible_customer).
 */
export function visibleCustomer(segment, headers) {
  const caller = headers[CALLER_ID_HEADER];
  if (typeof caller !== "string" || caller === "") {
    throw new Problem(401, "No authenticated caller (the gateway sets one from a valid token).", { typeName: "unauthorized" });
  }
  let customer = null;
  if (segment.length <= MAX_CUSTOMER_SEGMENT) {
    try {
      customer = decodeURIComponent(segment);
    } catch {
      throw new Problem(400, "the customer id is not valid percent-encoding", { typeName: "bad-request" });
    }
  }
  if (customer === null || !CUSTOMER_ID.test(customer)) {
    throw new Problem(400, "the customer id must be 1 to 255 visible ASCII characters", { typeName: "bad-request" });
  }
  const roles = String(headers[CALLER_ROLES_HEADER] ?? "").split(",").map((role) => role.trim());
  if (!roles.includes(ADMIN_ROLE) && customer !== caller) {
    throw new Problem(403, "a customer can see only their own points", { typeName: "forbidden" });
  }
  return customer;
}

/**
 * The server (not yet listening). `checks`: name -> async function that throws when not ready;
 * `state.accepting` false once shutting down; `points(customer)` reads a customer's points.
 */
export function createServer({ checks, state, metrics, info, points, log }) {
  const routes = { checks, state, metrics, info, points, log };
  return http.createServer((request, response) => {
    const context = { path: String(request.url ?? ""), requestId: requestIdOf(request) };
    response.setHeader(REQUEST_ID_HEADER, context.requestId);
    handle(request, response, context, routes).catch((error) => {
      if (error instanceof Problem) {
        if (!response.headersSent) sendProblem(response, context, error);
        return;
      }
      // The body never carries internals; the log line (with the same request id) does.
      log.error(`request failed: ${request.method} ${context.path}`, { request_id: context.requestId }, error);
      if (!response.headersSent) {
        sendProblem(response, context, new Problem(500, "An unexpected error occurred.", { typeName: "internal-error" }));
      } else {
        response.destroy();
      }
    }).catch((error) => {
      // Writing the answer failed too (the socket is gone): nothing left to tell the caller.
      log.error(`answering failed: ${request.method} ${context.path}`, { request_id: context.requestId }, error);
      response.destroy();
    });
  });
}

async function handle(request, response, context, { checks, state, metrics, info, points, log }) {
  const path = targetPath(request.url);
  context.path = path;
  if (request.method !== "GET" && request.method !== "HEAD") {
    throw new Problem(405, `${request.method} is not allowed here`, { headers: { allow: "GET, HEAD" } });
  }
  if (path === "/healthz") return send(response, 200, { status: "ok" });
  if (path === "/readyz") {
    const names = Object.keys(checks);
    const results = Object.fromEntries(
      await Promise.all(names.map(async (name) => [name, await runCheck(checks[name])])),
    );
    if (!state.accepting) results.lifecycle = "shutting down";
    const failed = Object.entries(results).filter(([, result]) => result !== "ok");
    if (failed.length) {
      throw new Problem(503, failed.map(([name, result]) => `${name}: ${result}`).join("; "), {
        typeName: "not-ready",
        errors: Object.entries(results).map(([check, result]) => ({ check, result })),
        headers: { "retry-after": String(RETRY_AFTER_SECONDS) },
      });
    }
    return send(response, 200, { status: "ready", checks: results });
  }
  if (path === "/metrics") return send(response, 200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
  if (path === "/info") return send(response, 200, info);
  const match = /^\/points\/([^/]+)$/.exec(path);
  if (match) {
    const customer = visibleCustomer(match[1], request.headers);
    let earned;
    try {
      earned = await points(customer);
    } catch (error) {
      log.warning(`the points store did not answer: ${error.message}`, { request_id: context.requestId });
      throw new Problem(503, `the points store did not answer: ${error.message}`, {
        typeName: "dependency-unavailable",
        headers: { "retry-after": String(RETRY_AFTER_SECONDS) },
      });
    }
    return send(response, 200, { customer_id: customer, points: earned });
  }
  throw new Problem(404, `no resource at ${path}`);
}
