"""The console's actions: replay one or all dead letters of a stream, hand a dead consumer's pending
entries to its group. Each needs CONSOLE_WRITE, an admin, and a confirmation typed again; every
attempt is audited (who, what, when, how it ended), refused ones included."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import redis.asyncio as redis
import sqlalchemy as sa
from console.auth import operator_of, require_operator
from console.instances import InstanceProber
from console.models import AuditEntry
from console.settings import ConsoleSettings
from litestar import Controller, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.types import ExceptionHandlersMap
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flotilla_kit.db import Database
from flotilla_kit.identity import ADMIN_ROLE
from flotilla_kit.openapi import problem_responses
from flotilla_kit.problems import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    ProblemDetails,
    ServiceUnavailable,
    problem_response,
)
from flotilla_streams import dlq

_audit = cast(sa.Table, AuditEntry.__table__)
# A claimed entry is given this idle time, so the group's live consumers take it at their next
# reclaim pass (they take entries idle longer than STREAM_CLAIM_IDLE_SECONDS), not 30 s later.
_CLAIMED_IDLE_MS = 7 * 24 * 3600 * 1000
# At most this many entries move per action; a larger backlog takes a second click.
MAX_ENTRIES_PER_ACTION = 10_000
# Stream, group and consumer names in paths: visible characters, no control characters, bounded.
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_ENTRY_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_ID_PART = 2**64 - 1
# Removes a consumer from its group only if nothing is pending at it, in one step: an entry delivered
# to it between a check and the removal would otherwise be dropped from the pending list for good.
_DELETE_IF_IDLE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) + 1
end
return 0
"""
_REFUSALS = {
    401: "No authenticated operator.",
    403: "The console is read-only, the operator is not an admin, or a session's CSRF token is missing.",
}


class Confirmation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # What the action acts on, typed again (a dead letter's id, the stream's or the consumer's name):
    # an action is never one stray click or a replayed request body.
    confirm: str


class Replayed(msgspec.Struct, kw_only=True):
    stream: str
    replayed: list[str]


class Claimed(msgspec.Struct, kw_only=True):
    stream: str
    group: str
    consumer: str
    claimed: int
    to: str  # the live consumer that now holds them
    removed: bool  # whether the dead consumer left the group (nothing pending at it any more)


def redis_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[ProblemDetails]:
    """Redis failing, or a key that is not what the console expects, as a problem, not a 500."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return problem_response(
            request, 503, type_name="dependency-unavailable", detail=f"Redis cannot be reached: {exc}",
            headers={"Retry-After": "2"},
        )  # fmt: skip
    if "WRONGTYPE" in str(exc):
        return problem_response(request, 409, type_name="conflict", detail="that key holds no stream")
    return problem_response(request, 502, type_name="redis-error", detail=f"Redis refused: {exc}")


REDIS_PROBLEMS: ExceptionHandlersMap = {
    RedisConnectionError: redis_problem,
    RedisTimeoutError: redis_problem,
    ResponseError: redis_problem,
}


class ActionsController(Controller):
    path = "/api"
    guards = [require_operator]
    exception_handlers = REDIS_PROBLEMS

    @post(
        "/streams/{stream:str}/dead-letters/{dlq_id:str}/replay",
        status_code=200,
        responses=problem_responses({**_REFUSALS, 404: "No such dead letter (already replayed?)."}),
    )
    async def replay(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db: NamedDependency[Database],
        stream: FromPath[str],
        dlq_id: FromPath[str],
        data: JSONBody[Confirmation],
    ) -> Replayed:
        """Put one dead letter back on its stream, once; ``confirm`` repeats its id."""
        async with _Action(request, db, "replay dead letter", f"{name_of(stream)} {dlq_id[:64]}") as action:
            entry_id = entry_id_of(dlq_id)
            action.confirmed(data.confirm == dlq_id, f"confirm must repeat the dead letter's id ({dlq_id})")
            async with _lock(state):
                done = await dlq.replay(redis_of(state), stream, [entry_id])
            if not done:
                raise NotFound(f"no dead letter {dlq_id} on {stream} (already replayed?)")
            return action.done(Replayed(stream=stream, replayed=done), "replayed")

    @post(
        "/streams/{stream:str}/dead-letters/replay-all",
        status_code=200,
        responses=problem_responses(_REFUSALS),
    )
    async def replay_all(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db: NamedDependency[Database],
        stream: FromPath[str],
        data: JSONBody[Confirmation],
    ) -> Replayed:
        """Put every dead letter of ``stream`` back on it (the oldest first, at most 10,000 per call);
        ``confirm`` repeats the stream's name."""
        async with _Action(request, db, "replay all dead letters", name_of(stream)) as action:
            action.confirmed(data.confirm == stream, f"confirm must repeat the stream's name ({stream})")
            client = redis_of(state)
            async with _lock(state):
                entries = await dlq.list_entries(client, stream, count=MAX_ENTRIES_PER_ACTION)
                done = await dlq.replay(client, stream, [entry.id for entry in entries])
            return action.done(Replayed(stream=stream, replayed=done), f"replayed {len(done)}")

    @post(
        "/streams/{stream:str}/groups/{group:str}/consumers/{consumer:str}/claim",
        status_code=200,
        responses=problem_responses(
            {**_REFUSALS, 404: "No such group or consumer.", 409: "The consumer is alive, or no other consumer is."}
        ),
    )
    async def claim(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db: NamedDependency[Database],
        stream: FromPath[str],
        group: FromPath[str],
        consumer: FromPath[str],
        data: JSONBody[Confirmation],
    ) -> Claimed:
        """Hand a dead consumer's pending entries to the group's most recently active consumer, which
        handles them at its next reclaim pass, and remove the dead one from the group. Refused while
        the consumer's instance is registered (its heartbeat says it is alive) or while it has read
        or acked within CONSOLE_DEAD_CONSUMER_IDLE_SECONDS; entries delivered to it within that time
        stay. ``confirm`` repeats the consumer's name."""
        target = f"{name_of(stream)} {name_of(group)} {name_of(consumer)}"
        async with _Action(request, db, "claim pending entries", target) as action:
            action.confirmed(data.confirm == consumer, f"confirm must repeat the consumer's name ({consumer})")
            client = redis_of(state)
            prober: InstanceProber = state.prober
            if any(instance.instance_id == consumer for instance in await prober.registered()):
                raise Conflict(f"{consumer} is a registered, live instance: stop it first, or let it work")
            settings: ConsoleSettings = state.settings
            min_idle_ms = int(settings.console_dead_consumer_idle_seconds * 1000)
            async with _lock(state):
                result = await _hand_over(client, stream, group, consumer, min_idle_ms=min_idle_ms)
            return action.done(result, f"claimed {result.claimed} for {result.to}")


async def _hand_over(client: redis.Redis, stream: str, group: str, consumer: str, *, min_idle_ms: int) -> Claimed:
    try:
        members = await client.xinfo_consumers(stream, group)
    except ResponseError:
        raise NotFound(f"no group {group} on {stream}") from None
    by_name = {_text(member["name"]): member for member in members}
    if consumer not in by_name:
        raise NotFound(f"no consumer {consumer} in group {group} of {stream}")
    idle_ms = int(by_name[consumer]["idle"])
    if idle_ms < min_idle_ms:
        raise Conflict(
            f"{consumer} read or acked {idle_ms / 1000:.1f} s ago: it may be alive "
            f"(a consumer is presumed dead after {min_idle_ms / 1000:g} s idle)"
        )
    others = sorted((int(m["idle"]), name) for name, m in by_name.items() if name != consumer)
    if not others:
        raise Conflict(f"{consumer} is the only consumer of {group}: start another instance to take its entries")
    target = others[0][1]
    pending = await client.xpending_range(
        stream, group, min="-", max="+", count=MAX_ENTRIES_PER_ACTION, consumername=consumer
    )
    ids = [entry["message_id"] for entry in pending]
    claimed: list[Any] = []
    if ids:
        # Only entries idle as long as the consumer (one delivered since stays). JUSTID: a hand-over
        # is not a delivery, so the entries' delivery counts stay as they are.
        claimed = await client.xclaim(stream, group, target, min_idle_ms, ids, idle=_CLAIMED_IDLE_MS, justid=True)
    removed = bool(await client.eval(_DELETE_IF_IDLE, 1, stream, group, consumer))
    return Claimed(stream=stream, group=group, consumer=consumer, claimed=len(claimed), to=target, removed=removed)


class _Action:
    """One audited action: refusals before it runs and its outcome are written to the audit log."""

    def __init__(self, request: Request[Any, Any, Any], db: Database, name: str, target: str) -> None:
        self.operator = operator_of(request)
        self.settings: ConsoleSettings = request.app.state.settings
        self.db, self.name, self.target = db, name, target
        self.outcome: str | None = None

    async def __aenter__(self) -> _Action:
        refusal = None
        if not self.settings.console_write:
            refusal = Forbidden("the console is read-only (CONSOLE_WRITE is not true)")
        elif ADMIN_ROLE not in self.operator.roles:
            refusal = Forbidden(f"{self.name} needs role '{ADMIN_ROLE}'")
        if refusal is not None:
            await record(
                self.db, self.operator.id, self.name, self.target, f"refused: {refusal}",
                keep=self.settings.console_audit_max_entries,
            )  # fmt: skip
            raise refusal
        return self

    def confirmed(self, ok: bool, message: str) -> None:
        if not ok:
            raise BadRequest(message)

    def done(self, result: Any, outcome: str) -> Any:
        self.outcome = outcome
        return result

    async def __aexit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        if error is None:
            outcome = self.outcome
        elif isinstance(error, Problem) and error.status < 500:
            outcome = f"refused: {error}"
        else:  # Redis down, a bug: not the caller's fault, and not something the action did
            outcome = f"failed: {type(error).__name__}"
        if outcome is not None:
            await record(
                self.db, self.operator.id, self.name, self.target, outcome, keep=self.settings.console_audit_max_entries
            )


def _lock(state: State) -> asyncio.Lock:
    lock: asyncio.Lock = state.action_lock  # two clicks at once in this console act once
    return lock


def redis_of(state: State) -> redis.Redis:
    client: redis.Redis | None = state.redis
    if client is None:
        raise ServiceUnavailable("the console has no REDIS_URL: streams and services cannot be shown")
    return client


def entry_id_of(text: str) -> str:
    """``text`` as a stream entry id (``<ms>-<seq>``, each at most 2^64-1); 400 naming it otherwise."""
    found = _ENTRY_ID.fullmatch(text)
    if found is None or any(int(part) > _MAX_ID_PART for part in found.groups()):
        raise BadRequest(f"{text[:64]!r} is not a stream entry id (<ms>-<seq>)")
    return text


def name_of(text: str) -> str:
    """A stream, group or consumer name from a path: 1 to 256 characters, none a control character."""
    if not _NAME.fullmatch(text):
        raise BadRequest(f"{text[:64]!r} is not a stream, group or consumer name (1 to 256 visible characters)")
    return text


async def record(db: Database, caller: str, action: str, target: str, outcome: str, *, keep: int = 100_000) -> None:
    """Write one audit entry; the log keeps the newest ``keep`` entries."""
    async with db.transaction() as session:
        inserted = await session.execute(
            sa.insert(_audit)
            .values(
                at=datetime.now(UTC), caller=caller[:200], action=action, target=target[:500], outcome=outcome[:500]
            )
            .returning(_audit.c.id)
        )
        await session.execute(sa.delete(_audit).where(_audit.c.id <= inserted.scalar_one() - keep))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
