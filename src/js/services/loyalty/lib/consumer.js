// One member of the consumer group `loyalty` on the orders stream, with flotilla_streams.consumer's
// semantics (see its docstring):
//
// - on start, its own pending entries (delivered before a crash or restart) first, then new ones
//   with XREADGROUP COUNT/BLOCK;
// - entries of other event types are acked and ignored; an entry it cannot read (no envelope field,
//   not JSON, not an envelope, an unknown version, a payload that breaks the published schema, or
//   any error while deciding on it) goes to `<stream>.dlq` at once, with the reason, and the rest
//   of its batch goes on;
// - each batch's effects and acks are one Lua script (store.js): exactly-once effects by event id;
// - an entry whose effect failed stays pending and is claimed again after a backoff (XCLAIM counts
//   deliveries); after `maxDeliveries` it is dead-lettered with the last error;
// - entries pending longer than `claimIdleMs` at another consumer (presumed dead) are taken over
//   with XAUTOCLAIM;
// - NOGROUP (Redis lost the group) recreates the group; a Redis outage is ridden out with backoff;
//   anything unexpected restarts the loop after a backoff, with `lastError` saying why;
// - `stop()` lets the batch at hand finish (applied and acked); `run()` then returns.

import { ReplyError } from "ioredis";
import { deadLetter } from "./dlq.js";
import { UndecodableEntry, decodeEnvelope, entryFields } from "./envelope.js";
import { pointsFor } from "./points.js";

export const DEFAULT_OPTIONS = {
  batchSize: 100,
  blockMs: 1000, // also the longest a stop waits for an idle read
  maxDeliveries: 5,
  retryBackoffMs: 200, // first retry; doubles per delivery
  maxRetryBackoffMs: 30_000,
  claimIdleMs: 30_000,
  maintenanceIntervalMs: 250,
  purgeIntervalMs: 60_000,
  processedRetentionMs: 30 * 24 * 3_600_000,
  restartBackoffMs: 100,
  maxRestartBackoffMs: 30_000,
  startId: "0", // where a new group starts: "0" misses nothing already in the stream
};

const CONNECTION_ERROR = /Connection is closed|Command timed out|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|Stream isn't writeable|enableOfflineQueue|Reached the max retries|LOADING/;

/** A Redis outage rather than an answer: ridden out with backoff. */
export function isConnectionError(error) {
  if (error instanceof ReplyError) return /^LOADING/.test(error.message);
  return error?.name === "MaxRetriesPerRequestError" || CONNECTION_ERROR.test(String(error?.message ?? ""));
}

export class LoyaltyConsumer {
  constructor({ client, store, contract, stream, group, consumer, options = {}, metrics, log }) {
    this.client = client;
    this.store = store;
    this.contract = contract;
    this.stream = stream;
    this.group = group;
    this.consumer = consumer;
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.metrics = metrics;
    this.log = log;
    this.ready = false; // set once the first pass (own pending entries) is done
    this.running = false; // the loop is alive (false before run and after it returns)
    this.lastError = null; // why the consumer is not consuming right now; null while it does
    this._stopping = false;
    this._wakeUp = null;
    this._lastErrors = new Map(); // entry id -> the last failure of its effect
    this._restarts = 0;
    this._nextPurge = 0;
  }

  /** Ask the loop to stop after the batch at hand; `run` returns then. */
  stop() {
    this._stopping = true;
    this._wakeUp?.();
  }

  /** Consume until `stop`; never ends on an error (see the module's comment). */
  async run() {
    this.running = true;
    try {
      while (!this._stopping) {
        try {
          await this._consume();
        } catch (error) {
          this._restarts += 1;
          this.lastError = `stopped by ${error?.name ?? "Error"}: ${error?.message ?? error}; restarting`;
          const base = this.options.restartBackoffMs * 2 ** (this._restarts - 1);
          const delay = Math.min(base, this.options.maxRestartBackoffMs) * (0.5 + Math.random() / 2);
          this.log.error(`consumer stopped by an unexpected error, restarting in ${(delay / 1000).toFixed(2)}s`, { group: this.group }, error);
          this.metrics.restarts.inc({ group: this.group });
          await this._sleep(delay);
        }
      }
    } finally {
      this.running = false;
      this.ready = false;
    }
  }

  async _consume() {
    let failures = 0;
    let nextMaintenance = 0;
    let firstPass = true;
    let groupMissing = null;
    while (!this._stopping) {
      try {
        if (groupMissing !== null) {
          this.log.warning("consumer group missing", { group: this.group, error: groupMissing.message });
          if (await this._ensureGroup()) this._countRecreated();
          groupMissing = null;
        }
        if (firstPass) {
          const created = await this._ensureGroup();
          if (created && this._restarts) this._countRecreated();
          await this._retryOwnPending(true); // entries delivered to this consumer before a crash come first
          firstPass = false;
          this.ready = true;
        }
        if (Date.now() >= nextMaintenance) {
          await this._maintenance();
          nextMaintenance = Date.now() + this.options.maintenanceIntervalMs;
        }
        await this._readNew();
        failures = 0;
        this._restarts = 0;
        this.lastError = null;
      } catch (error) {
        if (error instanceof ReplyError && error.message.includes("NOGROUP")) {
          groupMissing = error;
        } else if (isConnectionError(error)) {
          failures += 1;
          this.lastError = `${error.name}: ${error.message}`;
          const delay = Math.min(5000, 50 * 2 ** failures) * (0.5 + Math.random() / 2);
          this.log.warning(`redis unavailable, consumer retries in ${(delay / 1000).toFixed(2)}s: ${error.message}`, { group: this.group });
          await this._sleep(delay);
        } else {
          throw error;
        }
      }
    }
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this._wakeUp = done;
    }).finally(() => {
      this._wakeUp = null;
    });
  }

  /** Creates the group if missing (BUSYGROUP is success); true when it was created now. */
  async _ensureGroup() {
    try {
      await this.client.xgroup("CREATE", this.stream, this.group, this.options.startId, "MKSTREAM");
      return true;
    } catch (error) {
      if (error instanceof ReplyError && error.message.includes("BUSYGROUP")) return false;
      throw error;
    }
  }

  _countRecreated() {
    this.log.warning("consumer group recreated", { stream: this.stream, group: this.group });
    this.metrics.counter("group_recreated").inc(this._labels());
    // Counted in Redis too, where streams-admin and the console read it (flotilla_streams.group_counters).
    const key = `flotilla:streams:group:${this.stream}:${this.group}`;
    return this.client.multi().hincrby(key, "recreated", 1).hset(key, "last_recreated_ms", Date.now()).exec();
  }

  _labels() {
    return { stream: this.stream, group: this.group };
  }

  // reading

  async _readNew() {
    const response = await this.client.xreadgroupBuffer(
      "GROUP", this.group, this.consumer,
      "COUNT", this.options.batchSize,
      "BLOCK", this.options.blockMs,
      "STREAMS", this.stream, ">",
    );
    for (const [, entries] of response ?? []) await this._process(entries, new Map());
  }

  async _maintenance() {
    await this._retryOwnPending(false);
    await this._reclaimFromDeadConsumers();
    if (Date.now() >= this._nextPurge) {
      this._nextPurge = Date.now() + this.options.purgeIntervalMs;
      const purged = await this.store.purgeProcessed(this.options.processedRetentionMs);
      if (purged) this.log.info(`forgot ${purged} processed event ids past their retention`);
    }
  }

  /** Claim this consumer's own pending entries whose backoff has passed, and handle them again. */
  async _retryOwnPending(force) {
    let start = "-";
    for (;;) {
      const args = force ? [] : ["IDLE", this.options.retryBackoffMs];
      const pending = await this.client.xpending(this.stream, this.group, ...args, start, "+", this.options.batchSize, this.consumer);
      const due = pending.filter(([, , idle, delivered]) => force || idle >= this._backoffMs(delivered));
      if (!due.length) break;
      const ids = due.map(([id]) => id);
      const claimed = (await this.client.xclaimBuffer(this.stream, this.group, this.consumer, 0, ...ids)).filter(
        (entry) => entry && entry[1] !== null,
      );
      const deliveries = new Map(due.map(([id, , , delivered]) => [id, delivered + 1]));
      // Trimmed away while pending: Redis 6.2 claims them as nil entries, without their ids.
      const claimedIds = new Set(claimed.map(([id]) => String(id)));
      const gone = ids.filter((id) => !claimedIds.has(id));
      if (gone.length) await this.client.xack(this.stream, this.group, ...gone);
      this.metrics.counter("retried").inc(this._labels(), claimed.length);
      await this._process(claimed, deliveries);
      // A forced pass walks the whole list once; entries that fail again wait for their backoff.
      if (!force || pending.length < this.options.batchSize) break;
      start = "(" + pending[pending.length - 1][0];
    }
  }

  async _reclaimFromDeadConsumers() {
    const result = await this.client.xautoclaimBuffer(
      this.stream, this.group, this.consumer, this.options.claimIdleMs, "0-0", "COUNT", this.options.batchSize,
    );
    const deleted = (result[2] ?? []).map(String);
    // Redis 7: trimmed away while pending, and off the pending list: nothing left to handle.
    if (deleted.length) await this.client.xack(this.stream, this.group, ...deleted);
    // Redis 6.2 returns an entry trimmed away while pending as a nil entry without its id, and
    // leaves it pending, now at this consumer: its own retry pass acks it.
    const claimed = (result[1] ?? []).filter((entry) => entry && entry[1] !== null);
    if (!claimed.length) return;
    this.log.info(`reclaimed ${claimed.length} entries from dead consumers`, this._labels());
    this.metrics.counter("reclaimed").inc(this._labels(), claimed.length);
    await this.client.hincrby(`flotilla:streams:group:${this.stream}:${this.group}`, "reclaimed", claimed.length);
    await this._process(claimed, await this._deliveryCounts(claimed.map(([id]) => String(id))));
  }

  /** How often each of `ids` (pending at this consumer) has been delivered, from XPENDING. */
  async _deliveryCounts(ids) {
    const wanted = new Set(ids);
    // Ordered as Redis orders ids, by number: as text, "5-10" < "5-9".
    const ordered = [...ids].sort(compareIds);
    let start = ordered[0];
    const end = ordered[ordered.length - 1];
    const counts = new Map();
    const pageSize = ids.length + 10; // own entries waiting for a retry may lie in the same range
    while (wanted.size) {
      const page = await this.client.xpending(this.stream, this.group, start, end, pageSize, this.consumer);
      for (const [id, , , delivered] of page) {
        if (wanted.delete(id)) counts.set(id, delivered);
      }
      if (page.length < pageSize) break;
      start = "(" + page[page.length - 1][0];
    }
    return counts;
  }

  _backoffMs(deliveries) {
    return Math.min(this.options.retryBackoffMs * 2 ** Math.max(0, deliveries - 1), this.options.maxRetryBackoffMs);
  }

  // handling

  /** Handle entries ([id, [name, value, ...]] with Buffers); `deliveries`: id -> delivery count (default 1). */
  async _process(entries, deliveries) {
    const labels = this._labels();
    const effects = []; // {entryId, eventId, customerId, points}, or only {entryId} to ack
    const dead = [];
    for (const [rawId, flat] of entries) {
      const entryId = String(rawId);
      if (flat === null) {
        effects.push({ entryId }); // deleted from the stream while pending
        continue;
      }
      const fields = entryFields(flat);
      const count = deliveries.get(entryId) ?? 1;
      if (count > this.options.maxDeliveries) {
        const reason = this._lastErrors.get(entryId) ?? "no error recorded (failed in an earlier process)";
        this._lastErrors.delete(entryId);
        dead.push({ entryId, fields, reason: `gave up after ${count - 1} deliveries: ${reason}`, deliveries: count - 1 });
        continue;
      }
      const outcome = this._decideSafely(entryId, fields);
      if (outcome.ignore) {
        effects.push({ entryId });
        this.metrics.counter("ignored").inc(labels);
      } else if (outcome.reason) {
        dead.push({ entryId, fields, reason: outcome.reason, deliveries: count });
      } else {
        effects.push({ entryId, ...outcome.effect });
      }
    }
    this.metrics.counter("delivered").inc(labels, entries.length);
    if (dead.length) {
      await deadLetter(this.client, this.stream, this.group, this.consumer, dead);
      this.log.error(`dead-lettered ${dead.length} entries`, { stream: this.stream, reasons: dead.slice(0, 5).map((d) => d.reason) });
      this.metrics.counter("dead_lettered").inc(labels, dead.length);
    }
    if (effects.length) await this._apply(effects);
  }

  /**
   * `_decide`, where an error is this entry's alone: deciding reads nothing but the entry, so an
   * error (a RangeError from nesting deeper than the stack, a validator's bug) would recur on every
   * delivery. It dead-letters the entry at once; thrown, it would fail the whole batch and restart
   * the loop until the entry gave up with no error recorded.
   */
  _decideSafely(entryId, fields) {
    try {
      return this._decide(fields);
    } catch (error) {
      this.log.error("deciding on an entry failed; it is dead-lettered", { stream: this.stream, entry_id: entryId }, error);
      return { reason: `undecodable: ${errorText(error)}` };
    }
  }

  /** What to do with one entry: {ignore}, {reason} (dead-letter it), or {effect}. */
  _decide(fields) {
    let envelope;
    try {
      envelope = decodeEnvelope(fields);
    } catch (error) {
      if (error instanceof UndecodableEntry) return { reason: `undecodable: ${error.message}` };
      throw error;
    }
    if (envelope.type !== this.contract.eventType) return { ignore: true }; // not an event this group handles
    // Versions start at 1 and only grow with compatible changes (a breaking change is a new event
    // type, and `release check` holds every event FULL compatible), so a newer version than the
    // published one is read with the published schema; one below 1 was never published.
    if (envelope.version < 1) {
      return { reason: `unknown version: ${envelope.type} ${envelope.id} has version ${envelope.version}; versions start at 1` };
    }
    const envelopeProblem = this.contract.checkEnvelope(envelope);
    if (envelopeProblem) {
      return { reason: `undecodable: not a valid envelope (published Envelope schema): ${envelopeProblem}` };
    }
    const payloadProblem = this.contract.checkPayload(envelope.payload);
    if (payloadProblem) {
      return {
        reason: `undecodable: payload of ${envelope.type} ${envelope.id} does not fit its published schema: ${payloadProblem}`,
      };
    }
    const payload = envelope.payload;
    if (payload?.type !== envelope.type) {
      return { reason: `undecodable: envelope says ${envelope.type} but the payload is ${payload.type}` };
    }
    const { customer_id: customerId, total } = payload;
    // The published schema requires both; checked here too, as the rule cannot run without them.
    if (typeof customerId !== "string" || !Number.isSafeInteger(total?.amount) || typeof total?.currency !== "string") {
      return { reason: `undecodable: ${envelope.type} ${envelope.id} lacks a customer_id or a total with amount and currency` };
    }
    return { effect: { eventId: envelope.id, customerId, points: pointsFor(total) } };
  }

  async _apply(effects) {
    try {
      this._count(effects, await this.store.applyAndAck(this.stream, this.group, effects));
    } catch (error) {
      if (!(error instanceof ReplyError) || error.message.includes("NOGROUP") || isConnectionError(error)) throw error;
      // Redis refused the script (a WRONGTYPE key, out of memory): apply one by one, so that only
      // the entries that fail stay pending, for a retry after backoff and then the DLQ.
      if (effects.length === 1) return this._recordFailure(effects[0], error);
      for (const effect of effects) await this._apply([effect]);
    }
  }

  _count(effects, results) {
    const labels = this._labels();
    let applied = 0;
    effects.forEach((effect, i) => {
      this._lastErrors.delete(effect.entryId);
      if (results[i] === "applied") {
        applied += 1;
        this.metrics.counter("handled").inc(labels);
        this.metrics.pointsAwarded.inc({}, effect.points);
      } else if (results[i] === "duplicate") {
        this.metrics.counter("duplicates").inc(labels);
      }
    });
    this.metrics.counter("acked").inc(labels, effects.length);
    if (applied) this.log.debug(`applied ${applied} orders`, labels);
  }

  _recordFailure(effect, error) {
    this._lastErrors.set(effect.entryId, `${error.name}: ${error.message}`);
    this.log.warning(`applying the points failed, the entry stays pending for a retry: ${error.message}`, {
      stream: this.stream,
      entry_id: effect.entryId,
      event_id: effect.eventId,
    });
  }
}

function errorText(error) {
  return error instanceof Error ? `${error.name}: ${error.message}` : `thrown ${String(error)}`;
}

function compareIds(a, b) {
  const [am, as = "0"] = a.split("-");
  const [bm, bs = "0"] = b.split("-");
  return Number(am) - Number(bm) || Number(as) - Number(bs);
}
