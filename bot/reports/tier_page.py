"""The 分层 page of one dimension: rules as configured, sizes now and per day, a run's matrix.

Reads the per-run aggregates only (`tier_movement`), never orders or assignments: a few
dozen rows whatever the number of customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import RetierRun
from bot.reports import tier_movement
from bot.reports.tier_movement import MovementMatrix, SizeSeries, TierSizes
from bot.rules import Dimension, TagFromDimension

RUN_CHOICES = 30  # the latest runs offered for the from → to matrix
SERIES_DAYS = 30

# The eight RFM segments of the default plan (default_tiers.toml), by (R, F, M) high/low.
RFM_SEGMENTS: dict[tuple[bool, bool, bool], str] = {
    (True, True, True): "重要价值",
    (True, False, True): "重要发展",
    (False, True, True): "重要保持",
    (False, False, True): "重要挽留",
    (True, True, False): "一般价值",
    (True, False, False): "一般发展",
    (False, True, False): "一般保持",
    (False, False, False): "一般挽留",
}


@dataclass(frozen=True)
class TierRule:
    """One tier as configured: its tag, its `when` and its `stay` text."""

    tag: str
    when: str
    stay: str | None


@dataclass(frozen=True)
class DimensionRules:
    """A dimension's configuration, read-only, as the page lists it."""

    name: str
    tag_group: str
    min_dwell_days: int
    tiers: tuple[TierRule, ...]  # empty for a tag_from dimension
    tag_from: str | None
    max_tags: int | None

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(t.tag for t in self.tiers)


def dimension_rules(dim: Dimension) -> DimensionRules:
    """Return a dimension's rules as text, in config order."""
    if isinstance(dim, TagFromDimension):
        return DimensionRules(dim.name, dim.tag_group, 0, (), dim.source.name, dim.max_tags)
    tiers = tuple(TierRule(t.tag, t.when_text, t.stay_text) for t in dim.tiers)
    return DimensionRules(dim.name, dim.tag_group, dim.min_dwell_days, tiers, None, None)


@dataclass(frozen=True)
class RunChoice:
    """A finished run to pick for the matrix."""

    run_id: int
    scope: str
    as_of: datetime | None
    finished_at: datetime


def recent_runs(*, session: Session, limit: int = RUN_CHOICES) -> tuple[RunChoice, ...]:
    """Return the latest finished, recorded runs, newest first."""
    rows = session.execute(
        select(RetierRun.id, RetierRun.scope, RetierRun.as_of, RetierRun.finished_at)
        .where(RetierRun.finished_at.is_not(None), RetierRun.dry_run.is_(False))
        .order_by(RetierRun.id.desc())
        .limit(limit)
    ).all()
    return tuple(RunChoice(int(i), s, a, f) for i, s, a, f in rows if f is not None)


@dataclass(frozen=True)
class RfmCell:
    """One of the eight RFM segments and its size."""

    segment: str
    recent: bool  # R high
    frequent: bool  # F high
    monetary: bool  # M high
    customers: int


def rfm_grid(rules: DimensionRules, sizes: TierSizes) -> tuple[RfmCell, ...] | None:
    """Return the 8-segment grid when the dimension holds the RFM segments, else None.

    Rows are M high (重要) then low (一般); columns R/F high-high, high-low, low-high, low-low.
    """
    if set(RFM_SEGMENTS.values()) - set(rules.tags):
        return None
    order = [(m, r, f) for m in (True, False) for r, f in ((1, 1), (1, 0), (0, 1), (0, 0))]
    return tuple(
        RfmCell(
            RFM_SEGMENTS[(bool(r), bool(f), m)],
            bool(r),
            bool(f),
            m,
            sizes.of(RFM_SEGMENTS[(bool(r), bool(f), m)]),
        )
        for m, r, f in order
    )


@dataclass(frozen=True)
class TierPage:
    """Everything the page shows for one dimension."""

    rules: DimensionRules
    sizes: TierSizes
    series: SizeSeries
    runs: tuple[RunChoice, ...]
    run: RunChoice | None  # the run whose matrix is shown
    matrix: MovementMatrix
    rfm: tuple[RfmCell, ...] | None

    @property
    def matrix_tiers(self) -> tuple[str | None, ...]:
        """Return the matrix's axis: 无 (None), then the tiers in config order, then others."""
        known = [s.tier for s in self.sizes.sizes]
        extra = {c.from_tier for c in self.matrix.cells} | {c.to_tier for c in self.matrix.cells}
        rest = sorted(t for t in extra if t is not None and t not in known)
        return (None, *known, *rest)


def tier_page(
    dim: Dimension, *, session: Session, today: date, run_id: int | None = None
) -> TierPage:
    """Return one dimension's page; `run_id` picks the matrix's run (default the latest)."""
    rules = dimension_rules(dim)
    sizes = tier_movement.tier_sizes(dim.name, session=session, tiers=rules.tags)
    series = tier_movement.size_series(
        dim.name, session=session, today=today, days=SERIES_DAYS, tiers=rules.tags
    )
    runs = recent_runs(session=session)
    run = next((r for r in runs if r.run_id == run_id), None) if run_id is not None else None
    if run is None and runs:
        full = next((r for r in runs if r.scope == "full"), None)
        run = full or runs[0]
    matrix = (
        tier_movement.movement_matrix(run.run_id, dim.name, session=session)
        if run is not None
        else MovementMatrix(None, dim.name, ())
    )
    return TierPage(rules, sizes, series, runs, run, matrix, rfm_grid(rules, sizes))
