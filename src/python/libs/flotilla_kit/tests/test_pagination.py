"""Opaque keyset cursors: what one issues comes back as it went in; anything else is InvalidCursor."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from flotilla_kit.pagination import InvalidCursor, created_cursor, encode_cursor, parse_created_cursor


def test_a_created_cursor_round_trips_in_utc():
    item_id = uuid.uuid4()
    moment = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert parse_created_cursor(created_cursor(moment, item_id)) == (moment.astimezone(UTC), item_id)


def test_a_naive_stored_time_is_taken_as_utc():
    item_id = uuid.uuid4()
    naive = datetime(2026, 5, 6, 7, 8, 9, 5)  # as SQLite hands it back
    assert parse_created_cursor(created_cursor(naive, item_id)) == (naive.replace(tzinfo=UTC), item_id)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!",
        "a" * 200,
        encode_cursor("x"),
        encode_cursor("2026-01-02T03:04:05.000000Z", "not-a-uuid"),
        encode_cursor("yesterday", str(uuid.uuid4())),
        encode_cursor(1, 2),
        encode_cursor("2026-01-02T03:04:05.000000Z", str(uuid.uuid4()), "extra"),
    ],
)
def test_a_cursor_not_issued_here_is_refused(cursor):
    with pytest.raises(InvalidCursor):
        parse_created_cursor(cursor)
