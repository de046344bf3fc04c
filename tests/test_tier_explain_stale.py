"""An explanation on a day no population is stored for ranks against the newest stored one.

Between local midnight and the nightly run (or after a failed run) the day's rank
population would be a pass over every order: a request never makes it. It ranks against
the last run's stored population, says which day's 客户总体 that is, and a serving process
builds the day's once in the background, then answers from it. Builds are counted.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import Customer, Order
from bot.rules import load_dimensions
from bot.tiering.defaults import default_tiering
from bot.tiering.engine import compute_metrics
from bot.tiering.run import retier
from bot.tiering.why import RANKED, ExplainEngine, TierView, explain_customer
from tests.tier_metrics_factory import AS_OF, TZ, D, customer, local, order

DIMS = load_dimensions(default_tiering().dimensions)
LATER = AS_OF + timedelta(days=3)  # three local days after the run's
NOTE = f"按 {D:%Y-%m-%d} 的客户总体排名（今天的客户总体尚未生成）"


def _customers(s: Session) -> list[int]:
    """Spends spread over every quintile, with ties."""
    made = []
    for i in range(12):
        c = customer(s, f"wm_s{i}")
        for k in range(1 + i % 4):
            order(s, c, 300 * (1 + i // 2), local(1 + 20 * i + 7 * k))
        made.append(c)
    s.flush()
    return [c.id for c in made]


def _explain(db: Database, cid: int, engine: ExplainEngine | None) -> list[TierView]:
    return explain_customer(db, DIMS, customer_id=cid, tz=TZ, as_of=LATER, engine=engine)


def _ranked(views: list[TierView]) -> list[TierView]:
    return [v for v in views if set(v.metrics) & RANKED]


def _alone_after_the_run(db: Database) -> int:
    """Run on D, then delete everyone else's orders: a build on LATER ranks them alone."""
    with db.write() as s:
        ids = _customers(s)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    cid = ids[5]
    with db.write() as s:
        s.execute(delete(Order).where(Order.customer_id != cid))
    return cid


def test_without_the_days_population_it_ranks_against_the_stored_one_and_says_so(
    db: Database,
) -> None:
    cid = _alone_after_the_run(db)
    one_shot = _explain(db, cid, None)  # `tagbot customer show`
    ranked = _ranked(one_shot)
    assert {v.dimension for v in ranked} >= {"rfm"}
    for view in ranked:
        assert view.rank_note.endswith(NOTE)
        assert f"  {view.rank_note}" in view.lines
    assert all(v.rank_note == "" for v in one_shot if v not in ranked)
    rfm = next(v for v in ranked if v.dimension == "rfm")
    assert rfm.metrics["m_score"] < 5  # among the run's buyers, not first of one

    kept = ExplainEngine(background=False)
    try:
        assert _explain(db, cid, kept) == one_shot
        assert _explain(db, cid, kept) == one_shot
        assert (kept.request_builds, kept.background_builds) == (0, 0)
    finally:
        kept.close()


def test_a_serving_process_builds_the_days_population_once_in_the_background(
    db: Database,
) -> None:
    cid = _alone_after_the_run(db)
    stale = _explain(db, cid, None)
    kept = ExplainEngine()
    try:
        assert _explain(db, cid, kept) == stale  # answered before any build
        assert kept.wait(120)
        assert (kept.request_builds, kept.background_builds) == (0, 1)
        assert kept.threads == 1  # built on the default threads, explains on one
        fresh = _explain(db, cid, kept)
        assert kept.transactions == 2
        assert all(v.rank_note == "" for v in fresh)
        rfm = next(v for v in fresh if v.dimension == "rfm")
        assert rfm.metrics["m_score"] == 5  # the day's own population: first of one
        with compute_metrics(db, as_of=LATER, tz=TZ, customer_ids=[cid]) as frame:
            exact = frame.rows()[cid]
        for view in fresh:
            assert view.metrics == {n: exact.get(n) for n in view.metrics}
        with db.write() as s:
            order(s, s.get(Customer, cid), 50, LATER - timedelta(hours=1))
        _explain(db, cid, kept)
        assert kept.wait(10)
        assert (kept.request_builds, kept.background_builds) == (0, 1)
    finally:
        kept.close()


def test_once_the_days_run_stored_its_population_the_next_explanation_uses_it(
    db: Database,
) -> None:
    cid = _alone_after_the_run(db)
    kept = ExplainEngine(background=False)
    try:
        assert all(v.rank_note.endswith(NOTE) for v in _ranked(_explain(db, cid, kept)))
        retier(db, DIMS, tz=TZ, as_of=LATER)
        after = _explain(db, cid, kept)
        assert all(v.rank_note == "" for v in after)
        assert [v.now for v in after] == [v.tier for v in after]
        assert kept.request_builds == 0
    finally:
        kept.close()
