"""Tiers for the console: sizes now and per day, a run's from → to matrix, the last run.

Reads only the per-run aggregates the re-tier writes as it finishes
(`bot.tiering.run_stats`: `tier_size_days`, `tier_run_moves`) and `retier_runs`: a few
dozen rows per page whatever the number of customers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.db.models import OutboxOperation, RetierRun, TierRunMove, TierSizeDay
from bot.db.types import utcnow
from bot.reports import operations
from bot.reports.operations import OutboxCounts
from bot.states import OutboxStatus
from bot.tags import push
from bot.tiering.run_stats import MEASURED


@dataclass(frozen=True)
class TierSize:
    """How many customers hold one tier."""

    tier: str
    customers: int


@dataclass(frozen=True)
class TierSizes:
    """A dimension's tier sizes after one run (`run_id` None: no run has measured it)."""

    dimension: str
    run_id: int | None
    day: date | None  # the run's as_of local day
    sizes: tuple[TierSize, ...]

    @property
    def total(self) -> int:
        """Customers holding any tier of the dimension."""
        return sum(s.customers for s in self.sizes)

    def of(self, tier: str) -> int:
        """Return the size of `tier` (0 when nobody holds it)."""
        return next((s.customers for s in self.sizes if s.tier == tier), 0)


def _ordered(found: dict[str, int], tiers: Sequence[str]) -> tuple[TierSize, ...]:
    """Configured tiers first in their order (0 for empty ones), then others by size."""
    out = [TierSize(t, found.get(t, 0)) for t in tiers]
    rest = sorted((t for t in found if t not in tiers), key=lambda t: (-found[t], t))
    return tuple(out + [TierSize(t, found[t]) for t in rest])


def all_tier_sizes(
    *, session: Session, tiers: Mapping[str, Sequence[str]] | None = None
) -> dict[str, TierSizes]:
    """Return every measured dimension's sizes after the latest run (one query).

    `tiers` gives each dimension's configured tiers, to list them in order and with 0s.
    """
    latest = session.scalar(select(func.max(TierSizeDay.run_id)))
    if latest is None:
        return {}
    rows = session.execute(
        select(TierSizeDay.dimension, TierSizeDay.tier, TierSizeDay.customers, TierSizeDay.day)
        .where(TierSizeDay.run_id == latest)
        .order_by(TierSizeDay.dimension, TierSizeDay.tier)
    ).all()
    found: dict[str, dict[str, int]] = {}
    day: date | None = None
    for dim, tier, n, d in rows:
        day = d
        found.setdefault(dim, {})
        if tier != MEASURED:
            found[dim][tier] = int(n)
    order = tiers or {}
    return {
        dim: TierSizes(dim, int(latest), day, _ordered(sizes, order.get(dim, ())))
        for dim, sizes in found.items()
    }


def tier_sizes(dimension: str, *, session: Session, tiers: Sequence[str] = ()) -> TierSizes:
    """Return `dimension`'s tier sizes now (after the latest run); empty before any run."""
    found = all_tier_sizes(session=session, tiers={dimension: tiers})
    return found.get(dimension) or TierSizes(
        dimension, None, None, tuple(TierSize(t, 0) for t in tiers)
    )


@dataclass(frozen=True)
class SizeSeries:
    """A dimension's tier sizes at the end of each local day (carried over days without runs)."""

    dimension: str
    days: tuple[date, ...]
    tiers: tuple[str, ...]
    sizes: dict[str, tuple[int, ...]]  # tier -> one size per day


def size_series(
    dimension: str,
    *,
    session: Session,
    today: date,
    days: int = 30,
    tiers: Sequence[str] = (),
) -> SizeSeries:
    """Return the last `days` days' sizes of `dimension`, ending `today` (0 before any run)."""
    if days < 1:
        raise ValueError("days must be >= 1")
    first = today - timedelta(days=days - 1)
    # The last day before the range carries into its first days.
    before = session.scalar(
        select(func.max(TierSizeDay.day)).where(
            TierSizeDay.dimension == dimension, TierSizeDay.day < first
        )
    )
    start = before or first
    rows = session.execute(
        select(TierSizeDay.day, TierSizeDay.tier, TierSizeDay.customers).where(
            TierSizeDay.dimension == dimension,
            TierSizeDay.day >= start,
            TierSizeDay.day <= today,
        )
    ).all()
    by_day: dict[date, dict[str, int]] = {}
    for d, tier, n in rows:
        by_day.setdefault(d, {})
        if tier != MEASURED:
            by_day[d][tier] = int(n)
    seen = {t for sizes in by_day.values() for t in sizes}
    names = tuple(tiers) + tuple(sorted(seen - set(tiers)))
    current: dict[str, int] = by_day.get(before, {}) if before is not None else {}
    axis = tuple(first + timedelta(days=i) for i in range(days))
    columns: dict[str, list[int]] = {t: [] for t in names}
    for d in axis:
        if d in by_day:
            current = by_day[d]
        for t in names:
            columns[t].append(current.get(t, 0))
    return SizeSeries(dimension, axis, names, {t: tuple(v) for t, v in columns.items()})


@dataclass(frozen=True)
class MoveCell:
    """Customers one run moved from one tier to another (None = 无, no tier)."""

    from_tier: str | None
    to_tier: str | None
    customers: int


@dataclass(frozen=True)
class MovementMatrix:
    """A run's from → to counts in one dimension, for the Sankey and the heatmap."""

    run_id: int | None
    dimension: str
    cells: tuple[MoveCell, ...]  # largest first

    @property
    def moved(self) -> int:
        return sum(c.customers for c in self.cells)

    def count(self, from_tier: str | None, to_tier: str | None) -> int:
        """Return the cell's count (0 for a pair nobody moved between)."""
        return next(
            (c.customers for c in self.cells if (c.from_tier, c.to_tier) == (from_tier, to_tier)),
            0,
        )


def latest_run_id(*, session: Session, scope: str | None = "full") -> int | None:
    """Return the latest finished run's id (of `scope` "full"/"touched"; None: either)."""
    query = select(func.max(RetierRun.id)).where(RetierRun.finished_at.is_not(None))
    if scope is not None:
        query = query.where(RetierRun.scope == scope)
    found = session.scalar(query)
    return None if found is None else int(found)


def movement_matrix(run_id: int | None, dimension: str, *, session: Session) -> MovementMatrix:
    """Return a run's moves in `dimension` (run_id None: the latest full run's)."""
    if run_id is None:
        run_id = latest_run_id(session=session)
        if run_id is None:
            return MovementMatrix(None, dimension, ())
    rows = session.execute(
        select(TierRunMove.from_tier, TierRunMove.to_tier, TierRunMove.customers)
        .where(TierRunMove.run_id == run_id, TierRunMove.dimension == dimension)
        .order_by(
            TierRunMove.customers.desc(),
            TierRunMove.from_tier.nulls_first(),
            TierRunMove.to_tier.nulls_first(),
        )
    ).all()
    return MovementMatrix(run_id, dimension, tuple(MoveCell(f, t, int(n)) for f, t, n in rows))


@dataclass(frozen=True)
class RunSummary:
    """One re-tier run as the console shows it."""

    run_id: int
    scope: str  # full | touched
    as_of: datetime | None
    started_at: datetime
    finished_at: datetime | None  # None: running, or cut short
    customers: int
    transitions: int
    changed_customers: int  # 变动客户
    operations: int  # relations to mark, at most

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class PushProgress:
    """The outbox since the last full run finished: its push, and what queued after it.

    Counted over the operation ids after the run's `outbox_from` (the push's range), from
    the outbox's tallies (bot/tags/tallies.py), never over the push's operations.
    """

    queued: int  # pending and in flight
    sent: int
    failed: int  # dead letters
    per_minute: float  # operations sent per minute over the last push.RATE_WINDOW
    eta_seconds: float | None  # None: nothing sent lately to estimate by

    @property
    def total(self) -> int:
        return self.queued + self.sent + self.failed


def push_progress(
    *,
    session: Session,
    since_id: int | None,
    now: datetime | None = None,
    outbox: OutboxCounts | None = None,
) -> PushProgress:
    """Count the outbox operations after `since_id` by status, with the recent rate.

    The range's statuses come from `outbox` (read with the page's queue depths) or are
    read here; the rate reads `ix_outbox_operations_status_done` over RATE_WINDOW only.
    """
    op = OutboxOperation
    recent = (now or utcnow()) - push.RATE_WINDOW
    since = since_id or 0
    if outbox is None or outbox.push_from != since:
        outbox = operations.outbox_counts(session=session, push_from=since)
    s = OutboxStatus
    queued = outbox.push[s.PENDING] + outbox.push[s.IN_FLIGHT]
    dead = outbox.push[s.DEAD]
    sent = outbox.push[s.DONE]
    lately = int(
        session.scalar(
            select(func.count())
            .select_from(op)
            .where(op.status == s.DONE, op.done_at >= recent, op.id > since)
        )
        or 0
    )
    per_minute = lately / (push.RATE_WINDOW.total_seconds() / 60)
    eta = 0.0 if not queued else (queued / per_minute * 60 if per_minute else None)
    return PushProgress(queued, sent, dead, per_minute, eta)


@dataclass(frozen=True)
class LastRuns:
    """The latest run of any scope, the latest full run, and the push since it."""

    last: RunSummary | None
    last_full: RunSummary | None
    push: PushProgress
    outbox: OutboxCounts  # the push's range by status and the open operations


def _summary(run: RetierRun | None) -> RunSummary | None:
    if run is None:
        return None
    return RunSummary(
        run.id,
        run.scope,
        run.as_of,
        run.started_at,
        run.finished_at,
        run.customers,
        run.transitions,
        run.changed_customers,
        run.operations,
    )


def last_run_summary(*, session: Session) -> LastRuns:
    """Return the latest runs (None before any) and the push since the last full run."""
    last = session.scalars(select(RetierRun).order_by(RetierRun.id.desc()).limit(1)).first()
    full = session.scalars(
        select(RetierRun).where(RetierRun.scope == "full").order_by(RetierRun.id.desc()).limit(1)
    ).first()
    since = None if full is None else full.outbox_from
    outbox = operations.outbox_counts(session=session, push_from=since or 0)
    progress = push_progress(session=session, since_id=since, outbox=outbox)
    return LastRuns(_summary(last), _summary(full), progress, outbox)
