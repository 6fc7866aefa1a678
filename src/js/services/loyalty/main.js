#!/usr/bin/env node
// The loyalty service: consumes orders.OrderConfirmed from orders.events in the consumer group
// `loyalty`, validated against the published AsyncAPI document, and gives each customer one point
// per whole currency unit of their confirmed orders, exactly once per event. `node main.js` runs it
// until SIGTERM or SIGINT: then it stops reading, finishes the batch at hand, deregisters and exits 0.

import { createRequire } from "node:module";
import process from "node:process";
import Redis from "ioredis";
import { ContractError, loadContract } from "./lib/contract.js";
import { LoyaltyConsumer } from "./lib/consumer.js";
import { Heartbeat } from "./lib/discovery.js";
import { createServer } from "./lib/http.js";
import { createLogger } from "./lib/log.js";
import { createMetrics } from "./lib/metrics.js";
import { SettingsError, loadSettings } from "./lib/settings.js";
import { pointsStore } from "./lib/store.js";

export const EVENT_TYPE = "orders.OrderConfirmed";
export const DEFAULT_STREAM = "orders.events"; // flotilla_contracts.events.ORDERS_EVENTS
export const GROUP = "loyalty";
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

const require = createRequire(import.meta.url);
const VERSION = require("./package.json").version;

function fail(message, code) {
  process.stderr.write(`loyalty: ${message}\n`);
  process.exit(code);
}

function redisClient(url, name, commandTimeout, log) {
  const client = new Redis(url, {
    connectionName: name,
    // A command fails after one reconnection attempt instead of queueing for long: the loops
    // back off themselves, and /readyz must say "unreachable" rather than hang.
    maxRetriesPerRequest: 1,
    commandTimeout,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  let down = false;
  client.on("error", (error) => {
    if (!down) log.warning(`redis connection ${name}: ${error.message}`);
    down = true;
  });
  client.on("ready", () => {
    if (down) log.info(`redis connection ${name} is back`);
    down = false;
  });
  return client;
}

async function main() {
  let settings;
  try {
    settings = loadSettings();
  } catch (error) {
    if (error instanceof SettingsError) fail(error.message, EXIT_USAGE);
    throw error;
  }
  const logger = createLogger({ service: settings.serviceName, level: settings.logLevel, json: settings.logJson });
  const log = logger.child("loyalty");
  // Last resorts. A rejected promise nobody handled is logged and the service goes on: Node 20
  // would exit, taking the HTTP face and the consumer down for one stray promise. The consumer
  // loop's own end is handled where it is started, so it never passes through here unnoticed. An
  // exception thrown up to the event loop leaves unknown state behind: logged, then exit 1.
  process.on("unhandledRejection", (reason) => log.error("unhandled promise rejection", {}, reason));
  process.on("uncaughtException", (error) => {
    log.error("uncaught exception, exiting", {}, error);
    process.exit(EXIT_FAILED);
  });
  let contract;
  try {
    contract = loadContract(settings.asyncapiFile, { eventType: EVENT_TYPE });
  } catch (error) {
    if (error instanceof ContractError) fail(`cannot start: ${error.message}`, EXIT_USAGE);
    throw error;
  }
  const stream = contract.stream ?? DEFAULT_STREAM;
  const metrics = createMetrics({ service: settings.serviceName, version: VERSION });
  const blockMs = 1000;
  // Two connections: the consumer's blocks in XREADGROUP, which would hold up everything else.
  const consumerClient = redisClient(settings.redisUrl, `${settings.serviceName}:${settings.instanceId}:consumer`, blockMs + 4000, log);
  const client = redisClient(settings.redisUrl, `${settings.serviceName}:${settings.instanceId}`, 2000, log);
  const consumer = new LoyaltyConsumer({
    client: consumerClient,
    store: pointsStore(consumerClient),
    contract,
    stream,
    group: GROUP,
    consumer: settings.instanceId,
    options: {
      blockMs,
      claimIdleMs: settings.claimIdleMs,
      maxDeliveries: settings.maxDeliveries,
      processedRetentionMs: settings.processedRetentionMs,
    },
    metrics,
    log: logger.child("loyalty.consumer"),
  });
  const state = { accepting: true };
  let consumerEnded = null; // why the consumer loop ended while the service was not stopping
  const checks = {
    redis: async () => {
      await client.ping();
    },
    consumer: async () => {
      if (consumerEnded) throw new Error(consumerEnded);
      if (!consumer.running) throw new Error("the consumer loop is not running");
      if (consumer.lastError) throw new Error(consumer.lastError);
      if (!consumer.ready) throw new Error("the consumer has not finished its first pass yet");
    },
  };
  let heartbeat = null;
  if (settings.discoveryRegister) {
    heartbeat = new Heartbeat({
      client,
      instance: {
        service: settings.serviceName,
        instanceId: settings.instanceId,
        url: settings.publicUrl,
        version: VERSION,
        startedAt: Date.now() / 1000,
        // Only with DISCOVERY=redis do callers find it in the registry; otherwise it is there to be seen.
        routable: settings.discovery === "redis",
      },
      ttlSeconds: settings.discoveryTtlSeconds,
      log: logger.child("loyalty.discovery"),
    });
    // Callers find this instance through the registry only with DISCOVERY=redis: only then does
    // a lost registration make it unready.
    if (settings.discovery === "redis") {
      checks["discovery registration"] = async () => {
        const problem = heartbeat.problem();
        if (problem) throw new Error(problem);
      };
    }
  } else if (settings.discovery === "redis") {
    log.warning("DISCOVERY=redis with DISCOVERY_REGISTER=false: no other service can find this instance");
  }
  const readPoints = pointsStore(client);
  const info = {
    service: settings.serviceName,
    version: VERSION,
    git_revision: process.env.GIT_REVISION || "unknown",
    database: "redis",
    contract: { file: settings.asyncapiFile, event: EVENT_TYPE, stream, group: GROUP },
    libs: Object.fromEntries(["ioredis", "ajv", "ajv-formats"].map((name) => [name, require(`${name}/package.json`).version])),
    runtime: { node: process.versions.node },
  };
  const server = createServer({ checks, state, metrics, info, points: (c) => readPoints.points(c), log });
  await new Promise((resolve) => {
    server.once("error", (error) => fail(`cannot listen on ${settings.host}:${settings.port}: ${error.message}`, EXIT_FAILED));
    server.listen(settings.port, settings.host, resolve);
  });
  log.info(`listening on http://${settings.host}:${settings.port}; consuming ${EVENT_TYPE} from ${stream} as ${GROUP}/${settings.instanceId}`, {
    contract: settings.asyncapiFile,
  });
  let stopping = false;
  // `run` ends only when stopped; should it end otherwise, /readyz says why from then on (not ready:
  // nothing is consumed), as the Python services' readiness does for an ended consumer task.
  const consuming = consumer.run().then(
    () => {
      if (!stopping) consumerEnded = "the consumer loop ended without being stopped";
    },
    (error) => {
      consumerEnded = `the consumer loop crashed: ${error?.name ?? "Error"}: ${error?.message ?? error}`;
      log.error("the consumer loop crashed; the service is not ready from now on", {}, error);
    },
  );
  const registered = heartbeat ? heartbeat.run() : Promise.resolve();

  const shutdown = async (signal) => {
    if (stopping) return;
    stopping = true;
    state.accepting = false;
    log.info(`${signal}: stopping (the batch at hand is finished first)`);
    const force = setTimeout(() => {
      log.error(`not stopped within ${settings.shutdownTimeoutSeconds}s, exiting`);
      process.exit(EXIT_FAILED);
    }, settings.shutdownTimeoutSeconds * 1000);
    force.unref();
    consumer.stop();
    await consuming;
    heartbeat?.stop();
    await registered; // deregistered: callers stop choosing this instance
    await new Promise((resolve) => {
      server.close(resolve);
      server.closeAllConnections();
    });
    await Promise.allSettled([consumerClient.quit(), client.quit()]);
    log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((error) => {
  process.stderr.write(`loyalty: failed: ${error.stack ?? error}\n`);
  process.exit(EXIT_FAILED);
});
