"""The relay lease: one relay at a time per SQLite file, taken over once its holder stops renewing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flotilla_streams.relay_lease import RelayLease
from flotilla_streams.tests.conftest import make_database


class Clocks:
    """A monotonic clock and a wall clock that move together, by hand."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.start = datetime(2026, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds)


def _lease(db, clocks: Clocks) -> RelayLease:
    return RelayLease(db, seconds=10, clock=clocks.monotonic, now=clocks.wall)


async def test_two_relays_on_one_file_hold_the_lease_one_at_a_time(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    first_db, second_db = await make_database(url), await make_database(url)
    clocks = Clocks()
    first, second = _lease(first_db, clocks), _lease(second_db, clocks)
    try:
        assert await first.acquire()
        assert not await second.acquire()
        clocks.seconds = 6  # past half-time: the holder renews, so the other still waits
        assert await first.acquire()
        clocks.seconds = 15
        assert not await second.acquire()
        await first.release()
        assert await second.acquire()
        assert not await first.acquire()
    finally:
        await first_db.dispose()
        await second_db.dispose()


async def test_a_holder_that_stops_renewing_is_replaced_when_its_lease_expires(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    first_db, second_db = await make_database(url), await make_database(url)
    clocks = Clocks()
    first, second = _lease(first_db, clocks), _lease(second_db, clocks)
    try:
        assert await first.acquire()
        clocks.seconds = 9.9
        assert not await second.acquire()
        clocks.seconds = 10.1  # the holder crashed: nobody renewed
        assert await second.acquire()
        clocks.seconds = 10.2
        assert not await first.acquire()  # its lease is gone; it finds the new holder's
    finally:
        await first_db.dispose()
        await second_db.dispose()
