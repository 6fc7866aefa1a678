"""Messaging as a component of a flotilla_kit service: consumers, outbox relay, retention and
stream metrics, started and stopped with the app, on the process's Redis client (``app.state.redis``).

    app = create_service_app(settings, ..., components=[messaging(consumers=[...], outbox=outbox)])
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from redis.exceptions import RedisError

from flotilla_kit.app import Component
from flotilla_kit.health import ReadinessCheck
from flotilla_kit.settings import SettingsError
from flotilla_streams.consumer import ConsumerOptions, Handlers, StreamConsumer
from flotilla_streams.metrics import ConsumerMetrics, OutboxMetrics
from flotilla_streams.outbox import Outbox, OutboxRelay
from flotilla_streams.retention import RetentionPolicy, trim
from flotilla_streams.stats import group_stats

log = logging.getLogger(__name__)

STATS_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class ConsumerSpec:
    """A consumer group of this service: the streams it reads and its handlers."""

    group: str
    streams: Sequence[str]
    handlers: Handlers[Any]
    options: ConsumerOptions = field(default_factory=ConsumerOptions)
    # With the inbox (the default) handlers run in a database transaction, effects exactly once.
    use_inbox: bool = True


def messaging(
    *,
    consumers: Sequence[ConsumerSpec] = (),
    outbox: Outbox | None = None,
    publishes: Sequence[str] = (),
    retention: Mapping[str, RetentionPolicy] | None = None,
    retention_interval_seconds: float = 60.0,
    stats_interval_seconds: float = STATS_INTERVAL_SECONDS,
) -> Component:
    """A component that runs this service's messaging; needs REDIS_URL.

    The streams a service ``publishes`` are trimmed to STREAM_RETENTION_HOURS (never past what a
    group still needs); ``retention`` sets other policies per stream, or overrides that one.
    """

    @contextlib.asynccontextmanager
    async def component(app: Litestar) -> AsyncIterator[None]:
        settings = app.state.settings
        if not settings.redis_url:
            raise SettingsError(["REDIS_URL: this service publishes or consumes events and needs Redis"])
        client = app.state.redis  # the process's one client (flotilla_kit.shared_redis), closed by the kit
        policies = dict(retention or {})
        if publishes:
            max_age_ms = int(settings.stream_retention_hours * 3_600_000)
            policies = {**{stream: RetentionPolicy(max_age_ms=max_age_ms) for stream in publishes}, **policies}
        registry = app.state.metrics.registry
        consumer_metrics = ConsumerMetrics(registry) if consumers else None
        running: list[StreamConsumer] = [
            StreamConsumer(
                client,
                group=spec.group,
                consumer=settings.resolved_instance_id(),
                streams=spec.streams,
                handlers=spec.handlers,
                db=app.state.db if spec.use_inbox else None,
                outbox=outbox,
                options=dataclasses.replace(spec.options, claim_idle_ms=int(settings.stream_claim_idle_seconds * 1000)),
                metrics=consumer_metrics,
            )
            for spec in consumers
        ]
        relay = OutboxRelay(app.state.db, client, outbox, metrics=OutboxMetrics(registry)) if outbox else None
        checks = app.state.readiness_checks
        checks["redis"] = client.ping
        for consumer in running:
            checks[f"consumer {consumer.group}"] = _consumer_check(consumer)
        tasks = [asyncio.create_task(c.run(), name=f"consumer {c.group}") for c in running]
        if relay:
            relay_task = asyncio.create_task(relay.run(), name="outbox relay")
            tasks.append(relay_task)
            checks["outbox relay"] = _relay_check(relay, relay_task)
        stopping = asyncio.Event()
        background = [
            asyncio.create_task(
                _every(stopping, stats_interval_seconds, _update_stats, client, running, consumer_metrics),
                name="stream stats",
            ),
        ]
        if policies:
            background.append(
                asyncio.create_task(
                    _every(stopping, retention_interval_seconds, _apply_retention, client, policies),
                    name="stream retention",
                )
            )
        try:
            yield
        finally:
            # Cancelled for a prompt stop, and told to stop as well: a cancellation can be lost (see
            # _every), and a loop that lost it must still end, or the gather below waits for ever.
            stopping.set()
            for task in background:
                task.cancel()
            # Consumers finish the batch at hand; the relay flushes what is committed.
            for consumer in running:
                consumer.stop()
            if relay:
                relay.stop()
            # Awaited, the cancelled ones too: the kit closes the shared client once this returns,
            # and none of them may still be using it then.
            await asyncio.gather(*background, return_exceptions=True)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    log.error("%s ended with an error: %s", task.get_name(), result, exc_info=result)

    return component


def _consumer_check(consumer: StreamConsumer) -> ReadinessCheck:
    async def check() -> None:
        # Down (Redis unreachable, or restarting after an unexpected error), even before it first started.
        if consumer.last_error:
            raise RuntimeError(consumer.last_error)
        if not consumer.ready.is_set():
            raise RuntimeError("not started yet")

    return check


def _relay_check(relay: OutboxRelay, task: asyncio.Task[None]) -> ReadinessCheck:
    async def check() -> None:
        # Same rule as a consumer's: down from a failed pass (Redis or the database unreachable) or
        # while restarting after an unexpected error, until a pass succeeds again.
        if task.done():  # ``run`` ends only when stopped or cancelled: either way nothing is relayed
            raise RuntimeError("the relay task has ended")
        if relay.last_error:
            raise RuntimeError(relay.last_error)

    return check


async def _every(stopping: asyncio.Event, seconds: float, job: Any, *args: Any) -> None:
    # Ends on ``stopping``, not only on cancellation: on Python 3.11 a cancellation that arrives as
    # redis-py finishes writing a command is swallowed (its send is an asyncio.wait_for, which
    # returns the result instead of raising when the cancellation and the result meet: CPython
    # gh-86296, fixed in 3.12), and the job goes on as if nothing happened. So the flag is checked
    # after every pass, before sleeping; a cancellation that does arrive ends the sleep at once.
    while not stopping.is_set():
        try:
            await job(*args)
        except (RedisError, OSError) as exc:
            log.warning("%s failed: %s", job.__name__, exc)
        if stopping.is_set():
            return
        await asyncio.sleep(seconds)


async def _update_stats(client: Any, consumers: Sequence[StreamConsumer], metrics: ConsumerMetrics | None) -> None:
    if metrics is None:
        return
    for consumer in consumers:
        for stream in consumer.streams:
            stats = await group_stats(client, stream, consumer.group)
            if stats is None:
                continue
            labels = (stream, consumer.group)
            metrics.pending.labels(*labels).set(stats.pending)
            metrics.oldest_pending_age.labels(*labels).set(stats.oldest_pending_idle_ms / 1000)
            metrics.lag.labels(*labels).set(stats.lag)
            metrics.length.labels(*labels).set(stats.length)
            metrics.dlq_length.labels(*labels).set(stats.dlq_length)


async def _apply_retention(client: Any, policies: Mapping[str, RetentionPolicy]) -> None:
    for stream, policy in policies.items():
        removed = await trim(client, stream, policy)
        if removed:
            log.info("trimmed %d entries", removed, extra={"stream": stream})
