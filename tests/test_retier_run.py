"""The re-tier run end to end: default dimensions at their thresholds, hysteresis, history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import Base, Customer, RetierRun, TierAssignment, TierTransition
from bot.rules import Dimension, load_dimensions
from bot.tiering.defaults import default_tiering
from bot.tiering.run import retier
from tests.tier_metrics_factory import (
    AS_OF,
    TZ,
    channel,
    customer,
    event,
    local,
    order,
    profile,
    relation,
    staff,
)

DIMS: tuple[Dimension, ...] = load_dimensions(default_tiering().dimensions)

Build = Callable[[Session, Customer], None]


def _orders(*pairs: tuple[int | str, int], **kw: Any) -> Build:
    def build(s: Session, c: Customer) -> None:
        for yuan, ago in pairs:
            order(s, c, yuan, local(ago), **kw)

    return build


def _events(kind: str, *agos: int) -> Build:
    def build(s: Session, c: Customer) -> None:
        for ago in agos:
            event(s, c, kind, local(ago))

    return build


def _added(ago: int, ch: str | None = None) -> Build:
    def build(s: Session, c: Customer) -> None:
        chan = channel(s, ch) if ch else None
        relation(s, c, staff(s, f"u{c.id}"), added=local(ago), ch=chan)

    return build


def _all(*builds: Build) -> Build:
    def build(s: Session, c: Customer) -> None:
        for b in builds:
            b(s, c)

    return build


# (case, data, {dimension: expected tier}) — only the listed dimensions are checked.
CASES: list[tuple[str, Build, dict[str, str | None]]] = [
    ("spend 5000", _orders((5000, 10)), {"value": "高价值"}),
    ("spend 4999.99", _orders(("4999.99", 10)), {"value": "中价值"}),
    ("spend 1000", _orders((1000, 10)), {"value": "中价值"}),
    ("spend 999.99", _orders(("999.99", 10)), {"value": "低价值", "behavior": None}),
    ("refunded only", _orders((6000, 10), status="refunded"), {"value": None}),
    ("order 366 days ago", _orders((6000, 366)), {"value": None, "lifecycle": "沉睡客户"}),
    ("never ordered", _added(5), {"value": None, "lifecycle": "潜在客户", "rfm": None}),
    ("10 interactions", _events("view", *range(10)), {"activity": "核心"}),
    ("9 interactions", _events("view", *range(9)), {"activity": "活跃"}),
    ("quiet, added 31 days", _added(31), {"activity": "沉睡"}),
    ("quiet, added 30 days", _added(30), {"activity": None}),
    ("first order 90 days", _orders((100, 90)), {"lifecycle": "新客户"}),
    ("first order 91 days", _orders((100, 91)), {"lifecycle": "老客户"}),
    (
        "4 orders in a year",
        _orders((100, 300), (100, 200), (100, 100), (100, 10)),
        {"lifecycle": "忠实客户", "behavior": "多次小额"},
    ),
    ("last order 181 days", _orders((100, 181)), {"lifecycle": "沉睡客户"}),
    ("one order 61 days", _orders((100, 61)), {"churn": "流失预警"}),
    ("one order 60 days", _orders((100, 60)), {"churn": None}),
    (
        "overdue twice the rhythm",
        _orders((100, 60), (100, 40)),
        {"churn": "流失预警"},
    ),
    ("overdue under twice", _orders((100, 59), (100, 39)), {"churn": None}),
    ("one big order 2000", _orders((2000, 5)), {"behavior": "单次高额"}),
    ("one order 1999", _orders((1999, 5)), {"behavior": None}),
    ("viewed, no order", _events("view", 3), {"behavior": "有意向未购买"}),
    (
        "new products",
        _orders((100, 20), (100, 10), new=True),
        {"preference": "新品偏好"},
    ),
    (
        "repeat category",
        _orders((100, 300), (100, 100), (100, 50), category="茶叶"),
        {"preference": "复购人群", "category": "茶叶"},
    ),
    ("channel", _added(3, "抖音直播"), {"channel": "抖音直播"}),
]


def _member_level(s: Session, c: Customer) -> None:
    profile(s, c, "会员等级", "金卡")


CASES.append(("member level", _member_level, {"member_level": "金卡"}))


def _assignments(db: Database) -> dict[tuple[str, str], str]:
    with db.read() as s:
        rows = s.execute(
            select(Customer.external_userid, TierAssignment.dimension, TierAssignment.tier).join(
                Customer, Customer.id == TierAssignment.customer_id
            )
        ).all()
    return {(ext, dim): tier for ext, dim, tier in rows}


def test_every_default_dimension_at_its_thresholds(db: Database) -> None:
    with db.write() as s:
        for i, (_, build, _) in enumerate(CASES):
            build(s, customer(s, f"case{i}"))
    report = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    got = _assignments(db)
    wrong = [
        (name, dim, got.get((f"case{i}", dim)), want)
        for i, (name, _, expected) in enumerate(CASES)
        for dim, want in expected.items()
        if got.get((f"case{i}", dim)) != want
    ]
    assert wrong == []
    assert report.customers == len(CASES)
    assert report.transitions == len(got)


def test_rfm_segments_rank_among_buyers(db: Database) -> None:
    with db.write() as s:
        best = customer(s, "best")
        order(s, best, 900, local(2))
        order(s, best, 900, local(1))
        for i in range(4):
            order(s, customer(s, f"low{i}"), 13 - i, local(200 + i))
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    got = _assignments(db)
    assert got[("best", "rfm")] == "重要价值"
    assert got[("low3", "rfm")] == "一般挽留"


def _counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def test_dry_run_writes_nothing_and_counts_the_moves(db: Database) -> None:
    with db.write() as s:
        c = customer(s, "vip")
        order(s, c, 6000, local(3))
        relation(s, c, staff(s, "zhang"), added=local(40))
        relation(s, c, staff(s, "li"), added=local(40))
    before = _counts(db)
    report = retier(db, DIMS, tz=TZ, as_of=AS_OF, dry_run=True)
    assert _counts(db) == before
    value = [(m.from_tier, m.to_tier, m.customers) for m in report.moves if m.dimension == "value"]
    assert value == [(None, "高价值", 1)]
    assert report.relations_to_mark == 2
    assert report.run_id is None


def test_transitions_keep_the_metric_values_and_a_rerun_changes_nothing(db: Database) -> None:
    with db.write() as s:
        order(s, customer(s, "a"), 1200, local(3))
    first = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    with db.read() as s:
        t = s.scalars(select(TierTransition).where(TierTransition.dimension == "value")).one()
        run = s.get(RetierRun, first.run_id)
    assert (t.from_tier, t.to_tier, t.run_id) == (None, "中价值", first.run_id)
    assert t.as_of == AS_OF
    assert t.metrics == {"spend_365d": 1200, "orders_365d": 1}
    assert run is not None
    assert run.finished_at is not None
    assert (run.transitions, run.scope, run.as_of) == (first.transitions, "full", AS_OF)
    before = _counts(db)
    again = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    assert (again.transitions, again.moves) == (0, [])
    after = _counts(db)
    assert after["retier_runs"] == before["retier_runs"] + 1
    assert {k: v for k, v in after.items() if k != "retier_runs"} == {
        k: v for k, v in before.items() if k != "retier_runs"
    }


def test_hysteresis_stay_and_dwell_over_moving_as_of(db: Database) -> None:
    with db.write() as s:
        c = customer(s, "h")
        order(s, c, 5000, local(0))
        cid = c.id
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    assert _assignments(db)[("h", "value")] == "高价值"

    def refund_to(yuan: int) -> None:
        with db.write() as s:
            s.execute(text("DELETE FROM orders WHERE customer_id = :c"), {"c": cid})
            order(s, s.get(Customer, cid), yuan, local(0))  # type: ignore[arg-type]

    # 4000 still satisfies stay: kept whatever the dwell.
    refund_to(4000)
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=2))
    assert _assignments(db)[("h", "value")] == "高价值"
    # Below stay on day 6 after entering: dwelling keeps it.
    refund_to(3999)
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=6))
    assert _assignments(db)[("h", "value")] == "高价值"
    # Day 7: leaves to the next tier whose rule holds; since = that run's as_of.
    seven = AS_OF + timedelta(days=7)
    retier(db, DIMS, tz=TZ, as_of=seven)
    with db.read() as s:
        a = s.scalars(
            select(TierAssignment).where(
                TierAssignment.customer_id == cid, TierAssignment.dimension == "value"
            )
        ).one()
        moves = s.execute(
            select(TierTransition.from_tier, TierTransition.to_tier)
            .where(TierTransition.customer_id == cid, TierTransition.dimension == "value")
            .order_by(TierTransition.id)
        ).all()
    assert (a.tier, a.since) == ("中价值", seven)
    assert [tuple(m) for m in moves] == [(None, "高价值"), ("高价值", "中价值")]
    # Moving up is immediate, dwell or not.
    refund_to(5000)
    retier(db, DIMS, tz=TZ, as_of=seven + timedelta(days=1))
    assert _assignments(db)[("h", "value")] == "高价值"


@pytest.mark.parametrize("gone", ["中价值"])
def test_a_customer_leaving_every_tier_loses_the_assignment(db: Database, gone: str) -> None:
    with db.write() as s:
        order(s, customer(s, "x"), 1000, local(360))
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    assert _assignments(db)[("x", "value")] == gone
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=30))
    assert ("x", "value") not in _assignments(db)
    with db.read() as s:
        last = s.scalars(
            select(TierTransition)
            .where(TierTransition.dimension == "value")
            .order_by(TierTransition.id.desc())
        ).first()
    assert last is not None
    assert (last.from_tier, last.to_tier) == (gone, None)


def test_a_touched_run_keeps_the_populations_tag_from_fold(db: Database) -> None:
    with db.write() as s:
        for i, cat in enumerate(["茶叶", "茶叶", "咖啡"]):
            order(s, customer(s, f"t{i}"), 100, local(5), category=cat)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    with db.write() as s:
        late = customer(s, "late")
        order(s, late, 100, local(1), category="咖啡")
        fresh = customer(s, "fresh")
        order(s, fresh, 100, local(1), category="果汁")
        ids = [late.id, fresh.id]
    report = retier(db, DIMS, tz=TZ, as_of=AS_OF, customer_ids=ids)
    got = _assignments(db)
    assert (got[("late", "category")], got[("fresh", "category")]) == ("咖啡", "果汁")
    assert report.scope == "touched"
    assert report.customers == 2
    assert ("t0", "category") in got  # others untouched
