"""The console's actions: replay one or all dead letters of a stream, hand a dead consumer's pending
entries to its group. Each needs CONSOLE_WRITE, an admin, and a confirmation typed again; every
attempt is audited (who, what, when, how it ended), refused ones included."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import redis.asyncio as redis
import sqlalchemy as sa
from console.auth import operator_of, require_operator
from console.instances import InstanceProber
from console.models import AuditEntry
from console.settings import ConsoleSettings
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from redis.exceptions import ResponseError

from flotilla_kit.db import Database
from flotilla_kit.identity import ADMIN_ROLE
from flotilla_kit.openapi import problem_responses
from flotilla_kit.problems import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable
from flotilla_streams import dlq

_audit = cast(sa.Table, AuditEntry.__table__)
# A claimed entry is given this idle time, so the group's live consumers take it at their next
# reclaim pass (they take entries idle longer than STREAM_CLAIM_IDLE_SECONDS), not 30 s later.
_CLAIMED_IDLE_MS = 7 * 24 * 3600 * 1000
# At most this many entries move per action; a larger backlog takes a second click.
MAX_ENTRIES_PER_ACTION = 10_000
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


class ActionsController(Controller):
    path = "/api"
    guards = [require_operator]

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
        async with _Action(request, db, "replay dead letter", f"{stream} {dlq_id}") as action:
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
        async with _Action(request, db, "replay all dead letters", stream) as action:
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
        the consumer's instance is registered (its heartbeat says it is alive); ``confirm`` repeats
        the consumer's name."""
        async with _Action(request, db, "claim pending entries", f"{stream} {group} {consumer}") as action:
            action.confirmed(data.confirm == consumer, f"confirm must repeat the consumer's name ({consumer})")
            prober: InstanceProber = state.prober
            if any(instance.instance_id == consumer for instance in await prober.registered()):
                raise Conflict(f"{consumer} is a registered, live instance: stop it first, or let it work")
            async with _lock(state):
                result = await _hand_over(redis_of(state), stream, group, consumer)
            return action.done(result, f"claimed {result.claimed} for {result.to}")


async def _hand_over(client: redis.Redis, stream: str, group: str, consumer: str) -> Claimed:
    try:
        members = await client.xinfo_consumers(stream, group)
    except ResponseError:
        raise NotFound(f"no group {group} on {stream}") from None
    by_name = {_text(member["name"]): member for member in members}
    if consumer not in by_name:
        raise NotFound(f"no consumer {consumer} in group {group} of {stream}")
    others = sorted((int(m["idle"]), name) for name, m in by_name.items() if name != consumer)
    if not others:
        raise Conflict(f"{consumer} is the only consumer of {group}: start another instance to take its entries")
    target = others[0][1]
    pending = await client.xpending_range(
        stream, group, min="-", max="+", count=MAX_ENTRIES_PER_ACTION, consumername=consumer
    )
    ids = [entry["message_id"] for entry in pending]
    if ids:
        # JUSTID: a hand-over is not a delivery, so the entries' delivery counts stay as they are.
        await client.xclaim(stream, group, target, 0, ids, idle=_CLAIMED_IDLE_MS, justid=True)
    left = await client.xpending_range(stream, group, min="-", max="+", count=1, consumername=consumer)
    removed = False
    if not left:
        await client.xgroup_delconsumer(stream, group, consumer)
        removed = True
    return Claimed(stream=stream, group=group, consumer=consumer, claimed=len(ids), to=target, removed=removed)


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
            await record(self.db, self.operator.id, self.name, self.target, f"refused: {refusal}")
            raise refusal
        return self

    def confirmed(self, ok: bool, message: str) -> None:
        if not ok:
            raise BadRequest(message)

    def done(self, result: Any, outcome: str) -> Any:
        self.outcome = outcome
        return result

    async def __aexit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        outcome = self.outcome if error is None else f"refused: {error}"
        if outcome is not None:
            await record(self.db, self.operator.id, self.name, self.target, outcome)


def _lock(state: State) -> asyncio.Lock:
    lock: asyncio.Lock = state.action_lock  # two clicks at once in this console act once
    return lock


def redis_of(state: State) -> redis.Redis:
    client: redis.Redis | None = state.redis
    if client is None:
        raise ServiceUnavailable("the console has no REDIS_URL: streams and services cannot be shown")
    return client


def entry_id_of(text: str) -> str:
    """``text`` as a stream entry id (``<ms>-<seq>``); 400 naming it otherwise."""
    if not text or not all(part.isdigit() for part in text.split("-", 1)) or text.count("-") != 1:
        raise BadRequest(f"{text[:64]!r} is not a stream entry id (<ms>-<seq>)")
    return text


async def record(db: Database, caller: str, action: str, target: str, outcome: str) -> None:
    """Write one audit entry."""
    async with db.transaction() as session:
        await session.execute(
            sa.insert(_audit).values(
                at=datetime.now(UTC), caller=caller[:200], action=action, target=target[:500], outcome=outcome[:500]
            )
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
