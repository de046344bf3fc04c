"""Per-run tier aggregates: sizes and moves written as a run finishes, read by the console."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.config import DimensionSettings
from bot.db import Database
from bot.db.models import (
    Customer,
    OutboxOperation,
    RetierRun,
    TierAssignment,
    TierRunMove,
    TierSizeDay,
    TierTransition,
)
from bot.db.types import utcnow
from bot.reports import tier_movement
from bot.rules import load_dimensions
from bot.tiering import history
from bot.tiering.run import retier
from tests.support.tiers import ACTIVITY, VALUE
from tests.tier_metrics_factory import AS_OF, TZ, D, customer, event, local, order

DIMS = load_dimensions([DimensionSettings.model_validate(d) for d in (VALUE, ACTIVITY)])
VALUE_TIERS = ["高价值", "中价值", "低价值"]


def _build(db: Database) -> dict[str, int]:
    """Seven customers: 2 高价值, 1 中价值, 3 低价值, 1 with no order; 2 活跃."""
    spends = {"h1": 6000, "h2": 5000, "m1": 2000, "l1": 100, "l2": 50, "l3": 10}
    with db.write() as s:
        ids = {}
        for ext, yuan in spends.items():
            c = customer(s, ext)
            order(s, c, yuan, local(10))
            ids[ext] = c.id
        c = customer(s, "n1")
        ids["n1"] = c.id
        for ext in ("h1", "n1"):
            for day in range(3):
                event(s, s.get(Customer, ids[ext]) or c, "view", local(day))
    return ids


def _assigned(s: Session) -> dict[tuple[str, str], int]:
    rows = s.execute(
        select(TierAssignment.dimension, TierAssignment.tier, func.count()).group_by(
            TierAssignment.dimension, TierAssignment.tier
        )
    ).all()
    return {(d, t): int(n) for d, t, n in rows}


def _stored(s: Session) -> dict[tuple[str, str], int]:
    sizes = tier_movement.all_tier_sizes(session=s)
    return {(d, x.tier): x.customers for d, ts in sizes.items() for x in ts.sizes if x.customers}


def _transitions(s: Session, run_id: int, dim: str) -> dict[tuple[str | None, str | None], int]:
    rows = s.execute(
        select(TierTransition.from_tier, TierTransition.to_tier, func.count())
        .where(TierTransition.run_id == run_id, TierTransition.dimension == dim)
        .group_by(TierTransition.from_tier, TierTransition.to_tier)
    ).all()
    return {(f, t): int(n) for f, t, n in rows}


def test_full_run_writes_sizes_and_moves(db: Database) -> None:
    _build(db)
    report = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    assert report.run_id is not None
    with db.read() as s:
        value = tier_movement.tier_sizes("value", session=s, tiers=VALUE_TIERS)
        assert value.run_id == report.run_id
        assert value.day == D
        assert [(x.tier, x.customers) for x in value.sizes] == [
            ("高价值", 2),
            ("中价值", 1),
            ("低价值", 3),
        ]
        assert tier_movement.tier_sizes("activity", session=s).of("活跃") == 2
        assert _stored(s) == _assigned(s)
        matrix = tier_movement.movement_matrix(None, "value", session=s)
        assert matrix.run_id == report.run_id
        assert {(c.from_tier, c.to_tier): c.customers for c in matrix.cells} == _transitions(
            s, report.run_id, "value"
        )
        assert matrix.count(None, "低价值") == 3
        assert matrix.moved == 6
        assert [c.customers for c in matrix.cells] == [3, 2, 1]  # largest first


def test_touched_run_keeps_sizes_exact(db: Database) -> None:
    ids = _build(db)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    later = AS_OF + timedelta(hours=1)
    with db.write() as s:
        order(s, s.get(Customer, ids["l1"]) or Customer(), 9000, later - timedelta(minutes=5))
        order(s, s.get(Customer, ids["n1"]) or Customer(), 20, later - timedelta(minutes=5))
        gone = customer(s, "late")  # tiered by nobody yet: a touched run finds it
        order(s, gone, 1500, later - timedelta(minutes=5))
        ids["late"] = gone.id
    report = retier(db, DIMS, tz=TZ, as_of=later, customer_ids=[ids["l1"], ids["n1"], ids["late"]])
    assert report.scope == "touched"
    assert report.run_id is not None
    with db.read() as s:
        value = tier_movement.tier_sizes("value", session=s, tiers=VALUE_TIERS)
        assert value.run_id == report.run_id
        # l1 低→高, n1 无→低, late 无→中
        assert [(x.tier, x.customers) for x in value.sizes] == [
            ("高价值", 3),
            ("中价值", 2),
            ("低价值", 3),
        ]
        assert _stored(s) == _assigned(s)
        matrix = tier_movement.movement_matrix(report.run_id, "value", session=s)
        assert {(c.from_tier, c.to_tier): c.customers for c in matrix.cells} == {
            ("低价值", "高价值"): 1,
            (None, "低价值"): 1,
            (None, "中价值"): 1,
        }
        # The latest full run's matrix is still the first run's.
        assert tier_movement.movement_matrix(None, "value", session=s).moved == 6


def test_touched_run_after_a_run_cut_short_counts_again(db: Database) -> None:
    ids = _build(db)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    # A run that wrote a chunk and died before finishing: its sizes were never written.
    history.start_run(db, as_of=AS_OF, scope="full")
    with db.write() as s:
        row = s.scalars(
            select(TierAssignment).where(
                TierAssignment.customer_id == ids["m1"], TierAssignment.dimension == "value"
            )
        ).one()
        row.tier = "高价值"
    report = retier(db, DIMS, tz=TZ, as_of=AS_OF, customer_ids=[ids["l2"]])
    assert report.transitions == 0
    with db.read() as s:
        assert tier_movement.tier_sizes("value", session=s).of("高价值") == 3
        assert _stored(s) == _assigned(s)


def test_sizes_per_day_carry_over_days_without_runs(db: Database) -> None:
    ids = _build(db)
    retier(db, DIMS, tz=TZ, as_of=AS_OF - timedelta(days=2))
    with db.write() as s:
        order(s, s.get(Customer, ids["l2"]) or Customer(), 8000, AS_OF - timedelta(hours=1))
    retier(db, DIMS, tz=TZ, as_of=AS_OF, customer_ids=[ids["l2"]])
    with db.read() as s:
        series = tier_movement.size_series("value", session=s, today=D, days=4, tiers=VALUE_TIERS)
        assert series.days == tuple(D - timedelta(days=i) for i in (3, 2, 1, 0))
        assert series.sizes["高价值"] == (0, 2, 2, 3)
        assert series.sizes["低价值"] == (0, 3, 3, 2)
        # Two days of runs: each day keeps its last run's sizes.
        assert s.scalar(select(func.count(func.distinct(TierSizeDay.day)))) == 2


def test_dry_run_writes_no_aggregates(db: Database) -> None:
    _build(db)
    retier(db, DIMS, tz=TZ, as_of=AS_OF, dry_run=True)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(TierSizeDay)) == 0
        assert s.scalar(select(func.count()).select_from(TierRunMove)) == 0


def test_fresh_install_gives_empty_results(db: Database) -> None:
    with db.read() as s:
        sizes = tier_movement.tier_sizes("value", session=s, tiers=VALUE_TIERS)
        assert sizes.run_id is None
        assert sizes.total == 0
        assert [x.customers for x in sizes.sizes] == [0, 0, 0]
        assert tier_movement.all_tier_sizes(session=s) == {}
        series = tier_movement.size_series("value", session=s, today=D, days=7)
        assert len(series.days) == 7
        assert series.sizes == {}
        matrix = tier_movement.movement_matrix(None, "value", session=s)
        assert matrix.run_id is None
        assert matrix.cells == ()
        runs = tier_movement.last_run_summary(session=s)
        assert runs.last is None
        assert runs.last_full is None
        assert (runs.push.queued, runs.push.sent, runs.push.failed) == (0, 0, 0)
        assert runs.push.eta_seconds == 0.0


def test_last_run_summary(db: Database) -> None:
    ids = _build(db)
    full = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    touched = retier(db, DIMS, tz=TZ, as_of=AS_OF, customer_ids=[ids["l1"]])
    with db.read() as s:
        runs = tier_movement.last_run_summary(session=s)
    assert runs.last is not None
    assert runs.last_full is not None
    assert runs.last.run_id == touched.run_id
    assert runs.last.scope == "touched"
    assert runs.last_full.run_id == full.run_id
    assert runs.last_full.customers == 7
    assert runs.last_full.transitions == full.transitions
    assert runs.last_full.changed_customers == full.changed_customers
    assert runs.last_full.seconds is not None
    assert runs.last_full.seconds >= 0


def test_push_progress_counts_the_operations_after_the_last_full_run(db: Database) -> None:
    _build(db)
    now = utcnow()
    with db.write() as s:  # before the run: an old push, not this run's
        for status in ("done", "done", "pending", "dead"):
            s.add(OutboxOperation(kind="mark_tag", status=status))
    report = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    with db.write() as s:
        before = s.scalar(select(func.max(OutboxOperation.id)))
        run = s.get(RetierRun, report.run_id)
        assert run is not None
        assert run.outbox_from == before
        for status, done_at in [
            ("pending", None),
            ("pending", None),
            ("in_flight", None),
            ("done", now - timedelta(minutes=1)),
            ("done", now - timedelta(minutes=2)),
            ("done", now - timedelta(hours=1)),
            ("dead", None),
        ]:
            s.add(OutboxOperation(kind="mark_tag", status=status, done_at=done_at))
    with db.read() as s:
        runs = tier_movement.last_run_summary(session=s)
        idle = tier_movement.push_progress(session=s, since_id=None, now=now + timedelta(hours=2))
    p = runs.push
    assert (p.queued, p.sent, p.failed, p.total) == (3, 3, 1, 7)
    assert p.per_minute == 2 / 5
    assert p.eta_seconds == 3 / (2 / 5) * 60
    assert (idle.queued, idle.sent, idle.failed) == (4, 5, 2)
    assert idle.eta_seconds is None  # nothing sent lately: no estimate


def test_a_dimension_back_in_config_is_counted_by_a_touched_run(db: Database) -> None:
    ids = _build(db)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    retier(db, DIMS[:1], tz=TZ, as_of=AS_OF)  # activity out of config: its tiers stay
    retier(db, DIMS, tz=TZ, as_of=AS_OF, customer_ids=[ids["l1"]])  # and back
    with db.read() as s:
        sizes = tier_movement.all_tier_sizes(session=s)
        assert sizes["activity"].of("活跃") == 2
        assert sizes["value"].total == 6
        assert _stored(s) == _assigned(s)
