// The HTTP face: /healthz, /readyz (the truth: 503 while the consumer loop is not consuming or Redis
// does not answer), /metrics, /info, and GET /points/{customer}. Errors are RFC 9457 problem
// documents, as flotilla_kit.problems writes them.

import http from "node:http";

const PROBLEM_TYPE_BASE = "https://flotilla.dev/problems/";
const CHECK_TIMEOUT_MS = 2000; // a check that has not answered by then has failed: /readyz answers fast

function send(response, status, body, contentType = "application/json") {
  const data = typeof body === "string" ? body : JSON.stringify(body);
  response.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(data) });
  response.end(data);
}

function problem(response, status, path, detail, extra = {}) {
  const title = http.STATUS_CODES[status] ?? "Error";
  const slug = extra.typeName ?? title.toLowerCase().replaceAll(" ", "-").replaceAll("'", "");
  const body = { type: PROBLEM_TYPE_BASE + slug, title, status, detail, instance: path };
  if (extra.errors) body.errors = extra.errors;
  send(response, status, body, "application/problem+json");
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
 * The server (not yet listening). `checks`: name -> async function that throws when not ready;
 * `state.accepting` false once shutting down; `points(customer)` reads a customer's points.
 */
export function createServer({ checks, state, metrics, info, points, log }) {
  return http.createServer(async (request, response) => {
    const url = new URL(request.url, "http://localhost");
    const path = url.pathname;
    try {
      if (request.method !== "GET" && request.method !== "HEAD") {
        response.setHeader("allow", "GET, HEAD");
        return problem(response, 405, path, `${request.method} is not allowed here`);
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
          return problem(response, 503, path, failed.map(([name, result]) => `${name}: ${result}`).join("; "), {
            typeName: "not-ready",
            errors: Object.entries(results).map(([check, result]) => ({ check, result })),
          });
        }
        return send(response, 200, { status: "ready", checks: results });
      }
      if (path === "/metrics") return send(response, 200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
      if (path === "/info") return send(response, 200, info);
      const match = /^\/points\/([^/]+)$/.exec(path);
      if (match) {
        let customer;
        try {
          customer = decodeURIComponent(match[1]);
        } catch {
          return problem(response, 400, path, "the customer id is not valid percent-encoding");
        }
        return send(response, 200, { customer_id: customer, points: await points(customer) });
      }
      return problem(response, 404, path, `no resource at ${path}`);
    } catch (error) {
      log.error(`request failed: ${request.method} ${path}`, {}, error);
      if (!response.headersSent) problem(response, 503, path, `the points store did not answer: ${error.message}`);
    }
  });
}
