"""Consumer groups: read in batches, dispatch by event type, inbox, ack after commit, retry, DLQ.

One ``StreamConsumer`` is one member (``consumer`` = instance id) of a consumer group reading one
or more streams. Its loop, in one task:

- reads new entries with XREADGROUP COUNT/BLOCK and handles each batch in one database
  transaction, recording the event ids in the inbox in the same transaction (a failing event is
  taken out and the rest of the batch runs again); acks the batch after the commit;
- retries its own failed entries with exponential backoff (XCLAIM, which counts deliveries);
- reclaims entries that other, dead consumers left pending too long (XAUTOCLAIM), and removes
  consumers idle past ``idle_consumer_ms`` with nothing pending (both counted, also in Redis:
  ``group_counters``);
- dead-letters an entry after ``max_deliveries``, and an undecodable one at once;
- recreates its group when Redis answers NOGROUP (counted), and rides out Redis outages with backoff;
- survives anything else it did not expect (a WRONGTYPE, a bug): the loop is counted, restarted
  with backoff, and ``last_error`` says why until it reads again (the service's readiness check);
- on stop, finishes the batch at hand (handled, committed and acked) and returns.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.events import Event, event_type
from flotilla_kit.db import Database
from flotilla_kit.tracing import consuming
from flotilla_streams import group_counters, inbox
from flotilla_streams.dlq import DeadLetter, dead_letter
from flotilla_streams.envelope import Envelope, PayloadDecoder, UndecodableEntry, decode, envelope_bytes
from flotilla_streams.idle_consumers import remove_idle_consumers
from flotilla_streams.metrics import ConsumerMetrics
from flotilla_streams.outbox import Outbox

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Entry = tuple[bytes, dict[bytes, bytes] | None]


@dataclass
class HandlerContext:
    """What a handler gets besides the event: its envelope, and the transaction it runs in."""

    envelope: Envelope
    stream: str
    deliveries: int
    session: AsyncSession | None
    _outbox: Outbox | None

    async def publish(self, stream: str, event: Event) -> Envelope:
        """Publish a follow-up event through the outbox, in this handler's transaction."""
        if self.session is None or self._outbox is None:
            raise RuntimeError("publishing from a handler needs a consumer with a database and an outbox")
        return await self._outbox.add(self.session, stream, event, causation=self.envelope)


Handler = Callable[[E, HandlerContext], Awaitable[None]]


class Handlers(Generic[E]):
    """Handlers by event type: ``@handlers.on(OrderPlaced) async def reserve(event, ctx): ...``."""

    def __init__(self) -> None:
        self.by_type: dict[str, tuple[type[Event], Handler[Any]]] = {}

    def on(self, event_class: type[E]) -> Callable[[Handler[E]], Handler[E]]:
        def register(handler: Handler[E]) -> Handler[E]:
            name = event_type(event_class)
            if name in self.by_type:
                raise ValueError(f"a handler for {name} is already registered")
            self.by_type[name] = (event_class, handler)
            return handler

        return register


@dataclass(frozen=True)
class ConsumerOptions:
    batch_size: int = 500
    block_ms: int = 1_000  # also the longest a stop waits for an idle read
    max_deliveries: int = 5  # then the entry goes to the DLQ
    retry_backoff_ms: int = 200  # first retry; doubles per delivery
    max_retry_backoff_ms: int = 30_000
    # Pending this long at another consumer: it is presumed dead. The messaging component sets it
    # from the service's STREAM_CLAIM_IDLE_SECONDS.
    claim_idle_ms: int = 30_000
    # Another consumer idle this long with nothing pending has left (a stopped or replaced
    # instance): it is removed from the group. A live one reads every ``block_ms`` at most.
    idle_consumer_ms: int = 3_600_000
    idle_consumer_check_ms: int = 60_000
    maintenance_interval_ms: int = 250
    restart_backoff_ms: int = 100  # after an unexpected error; doubles per failed restart
    max_restart_backoff_ms: int = 30_000
    start_id: str = "0"  # where a new group starts: "0" misses nothing already in the stream


class _HandlerFailed(Exception):
    """A handler failed; the batch's transaction is rolled back."""

    def __init__(self, item: _Decoded, error: Exception) -> None:
        super().__init__(item.entry_id)
        self.item = item
        self.error = error


@dataclass
class _Decoded:
    entry_id: bytes
    fields: dict[bytes, bytes]
    envelope: Envelope
    event: Event
    handler: Handler[Any]
    deliveries: int


@dataclass
class _BatchOutcome:
    ack: list[bytes] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


class StreamConsumer:
    def __init__(
        self,
        client: redis.Redis,
        *,
        group: str,
        consumer: str,
        streams: Sequence[str],
        handlers: Handlers[Any],
        db: Database | None = None,
        outbox: Outbox | None = None,
        options: ConsumerOptions | None = None,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        """``db`` given: handlers run in a transaction with the inbox (exactly-once effects);
        without it, handlers run bare (at-least-once)."""
        self.client = client
        self.group = group
        self.consumer = consumer
        self.streams = list(streams)
        self.handlers = handlers
        self.db = db
        self.outbox = outbox
        self.options = options or ConsumerOptions()
        self.metrics = metrics
        self._payloads = PayloadDecoder(cls for cls, _ in handlers.by_type.values())
        self._stopping = asyncio.Event()
        self._last_errors: dict[bytes, str] = {}
        self._next_idle_check = 0.0
        self._restarts = 0  # since the loop last read successfully
        self.ready = asyncio.Event()
        # Why the consumer is not consuming right now; None while it does.
        self.last_error: str | None = None

    # lifecycle

    def stop(self) -> None:
        """Ask the loop to stop after the batch at hand; ``run`` returns then."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop``; never ends on an error.

        An unexpected error ends the loop at hand only: it is logged and counted, and the loop
        starts again after a backoff (first its own pending entries, as at start-up). Meanwhile
        ``last_error`` holds the error, until the restarted loop has read successfully.
        """
        while not self._stopping.is_set():
            try:
                await self._consume()
            except Exception as exc:  # anything: a consumer that stops consuming must not stay silent
                self._restarts += 1
                self.last_error = f"stopped by {type(exc).__name__}: {exc}; restarting"
                base = self.options.restart_backoff_ms * 2 ** (self._restarts - 1)
                delay = min(base, self.options.max_restart_backoff_ms) / 1000 * random.uniform(0.5, 1.0)
                log.error(
                    "consumer stopped by an unexpected error, restarting in %.2fs",
                    delay,
                    exc_info=exc,
                    extra={"group": self.group, "consumer": self.consumer},
                )
                if self.metrics:
                    self.metrics.restarts.labels(self.group).inc()
                await self._sleep(delay)

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        next_maintenance = 0.0
        first_pass = True
        group_missing: ResponseError | None = None
        while not self._stopping.is_set():
            try:
                if group_missing is not None:
                    # Here rather than in the handler below: an outage while recreating it is an
                    # outage like any other, ridden out (and the group recreated after it).
                    await self._recreate_groups(group_missing)
                    group_missing = None
                if first_pass:
                    created = await self._ensure_groups()
                    if self._restarts:  # a group created by a restart was lost while the loop was down
                        await self._count_recreated(created)
                    # Entries delivered to this consumer before a crash or restart come first.
                    await self._retry_own_pending(force=True)
                    first_pass = False
                    self.ready.set()
                if loop.time() >= next_maintenance:
                    await self._maintenance()
                    next_maintenance = loop.time() + self.options.maintenance_interval_ms / 1000
                await self._read_new()
                failures = 0
                self._restarts = 0
                self.last_error = None
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                group_missing = exc
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(5.0, 0.05 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning("redis unavailable, consumer retries in %.2fs: %s", delay, exc, extra={"group": self.group})
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _ensure_groups(self) -> list[str]:
        """Create the group on each stream that lacks it; returns the streams where it was created."""
        created = []
        for stream in self.streams:
            try:
                await self.client.xgroup_create(stream, self.group, id=self.options.start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            else:
                created.append(stream)
        return created

    async def _recreate_groups(self, error: ResponseError) -> None:
        # Counted where this consumer created it: of several instances meeting one lost group,
        # one recreates it and the others find it there (BUSYGROUP), so one loss counts once.
        log.warning("consumer group missing: %s", error, extra={"group": self.group})
        await self._count_recreated(await self._ensure_groups())

    async def _count_recreated(self, streams: list[str]) -> None:
        for stream in streams:
            log.warning("consumer group recreated", extra={"stream": stream, "group": self.group})
            if self.metrics:
                self.metrics.group_recreated.labels(stream, self.group).inc()
            await group_counters.record_recreated(self.client, stream, self.group)

    # reading

    async def _read_new(self) -> None:
        response = await self.client.xreadgroup(
            self.group,
            self.consumer,
            {stream: ">" for stream in self.streams},
            count=self.options.batch_size,
            block=self.options.block_ms,
        )
        for stream_name, entries in response or []:
            stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
            await self._process(stream, entries, {})

    async def _maintenance(self) -> None:
        await self._retry_own_pending(force=False)
        await self._reclaim_from_dead_consumers()
        now = asyncio.get_running_loop().time()
        if now >= self._next_idle_check:
            self._next_idle_check = now + self.options.idle_consumer_check_ms / 1000
            await self._remove_idle_consumers()

    async def _remove_idle_consumers(self) -> None:
        for stream in self.streams:
            removed = await remove_idle_consumers(
                self.client, stream, self.group, idle_ms=self.options.idle_consumer_ms, keep=self.consumer
            )
            if not removed:
                continue
            log.info("removed idle consumers %s", ", ".join(removed), extra={"stream": stream, "group": self.group})
            if self.metrics:
                self.metrics.consumers_removed.labels(stream, self.group).inc(len(removed))
            await group_counters.record_consumers_removed(self.client, stream, self.group, len(removed))

    async def _retry_own_pending(self, *, force: bool) -> None:
        """Claim this consumer's own pending entries whose backoff has passed, and handle them again."""
        for stream in self.streams:
            start = "-"
            while True:
                pending = await self.client.xpending_range(
                    stream,
                    self.group,
                    min=start,
                    max="+",
                    count=self.options.batch_size,
                    consumername=self.consumer,
                    idle=None if force else self.options.retry_backoff_ms,
                )
                due = [
                    p for p in pending if force or p["time_since_delivered"] >= self._backoff_ms(p["times_delivered"])
                ]
                if not due:
                    break
                claimed = [
                    (entry_id, fields)
                    for entry_id, fields in await self.client.xclaim(
                        stream, self.group, self.consumer, min_idle_time=0, message_ids=[p["message_id"] for p in due]
                    )
                    if fields is not None
                ]
                deliveries = {p["message_id"]: p["times_delivered"] + 1 for p in due}
                # Trimmed away while pending: Redis 6.2 claims them as nil entries, without their ids.
                gone = deliveries.keys() - {entry_id for entry_id, _ in claimed}
                if gone:
                    await self.client.xack(stream, self.group, *gone)
                if self.metrics:
                    self.metrics.retried.labels(stream, self.group).inc(len(claimed))
                await self._process(stream, claimed, deliveries)
                # A forced pass walks the whole list once; entries that fail again wait for backoff.
                if not force or len(pending) < self.options.batch_size:
                    break
                start = "(" + pending[-1]["message_id"].decode()

    async def _reclaim_from_dead_consumers(self) -> None:
        for stream in self.streams:
            result = await self.client.xautoclaim(
                stream,
                self.group,
                self.consumer,
                min_idle_time=self.options.claim_idle_ms,
                start_id="0-0",
                count=self.options.batch_size,
            )
            deleted: list[bytes] = result[2] if len(result) > 2 else []
            if deleted:  # Redis 7: trimmed away while pending, and off the pending list: nothing left to handle
                await self.client.xack(stream, self.group, *deleted)
            # Redis 6.2 returns an entry trimmed away while pending as a nil entry, without its id, and
            # leaves it pending, now at this consumer: its own retry pass acks it (by id, from XPENDING).
            claimed: list[Entry] = [(entry_id, fields) for entry_id, fields in result[1] if fields is not None]
            if not claimed:
                continue
            log.info(
                "reclaimed %d entries from dead consumers", len(claimed), extra={"stream": stream, "group": self.group}
            )
            if self.metrics:
                self.metrics.reclaimed.labels(stream, self.group).inc(len(claimed))
            await group_counters.record_reclaimed(self.client, stream, self.group, len(claimed))
            deliveries = await self._delivery_counts(stream, [entry_id for entry_id, _ in claimed])
            await self._process(stream, claimed, deliveries)

    async def _delivery_counts(self, stream: str, ids: list[bytes]) -> dict[bytes, int]:
        """How often each of ``ids`` (pending at this consumer) has been delivered, from XPENDING."""
        wanted = set(ids)
        # Ordered as Redis orders ids, by number: as bytes, b"5-10" < b"5-9", and a range bounded so
        # would miss entries of one millisecond, whose counts then read as 1: never dead-lettered.
        ordered = sorted(ids, key=_id_order)
        start, end = ordered[0].decode(), ordered[-1].decode()
        counts: dict[bytes, int] = {}
        page_size = len(ids) + 10  # own entries waiting for a retry may lie in the same range
        while wanted:
            page = await self.client.xpending_range(
                stream, self.group, min=start, max=end, count=page_size, consumername=self.consumer
            )
            for pending in page:
                if pending["message_id"] in wanted:
                    wanted.discard(pending["message_id"])
                    counts[pending["message_id"]] = pending["times_delivered"]
            if len(page) < page_size:
                break
            start = "(" + page[-1]["message_id"].decode()
        return counts

    def _backoff_ms(self, deliveries: int) -> float:
        base = self.options.retry_backoff_ms * 2 ** max(0, deliveries - 1)
        return min(base, self.options.max_retry_backoff_ms)

    # handling

    async def _process(self, stream: str, entries: Sequence[Entry], deliveries: dict[bytes, int]) -> None:
        outcome = _BatchOutcome()
        decoded: list[_Decoded] = []
        for entry_id, fields in entries:
            if fields is None:  # deleted from the stream while pending
                outcome.ack.append(entry_id)
                continue
            count = deliveries.get(entry_id, 1)
            if count > self.options.max_deliveries:
                reason = self._last_errors.pop(entry_id, "no error recorded (failed in an earlier process)")
                outcome.dead.append(
                    DeadLetter(entry_id, fields, f"gave up after {count - 1} deliveries: {reason}", count - 1)
                )
                continue
            try:
                envelope = decode(envelope_bytes(fields))
                registered = self.handlers.by_type.get(envelope.type)
                if registered is None:
                    outcome.ack.append(entry_id)  # not an event this group handles
                    if self.metrics:
                        self.metrics.ignored.labels(stream, self.group).inc()
                    continue
                event = self._payloads.decode(envelope)
            except UndecodableEntry as exc:
                outcome.dead.append(DeadLetter(entry_id, fields, f"undecodable: {exc}", count))
                continue
            decoded.append(_Decoded(entry_id, fields, envelope, event, registered[1], count))
        if self.metrics:
            self.metrics.delivered.labels(stream, self.group).inc(len(entries))
        if decoded:
            outcome.ack += await (
                self._handle_in_transaction(stream, decoded) if self.db else self._handle_bare(stream, decoded)
            )
        if outcome.dead:
            await dead_letter(self.client, stream, self.group, self.consumer, outcome.dead)
            log.error(
                "dead-lettered %d entries",
                len(outcome.dead),
                extra={"stream": stream, "reasons": [d.reason for d in outcome.dead[:5]]},
            )
            if self.metrics:
                self.metrics.dead_lettered.labels(stream, self.group).inc(len(outcome.dead))
        if outcome.ack:
            await self.client.xack(stream, self.group, *outcome.ack)
            if self.metrics:
                self.metrics.acked.labels(stream, self.group).inc(len(outcome.ack))

    async def _handle_bare(self, stream: str, batch: list[_Decoded]) -> list[bytes]:
        done: list[bytes] = []
        for item in batch:
            context = HandlerContext(item.envelope, stream, item.deliveries, None, None)
            try:
                await self._run_handler(stream, item, context)
            except Exception as exc:  # a handler's failure is data for retry and the DLQ, not a crash
                self._record_failure(stream, item, exc)
                continue
            self._last_errors.pop(item.entry_id, None)
            done.append(item.entry_id)
        return done

    async def _handle_in_transaction(self, stream: str, batch: list[_Decoded]) -> list[bytes]:
        """Handle a batch in one transaction: one inbox statement and one commit per batch.

        When a handler fails, the transaction is rolled back and the batch runs again without
        that event (left pending, for a retry after backoff). Handlers must therefore keep their
        effects in the transaction: one that ran before the failure runs again.
        """
        remaining = batch
        while remaining:
            try:
                return await self._run_batch(stream, remaining)
            except _HandlerFailed as failed:
                self._record_failure(stream, failed.item, failed.error)
                remaining = [item for item in remaining if item is not failed.item]
            except (SQLAlchemyError, OSError) as exc:
                # The commit failed: nothing of the batch happened; every entry stays pending.
                log.warning("batch transaction failed, entries will be retried: %s", exc, extra={"stream": stream})
                for item in remaining:
                    self._last_errors[item.entry_id] = f"transaction failed: {type(exc).__name__}: {exc}"
                return []
        return []

    async def _run_batch(self, stream: str, batch: list[_Decoded]) -> list[bytes]:
        assert self.db is not None
        done: list[bytes] = []
        async with self.db.transaction() as session:
            fresh = await inbox.claim_many(session, self.group, list({item.envelope.id: None for item in batch}))
            for item in batch:
                done.append(item.entry_id)
                if item.envelope.id not in fresh:  # handled before (a redelivery), or twice in this batch
                    if self.metrics:
                        self.metrics.duplicates.labels(stream, self.group).inc()
                    continue
                fresh.discard(item.envelope.id)
                context = HandlerContext(item.envelope, stream, item.deliveries, session, self.outbox)
                try:
                    await self._run_handler(stream, item, context)
                except Exception as exc:  # roll the batch back; the caller runs it again without this one
                    raise _HandlerFailed(item, exc) from exc
        for entry_id in done:
            self._last_errors.pop(entry_id, None)
        return done

    async def _run_handler(self, stream: str, item: _Decoded, context: HandlerContext) -> None:
        """Run the event's handler; when tracing (flotilla_kit.tracing), in a CONSUMER span linked
        to the producer's context carried in the envelope."""
        envelope = item.envelope
        span = consuming(
            stream,
            self.group,
            event_id=envelope.id,
            event_type=envelope.type,
            correlation_id=envelope.correlation_id,
            traceparent=envelope.traceparent,
            deliveries=item.deliveries,
        )
        if span is None:
            await item.handler(item.event, context)
            return
        with span:
            await item.handler(item.event, context)

    def _record_failure(self, stream: str, item: _Decoded, exc: Exception) -> None:
        self._last_errors[item.entry_id] = f"{type(exc).__name__}: {exc}"
        log.warning(
            "handler failed (delivery %d of %d): %s: %s",
            item.deliveries,
            self.options.max_deliveries,
            type(exc).__name__,
            exc,
            extra={"stream": stream, "event_id": item.envelope.id, "event_type": item.envelope.type},
        )


def _id_order(entry_id: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition(b"-")
    return int(milliseconds), int(sequence or 0)
