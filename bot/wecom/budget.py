"""WeCom's per-API call budget for the whole corp, shared by every process on the database.

WeCom counts calls per corp per API, per minute and per hour (wecom-api.md section 4).
Every process books its calls in `wecom_budget_slots`: one row per API, window scale and
time slot (1 s slots for the minute, 1 min slots for the hour). A process reserves a small
batch of calls in one short transaction and spends them locally for at most one slot, so
the database sees about one write per batch.

Sliding, not fixed, windows: we don't know where WeCom's minute starts, so no span of one
window may ever hold more than its budget. A call happens at most one slot after the slot
it was booked in, so any window's span touches at most `slots + 2` booked slots: a
reservation must fit in the sum over the last `slots + 2`. A saturated API therefore runs
at 60/62 (97 %) of each budget.

Two lanes: `bulk` calls (tier pushes, sync, outreach; the default) may fill the budget up
to its interactive reserve; `interactive` calls (done in answer to a callback: the scan's
customer fetch, welcome, tags, staff alerts) may use all of it, so a bulk drain never
delays a scan. Choose with `with interactive():` / `with bulk():` around the calls.

Waiting for budget can take up to an hour (the hourly budget spent). The wait is cut into
naps of at most `nap_seconds`: between naps the caller's `while_waiting` hook runs (the
outbox renews its claims there, so no other worker takes an operation whose worker is
only waiting), and a set `stop` event ends the wait with BudgetWaitStoppedError at once.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.driver import DriverWrite
from bot.db.models import WeComBudget, WeComBudgetSlot
from bot.db.types import wall
from bot.errors import WeComError
from bot.wecom import metrics

STOPPED = -3  # our errcode: the process stopped while a call waited for budget


class BudgetWaitStoppedError(WeComError):
    """The process is stopping: a call waiting for WeCom budget was given up, not made."""

    def __init__(self, api: str) -> None:
        super().__init__(STOPPED, "stopped while waiting for budget", api=api, retryable=True)


Lane = Literal["interactive", "bulk"]
INTERACTIVE: Lane = "interactive"
BULK: Lane = "bulk"
LANES: tuple[Lane, ...] = (INTERACTIVE, BULK)

_lane: ContextVar[Lane] = ContextVar("wecom_lane", default=BULK)
_on_wait: ContextVar[Callable[[], None] | None] = ContextVar("wecom_budget_on_wait", default=None)


@contextlib.contextmanager
def while_waiting(hook: Callable[[], None]) -> Iterator[None]:
    """Run `hook` between the naps of any wait for budget in this block (this thread)."""
    token = _on_wait.set(hook)
    try:
        yield
    finally:
        _on_wait.reset(token)


@contextlib.contextmanager
def lane(name: Lane) -> Iterator[None]:
    """Make the WeCom calls in this block (this thread or task) count in lane `name`."""
    token = _lane.set(name)
    try:
        yield
    finally:
        _lane.reset(token)


def interactive() -> contextlib.AbstractContextManager[None]:
    """Count the calls in this block as interactive: they may use the reserved share."""
    return lane(INTERACTIVE)


def bulk() -> contextlib.AbstractContextManager[None]:
    """Count the calls in this block as bulk (the default): they leave the reserve alone."""
    return lane(BULK)


def current_lane() -> Lane:
    """Return the lane calls made here count in."""
    return _lane.get()


@dataclass(frozen=True)
class Scale:
    """One window WeCom counts in, cut into `slots` slots of `slot_seconds`."""

    name: str  # minute | hour
    slot_seconds: float
    slots: int
    limit: int
    bulk_limit: int
    lease_slots: int  # how many slots after its booking a reserved call may still be made

    def slot_of(self, t: float) -> int:
        return math.floor(t / self.slot_seconds)

    @property
    def guard(self) -> int:
        """How many booked slots a span of one window may touch."""
        return self.slots + 1 + self.lease_slots


@dataclass
class _Lease:
    """Calls this process reserved for one (API, lane), usable until `expires`."""

    lock: threading.Lock
    remaining: int = 0
    granted: int = 0
    expires: float = 0.0
    booked_at: float = 0.0
    size: int = 1  # the next batch to ask for: grows while leases run dry, shrinks if not


@dataclass(frozen=True)
class _Grant:
    granted: int
    wait: float  # seconds until a retry may succeed, when nothing was granted
    at: float  # the clock reading the booking was made at


# The booking's statements on the bare driver (`:name` parameters; see bot/db/driver.py).
_LOCK_SQL = "SELECT paused_until FROM wecom_budgets WHERE corp_id = :corp AND api = :api"
_CREATE_SQL = (
    "INSERT INTO wecom_budgets (corp_id, api, paused_until) VALUES (:corp, :api, 0)"
    " ON CONFLICT (corp_id, api) DO NOTHING"
)
_IN_WINDOWS = (
    "corp_id = :corp AND api = :api"
    " AND ((scale = :s0 AND slot >= :f0) OR (scale = :s1 AND slot >= :f1))"
)
_SUMS_SQL = (
    "SELECT scale, SUM(interactive), SUM(bulk), MIN(slot) FROM wecom_budget_slots"
    f" WHERE {_IN_WINDOWS} GROUP BY scale"
)
_PRUNE_SQL = (
    "DELETE FROM wecom_budget_slots WHERE corp_id = :corp AND api = :api"
    " AND ((scale = :s0 AND slot < :f0) OR (scale = :s1 AND slot < :f1))"
)
_BOOK_SQL = (
    "INSERT INTO wecom_budget_slots (corp_id, api, scale, slot, interactive, bulk)"
    " VALUES (:corp, :api, :s0, :n0, :i, :b), (:corp, :api, :s1, :n1, :i, :b)"
    " ON CONFLICT (corp_id, api, scale, slot) DO UPDATE SET"
    " interactive = wecom_budget_slots.interactive + excluded.interactive,"
    " bulk = wecom_budget_slots.bulk + excluded.bulk"
)
_REFUND_SQL: dict[Lane, str] = {
    which: (
        f"UPDATE wecom_budget_slots SET {which} ="
        f" CASE WHEN {which} > :calls THEN {which} - :calls ELSE 0 END"
        " WHERE corp_id = :corp AND api = :api"
        " AND ((scale = :s0 AND slot = :n0) OR (scale = :s1 AND slot = :n1))"
    )
    for which in LANES
}


def _insert(model: type[WeComBudget] | type[WeComBudgetSlot], *, session: Session) -> Any:
    """Start an INSERT with the backend's ON CONFLICT clauses."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


class SharedBudget:
    """Hand out calls of WeCom's per-API budgets, shared through the database."""

    def __init__(
        self,
        db: Database,
        corp_id: str,
        *,
        per_minute: int,
        per_hour: int,
        interactive_reserve: float = 0.2,
        batch: int = 50,
        window: float = 60.0,
        clock: Callable[[], float] = wall,  # the database's clock (bot/db/clock.py)
        sleep: Callable[[float], object] = time.sleep,
        stop: threading.Event | None = None,
        nap_seconds: float = 5.0,
    ) -> None:
        if per_minute < 1 or per_hour < 1 or window <= 0 or batch < 1:
            raise ValueError("budgets and batch must be >= 1 and window > 0")
        if not 0.0 <= interactive_reserve < 1.0:
            raise ValueError("interactive_reserve must be in [0, 1)")
        self._db = db
        self._corp = corp_id
        # `window` is the minute; tests shrink it to run in real time without sleeping long.
        # Reserved calls stay usable for a slot in production; never for less than a
        # database round trip under load, or a shrunken test window would waste each lease.
        lease = max(window / 60, min(1.0, window / 4))
        self.scales = (
            self._scale("minute", window / 60, per_minute, interactive_reserve, lease),
            self._scale("hour", window, per_hour, interactive_reserve, lease),
        )
        self._batch = batch
        # How long reserved calls stay usable: a slot in production; never shorter than a
        # database round trip under load, or a shrunken test window would waste every lease.
        self._lease_seconds = lease
        self._clock = clock
        self._stop = stop
        # Real waits sleep on the stop event, so a stop ends them at once; tests pass time.
        self._sleep = stop.wait if stop is not None and sleep is time.sleep else sleep
        self._nap = nap_seconds
        self._leases: dict[tuple[str, Lane], _Lease] = {}
        self._guard = threading.Lock()
        self.transactions = 0  # reservations this process made (the database's share)
        # Calls made while this thread held the SQLite write lock, booked at the next chance.
        self._owed: dict[tuple[str, Lane], int] = {}
        self._pruned: dict[str, int] = {}  # the minute slot each API's old slots went at
        self._gauges: dict[tuple[str, str], list[tuple[Lane, int, Any, Any]]] = {}

    @staticmethod
    def _scale(name: str, slot_seconds: float, limit: int, reserve: float, lease: float) -> Scale:
        bulk_limit = max(1, int(limit * (1 - reserve)))
        return Scale(name, slot_seconds, 60, limit, bulk_limit, math.ceil(lease / slot_seconds))

    # --- spending -----------------------------------------------------------------

    def acquire(self, api: str, lane: Lane | None = None) -> float:
        """Block until one call to `api` fits the shared budget; return the seconds waited."""
        which = lane or current_lane()
        lease = self._lease(api, which)
        waited = 0.0
        # Another thread of this process may hold the lease while it waits: wait in naps too.
        while not lease.lock.acquire(timeout=self._nap):
            self._between_naps(api)
        try:
            while True:
                now = self._clock()
                if lease.remaining > 0 and now < lease.expires:
                    lease.remaining -= 1
                    return waited
                if self._db.writing:
                    # A write is open on this thread (a nested one is refused): go, book it later.
                    with self._guard:
                        self._owed[(api, which)] = self._owed.get((api, which), 0) + 1
                    return waited
                refund = self._resize(lease)
                grant = self._reserve(api, which, lease.size, refund)
                if grant.granted:
                    lease.remaining = lease.granted = grant.granted
                    lease.booked_at = grant.at
                    lease.expires = grant.at + self._lease_seconds
                    continue
                # Naps only serve a hook or a stop; without either, one sleep does.
                napping = self._stop is not None or _on_wait.get() is not None
                nap = min(grant.wait, self._nap) if napping else grant.wait
                self._between_naps(api)
                self._sleep(nap)
                waited += nap
                self._between_naps(api)
        finally:
            lease.lock.release()

    def _between_naps(self, api: str) -> None:
        hook = _on_wait.get()
        if hook is not None and not self._db.writing:
            hook()
        if self._stop is not None and self._stop.is_set():
            raise BudgetWaitStoppedError(api)

    def pause(self, api: str, seconds: float) -> None:
        """Stop every process calling `api` for `seconds` (WeCom answered 45009)."""
        until = self._clock() + seconds
        for which in LANES:
            lease = self._lease(api, which)
            lease.remaining = 0
        if self._db.writing:
            return  # the caller's retry books through the database and sees no pause: rare
        with self._db.write() as session:
            row = self._lock_row(api, session=session)
            row.paused_until = max(row.paused_until, until)

    def _lease(self, api: str, which: Lane) -> _Lease:
        with self._guard:
            lease = self._leases.get((api, which))
            if lease is None:
                lease = self._leases[(api, which)] = _Lease(threading.Lock())
            return lease

    def _resize(self, lease: _Lease) -> tuple[int, float]:
        """Size the next batch; return the calls of the old lease never made, and when booked.

        Twice as much after a lease ran dry; what was used after one expired.
        """
        unused = lease.remaining
        if lease.granted:
            used = lease.granted - unused
            lease.size = min(self._batch, 2 * lease.size) if unused == 0 else max(1, used)
        lease.remaining = lease.granted = 0
        return unused, lease.booked_at

    # --- the shared table ---------------------------------------------------------

    def _lock_row(self, api: str, *, session: Session) -> WeComBudget:
        """Create the API's row if new and lock it: reservations for one API queue here."""
        locked = (
            select(WeComBudget)
            .where(WeComBudget.corp_id == self._corp, WeComBudget.api == api)
            .with_for_update()
        )
        row = session.scalars(locked).first()
        if row is not None:
            return row
        session.execute(
            _insert(WeComBudget, session=session)
            .values(corp_id=self._corp, api=api, paused_until=0.0)
            .on_conflict_do_nothing(index_elements=["corp_id", "api"])
        )
        return session.scalars(locked).one()

    def _reserve(
        self, api: str, which: Lane, want: int, refund: tuple[int, float] = (0, 0.0)
    ) -> _Grant:
        """Book up to `want` calls in the current slots in one short transaction.

        `refund` gives back the calls of an expired lease that were never made. The hot
        path of every process's WeCom calls: it goes through the bare driver
        (`Database.write_driver`), in three statements (lock, sums, booking) plus the
        refund after a lease expired unused and, every 10 s, the pruning.
        """
        self.transactions += 1
        with self._db.write_driver() as txn:
            paused_until = self._lock_row_driver(api, txn)
            now = self._clock()  # after the lock: the booking is as late as the spending
            unused, booked_at = refund
            if unused:
                self._refund_driver(api, which, unused, booked_at, now, txn)
            if paused_until > now:
                return _Grant(0, paused_until - now, now)
            owed = self._take_owed(api)
            room = want
            wait = 0.0
            self._prune_driver(api, now, txn)
            sums, oldest = self._sums_driver(api, now, txn)
            for scale in self.scales:
                used = sums[scale.name]
                total = sum(used.values()) + sum(owed.values())
                cap = scale.limit if which == INTERACTIVE else scale.bulk_limit
                room = min(room, cap - total)
                self._report(api, scale, used)
                if cap - total <= 0:
                    first = oldest.get(scale.name)
                    # When the oldest booked slot in the window leaves it.
                    frees = now if first is None else (first + scale.guard) * scale.slot_seconds
                    wait = max(wait, frees - now)
            granted = max(0, room)
            booking = dict(owed)
            booking[which] = booking.get(which, 0) + granted
            if any(booking.values()):
                self._book_driver(api, now, booking, txn)
            if granted:
                metrics.BUDGET_RESERVED.labels(api=api, lane=which).inc(granted)
            return _Grant(granted, max(wait, self._lease_seconds / 10), now)

    def _lock_row_driver(self, api: str, txn: DriverWrite) -> float:
        """Create the API's row if new and lock it; return its `paused_until`.

        Reservations for one API queue on this row (PostgreSQL); on SQLite the
        transaction already holds the database's write lock.
        """
        key = {"corp": self._corp, "api": api}
        locked = _LOCK_SQL if txn.dialect == "sqlite" else _LOCK_SQL + " FOR UPDATE"
        row = txn.execute(locked, key)
        if row is None:
            txn.execute(_CREATE_SQL, key)
            row = txn.execute(locked, key)
            assert row is not None  # created or found under the lock
        return float(row[0])

    def _window_params(self, api: str, now: float) -> dict[str, Any]:
        (minute, hour) = self.scales
        return {
            "corp": self._corp,
            "api": api,
            "s0": minute.name,
            "f0": self._first(minute, now),
            "s1": hour.name,
            "f1": self._first(hour, now),
        }

    def _sums_driver(
        self, api: str, now: float, txn: DriverWrite
    ) -> tuple[dict[str, dict[Lane, int]], dict[str, int]]:
        """Sum each window's booked calls by lane and find its oldest slot, in one query."""
        rows = txn.fetchall(_SUMS_SQL, self._window_params(api, now))
        sums: dict[str, dict[Lane, int]] = {s.name: {INTERACTIVE: 0, BULK: 0} for s in self.scales}
        oldest: dict[str, int] = {}
        for scale, i, b, first in rows:
            sums[scale] = {INTERACTIVE: int(i or 0), BULK: int(b or 0)}
            if first is not None:
                oldest[scale] = int(first)
        return sums, oldest

    def _prune_driver(self, api: str, now: float, txn: DriverWrite) -> None:
        """Drop the slots that left their windows, every few seconds per API."""
        minute = self.scales[0].slot_of(now)
        if minute - self._pruned.get(api, -(10**18)) < 10:
            return
        self._pruned[api] = minute
        txn.execute(_PRUNE_SQL, self._window_params(api, now))

    def _book_driver(self, api: str, now: float, calls: dict[Lane, int], txn: DriverWrite) -> None:
        """Add `calls` to the current slot of every window, in one statement."""
        (minute, hour) = self.scales
        txn.execute(
            _BOOK_SQL,
            {
                "corp": self._corp,
                "api": api,
                "s0": minute.name,
                "n0": minute.slot_of(now),
                "s1": hour.name,
                "n1": hour.slot_of(now),
                "i": calls.get(INTERACTIVE, 0),
                "b": calls.get(BULK, 0),
            },
        )

    def _refund_driver(
        self, api: str, which: Lane, calls: int, at: float, now: float, txn: DriverWrite
    ) -> None:
        """Give back `calls` booked at `at` and never made, in both windows, in one statement.

        Skipped once both of the booking's slots left their windows: they count for nobody.
        """
        (minute, hour) = self.scales
        if minute.slot_of(at) < self._first(minute, now) and hour.slot_of(at) < self._first(
            hour, now
        ):
            return
        txn.execute(
            _REFUND_SQL[which],
            {
                "corp": self._corp,
                "api": api,
                "s0": minute.name,
                "n0": minute.slot_of(at),
                "s1": hour.name,
                "n1": hour.slot_of(at),
                "calls": calls,
            },
        )

    def _take_owed(self, api: str) -> dict[Lane, int]:
        with self._guard:
            return {w: self._owed.pop((api, w)) for w in LANES if (api, w) in self._owed}

    @staticmethod
    def _first(scale: Scale, now: float) -> int:
        return scale.slot_of(now) - scale.guard + 1

    def _sums(self, api: str, now: float, *, session: Session) -> dict[str, dict[Lane, int]]:
        """Sum each window's booked calls by lane, in one query."""
        inside = [
            (WeComBudgetSlot.scale == s.name) & (WeComBudgetSlot.slot >= self._first(s, now))
            for s in self.scales
        ]
        rows = session.execute(
            select(
                WeComBudgetSlot.scale,
                func.sum(WeComBudgetSlot.interactive),
                func.sum(WeComBudgetSlot.bulk),
            )
            .where(WeComBudgetSlot.corp_id == self._corp, WeComBudgetSlot.api == api, or_(*inside))
            .group_by(WeComBudgetSlot.scale)
        ).all()
        sums: dict[str, dict[Lane, int]] = {s.name: {INTERACTIVE: 0, BULK: 0} for s in self.scales}
        for scale, i, b in rows:
            sums[scale] = {INTERACTIVE: int(i or 0), BULK: int(b or 0)}
        return sums

    def _report(self, api: str, scale: Scale, used: dict[Lane, int]) -> None:
        total = sum(used.values())
        gauges = self._gauges.get((api, scale.name))
        if gauges is None:  # looking the labelled children up costs more than setting them
            gauges = self._gauges[(api, scale.name)] = [
                (
                    which,
                    scale.limit if which == INTERACTIVE else scale.bulk_limit,
                    metrics.BUDGET_USED.labels(api=api, lane=which, window=scale.name),
                    metrics.BUDGET_REMAINING.labels(api=api, lane=which, window=scale.name),
                )
                for which in LANES
            ]
        for which, cap, used_gauge, remaining_gauge in gauges:
            used_gauge.set(used[which])
            remaining_gauge.set(max(0, cap - total))

    def used(self, api: str) -> dict[str, dict[Lane, int]]:
        """Return the calls booked in each window of `api` by lane (for reports and tests)."""
        with self._db.read() as session:
            return self._sums(api, self._clock(), session=session)
