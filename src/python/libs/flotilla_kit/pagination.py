"""Opaque cursors for keyset pagination, shared by every service's list endpoints.

A cursor carries the sort key of the last item of a page, e.g. ``encode_cursor(created_at, id)``;
the next page asks for items after it. Cursors are opaque to callers (base64url of a JSON array),
and a cursor this layer did not issue is refused with InvalidCursor (answer 400).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import Select

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[str | int])


class InvalidCursor(ValueError):
    """A cursor that this service did not issue (or that was cut or altered)."""


def encode_cursor(*key: str | int) -> str:
    """A cursor after the item whose sort key is ``key`` (strings and integers)."""
    return base64.urlsafe_b64encode(_encoder.encode(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str, *, arity: int) -> list[str | int]:
    """The sort key in ``cursor``; raises InvalidCursor unless it holds ``arity`` values."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = _decoder.decode(base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True))
    except (binascii.Error, UnicodeError, ValueError, msgspec.DecodeError):
        raise InvalidCursor(f"invalid cursor {cursor!r}") from None
    if len(key) != arity:
        raise InvalidCursor(f"invalid cursor {cursor!r}")
    return key


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime: SQLite hands back naive ones (every stored time is UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def timestamp_key(moment: datetime) -> str:
    """A time as a cursor value that sorts like the time (ISO 8601 in UTC, microseconds)."""
    return as_utc(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp_key(value: Any) -> datetime:
    """The inverse of ``timestamp_key``; raises InvalidCursor for anything else."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidCursor("invalid cursor") from None


def created_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    """The cursor after an item of a list ordered by (creation time, id), the shop's usual order:
    the time breaks no ties (two items of one microsecond), the id does."""
    return encode_cursor(timestamp_key(created_at), str(item_id))


def parse_created_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (creation time, id) in a cursor of ``created_cursor``; raises InvalidCursor for any other."""
    created_at, item_id = decode_cursor(cursor, arity=2)
    try:
        return parse_timestamp_key(created_at), uuid.UUID(str(item_id))
    except ValueError:  # InvalidCursor is one too
        raise InvalidCursor(f"invalid cursor {cursor!r}") from None


def created_page(
    query: Select[Any], created_at: Any, item_id: Any, cursor: str | None, limit: int, *, newest_first: bool = False
) -> Select[Any]:
    """``query`` ordered by (creation time, id), resumed after ``cursor`` (from ``created_cursor``),
    one row more than ``limit`` (that row says whether a next page exists). Raises InvalidCursor."""
    order = (created_at.desc(), item_id.desc()) if newest_first else (created_at, item_id)
    query = query.order_by(*order).limit(limit + 1)
    if cursor:
        position = sa.tuple_(created_at, item_id)
        after = sa.tuple_(*parse_created_cursor(cursor))
        query = query.where(position < after if newest_first else position > after)
    return query
