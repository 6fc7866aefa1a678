"""Prometheus metrics of consumer groups, streams and the outbox relay, in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["stream", "group"]

        def counter(name: str, doc: str) -> Counter:
            return Counter(f"flotilla_stream_{name}_total", doc, labels, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"flotilla_stream_{name}", doc, labels, registry=registry)

        self.delivered = counter("delivered", "Entries delivered to this consumer (new, retried or reclaimed).")
        self.acked = counter("acked", "Entries acknowledged after handling (or skipping).")
        self.retried = counter("retried", "Entries claimed again for another delivery after a failure.")
        self.dead_lettered = counter("dead_lettered", "Entries moved to the dead-letter stream.")
        self.duplicates = counter("duplicates", "Redelivered events skipped because the inbox had them.")
        self.ignored = counter("ignored", "Entries of event types this group has no handler for.")
        self.group_recreated = counter("group_recreated", "Times the group was missing (NOGROUP) and was recreated.")
        self.reclaimed = counter("reclaimed", "Entries reclaimed from consumers presumed dead (XAUTOCLAIM).")
        self.consumers_removed = counter("consumers_removed", "Idle consumers with nothing pending removed.")
        self.restarts = Counter(
            "flotilla_stream_consumer_restarts_total",
            "Consumer loops restarted after an unexpected error stopped them.",
            ["group"],
            registry=registry,
        )
        self.pending = gauge("pending", "Entries delivered to the group and not yet acknowledged.")
        self.oldest_pending_age = gauge("oldest_pending_age_seconds", "Idle time of the oldest pending entry.")
        self.lag = gauge("lag", "Entries in the stream not yet delivered to the group.")
        self.length = gauge("length", "Entries in the stream.")
        self.dlq_length = gauge("dlq_length", "Entries in the stream's dead-letter stream.")


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.relayed = Counter("flotilla_outbox_relayed_total", "Outbox events relayed to Redis.", registry=registry)
        self.failures = Counter(
            "flotilla_outbox_relay_failures_total", "Relay batches that failed (Redis or database).", registry=registry
        )
        self.restarts = Counter(
            "flotilla_outbox_relay_restarts_total",
            "Relay loops restarted after an unexpected error stopped them.",
            registry=registry,
        )
        self.backlog = Gauge(
            "flotilla_outbox_backlog", "Unsent outbox events seen by the last relay pass.", registry=registry
        )
