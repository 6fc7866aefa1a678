// Registration in the service registry exactly as flotilla_discovery writes it (registry.py,
// redis_store.py), so the gateway's resolvers find this instance like any Python one:
//
// - flotilla:discovery:{<service>}:expiries  sorted set: instance id -> expiry (ms, Redis's clock)
// - flotilla:discovery:{<service>}:instances hash: instance id -> the Instance as JSON:
//   {"service", "instance_id", "url", "version", "started_at" (unix seconds)}
// - flotilla:discovery:<service>             channel: {"change": "registered"|"deregistered"|"expired", "instance_id"}
//
// Register on start, heartbeat every TTL/3 (a heartbeat re-registers an entry that expired or was
// lost), deregister on shutdown; the same Lua script as the Python registry, so both keep the
// keys' own expiry a grace period after the latest instance's.

export const NAMESPACE = "flotilla";
const KEY_GRACE_TTLS = 10;

// flotilla_discovery.redis_store._WRITE_SCRIPT, verbatim.
const WRITE_SCRIPT = `
local expiries, instances = KEYS[1], KEYS[2]
local instance_id, data, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local channel, message, announce = ARGV[4], ARGV[5], ARGV[6]
local keys_grace_ms = tonumber(ARGV[7])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local previous = redis.call('ZSCORE', expiries, instance_id)
local was_live = previous and tonumber(previous) > now
redis.call('ZADD', expiries, now + ttl_ms, instance_id)
redis.call('HSET', instances, instance_id, data)
local latest = redis.call('ZRANGE', expiries, -1, -1, 'WITHSCORES')
local keys_expire_at = tonumber(latest[2]) + keys_grace_ms
redis.call('PEXPIREAT', expiries, keys_expire_at)
redis.call('PEXPIREAT', instances, keys_expire_at)
if announce == 'always' or not was_live then
  redis.call('PUBLISH', channel, message)
end
if was_live then return 0 end
return 1
`;

/** Key and channel names of `service`; throws for a name that cannot be one (as service_keys does). */
export function serviceKeys(service, namespace = NAMESPACE) {
  if (!service || /[{}*?[\] \t\r\n]/.test(service)) throw new Error(`not a usable service name: ${JSON.stringify(service)}`);
  const prefix = `${namespace}:discovery`;
  return {
    expiries: `${prefix}:{${service}}:expiries`,
    instances: `${prefix}:{${service}}:instances`,
    channel: `${prefix}:${service}`,
  };
}

/** The Instance JSON, field for field in flotilla_discovery.instance.Instance's order. */
export function instanceJson(instance) {
  return JSON.stringify({
    service: instance.service,
    instance_id: instance.instanceId,
    url: instance.url,
    version: instance.version,
    started_at: instance.startedAt,
    routable: instance.routable,
  });
}

/**
 * Keeps `instance` registered for the life of `run()`, as flotilla_discovery.registry.Heartbeat:
 * never ends on an error (logs once while the registry is unreachable and keeps its pace);
 * `problem()` says why callers cannot find the instance, or null while they can.
 */
export class Heartbeat {
  constructor({ client, instance, ttlSeconds, log, metrics }) {
    this.client = client;
    this.instance = instance;
    this.keys = serviceKeys(instance.service);
    this.ttlMs = Math.max(1, Math.round(ttlSeconds * 1000));
    this.intervalMs = this.ttlMs / 3;
    this.log = log;
    this.metrics = metrics;
    this._liveUntil = null; // when the last written entry expires (performance.now() ms)
    this._failure = null;
    this._stopping = false;
    this._wakeUp = null;
    client.defineCommand("discoveryWrite", { numberOfKeys: 2, lua: WRITE_SCRIPT });
  }

  problem() {
    const failing = this._failure ? `: ${this._failure}` : "";
    if (this._liveUntil === null) return `not registered yet${failing}`;
    const expiredFor = performance.now() - this._liveUntil;
    if (expiredFor >= 0) return `registration expired ${(expiredFor / 1000).toFixed(1)}s ago, no heartbeat since${failing}`;
    return null;
  }

  async _write(announce) {
    const message = JSON.stringify({ change: "registered", instance_id: this.instance.instanceId });
    const args = [this.instance.instanceId, instanceJson(this.instance), this.ttlMs, this.keys.channel, message, announce, this.ttlMs * KEY_GRACE_TTLS];
    return Number(await this.client.discoveryWrite(this.keys.expiries, this.keys.instances, ...args));
  }

  /** Register, heartbeat every TTL/3 until `stop()`; returns after deregistering. */
  async run() {
    let registered = false;
    while (!this._stopping) {
      const writtenAt = performance.now(); // the entry lives a TTL from when Redis ran the script, not earlier
      try {
        const wasNew = await this._write(registered ? "if_new" : "always");
        if (registered && wasNew) this.log.info(`re-registered ${this.instance.service}/${this.instance.instanceId} (its entry had expired or was lost)`);
        registered = true;
        this._liveUntil = writtenAt + this.ttlMs;
        if (this._failure !== null) this.log.info(`registry reachable again; ${this.instance.service}/${this.instance.instanceId} is live`);
        this._failure = null;
      } catch (error) {
        if (this._failure === null) this.log.warning(`registry unreachable, ${this.instance.service}/${this.instance.instanceId} keeps retrying: ${error.message}`);
        this._failure = `${error.name}: ${error.message}`;
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, this.intervalMs);
        this._wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    await this.deregister();
  }

  stop() {
    this._stopping = true;
    this._wakeUp?.();
  }

  /** Remove the instance and announce it; bounded by the TTL (an unreachable Redis: it expires instead). */
  async deregister() {
    const message = JSON.stringify({ change: "deregistered", instance_id: this.instance.instanceId });
    const removal = this.client
      .multi()
      .zrem(this.keys.expiries, this.instance.instanceId)
      .hdel(this.keys.instances, this.instance.instanceId)
      .publish(this.keys.channel, message)
      .exec();
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.ttlMs} ms`)), this.ttlMs);
    });
    try {
      await Promise.race([removal, timeout]);
    } catch (error) {
      this.log.warning(`could not deregister ${this.instance.service}/${this.instance.instanceId}, it expires with its TTL: ${error.message}`);
    } finally {
      clearTimeout(timer);
    }
  }
}
