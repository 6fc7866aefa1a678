// Prometheus counters in the text exposition format, under the names flotilla_streams.metrics uses
// for its consumers (flotilla_stream_<name>_total{stream, group}), so dashboards and the console
// read this consumer as they read the Python ones; plus this service's own.

const STREAM_COUNTERS = {
  delivered: "Entries delivered to this consumer (new, retried or reclaimed).",
  acked: "Entries acknowledged after handling (or skipping).",
  handled: "Events whose effect was applied (points added), once per event id.",
  duplicates: "Redelivered events skipped because their event id had been processed.",
  ignored: "Entries of event types this group has no handler for.",
  dead_lettered: "Entries moved to the dead-letter stream.",
  retried: "Entries claimed again for another delivery after a failure.",
  reclaimed: "Entries reclaimed from consumers presumed dead (XAUTOCLAIM).",
  group_recreated: "Times the group was missing (NOGROUP) and was recreated.",
};

class Counter {
  constructor(name, help) {
    this.name = name;
    this.help = help;
    this.values = new Map(); // label text -> value
  }

  inc(labels = {}, by = 1) {
    if (by <= 0) return;
    const key = Object.entries(labels)
      .map(([k, v]) => `${k}="${String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`)
      .join(",");
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  get(labels = {}) {
    const key = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",");
    return this.values.get(key) ?? 0;
  }

  render() {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [labels, value] of this.values) lines.push(`${this.name}${labels ? `{${labels}}` : ""} ${value}`);
    return lines.join("\n");
  }
}

export function createMetrics({ service, version }) {
  const stream = Object.fromEntries(
    Object.entries(STREAM_COUNTERS).map(([name, help]) => [name, new Counter(`flotilla_stream_${name}_total`, help)]),
  );
  const restarts = new Counter(
    "flotilla_stream_consumer_restarts_total",
    "Consumer loops restarted after an unexpected error stopped them.",
  );
  const pointsAwarded = new Counter("loyalty_points_awarded_total", "Loyalty points added to customers.");
  const all = [...Object.values(stream), restarts, pointsAwarded];
  return {
    counter: (name) => stream[name],
    restarts,
    pointsAwarded,
    render() {
      const info = `# HELP service_info The running service and its version.\n# TYPE service_info gauge\nservice_info{service="${service}",version="${version}",runtime="node ${process.versions.node}"} 1`;
      return [info, ...all.map((c) => c.render())].join("\n") + "\n";
    },
  };
}
