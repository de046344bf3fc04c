"""Explanations from a serving process's kept engine give what a one-shot one gives.

The kept engine ranks against a population built once per day; the answer must match a
fresh computation (and the stored tiers of a run at the same as_of), also after one
customer's data changed. On the day of a full run both rank against the population that run
stored, so a one-shot explanation needs no pass over everyone's orders.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import Customer, Order
from bot.rules import load_dimensions
from bot.tiering.defaults import default_tiering
from bot.tiering.run import retier
from bot.tiering.why import ExplainEngine, TierView, explain_customer
from tests.tier_metrics_factory import AS_OF, TZ, customer, local, order

DIMS = load_dimensions(default_tiering().dimensions)


def _customers(s: Session) -> list[Customer]:
    """Spends spread over every quintile, with ties, recency from 1 to 400 days."""
    made = []
    for i in range(12):
        c = customer(s, f"wm_x{i}")
        for k in range(1 + i % 4):
            order(s, c, 300 * (1 + i // 2), local(1 + 35 * i + 7 * k))
        made.append(c)
    made.append(customer(s, "wm_never"))  # no orders: no ranks
    return made


def _explain(db: Database, cid: int, engine: ExplainEngine | None) -> list[TierView]:
    return explain_customer(db, DIMS, customer_id=cid, tz=TZ, as_of=AS_OF, engine=engine)


def test_kept_engine_explains_as_a_fresh_computation_and_as_the_run(db: Database) -> None:
    with db.write() as s:
        ids = [c.id for c in _customers(s)]
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    kept = ExplainEngine()
    try:
        for cid in ids:
            views = _explain(db, cid, kept)
            assert views == _explain(db, cid, None)
            assert [v.now for v in views] == [v.tier for v in views]
        ranked = _explain(db, ids[5], kept)
        rfm = next(v for v in ranked if "r_score" in v.metrics)
        assert rfm.metrics["r_score"] is not None
        assert rfm.metrics["m_score"] is not None

        # Customer 0 buys big: the kept engine ranks its new values, as a fresh pass does.
        with db.write() as s:
            order(s, s.get(Customer, ids[0]), 9000, local(0, 8))
        changed = _explain(db, ids[0], kept)
        assert changed == _explain(db, ids[0], None)
        value = next(v for v in changed if v.dimension == "value")
        assert value.now == "高价值"
        assert value.tier != "高价值"
    finally:
        kept.close()


def test_on_a_full_runs_day_an_explanation_ranks_against_the_stored_population(
    db: Database,
) -> None:
    with db.write() as s:
        ids = [c.id for c in _customers(s)]
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    before = _explain(db, ids[5], None)
    assert [v.now for v in before] == [v.tier for v in before]
    # Everyone else's orders go: a pass over the orders would rank ids[5] first of one.
    with db.write() as s:
        s.execute(delete(Order).where(Order.customer_id != ids[5]))
    kept = ExplainEngine()
    try:
        assert _explain(db, ids[5], None) == before  # `tagbot customer show`, one process
        assert _explain(db, ids[5], kept) == before  # a serving process
    finally:
        kept.close()
    rfm = next(v for v in before if "m_score" in v.metrics)
    assert rfm.metrics["m_score"] < 5


def test_an_explanation_is_one_duckdb_transaction_on_one_thread(db: Database) -> None:
    """Its ~40 statements commit once (each commit syncs the engine file's WAL), and one
    thread computes one customer in less time and CPU than two."""
    with db.write() as s:
        ids = [c.id for c in _customers(s)]
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    kept = ExplainEngine(background=False)
    try:
        for n, cid in enumerate(ids[:4], start=1):
            assert _explain(db, cid, kept) == _explain(db, cid, None)
            assert kept.transactions == n
        assert kept.threads == 1
        assert kept.request_builds == 0
    finally:
        kept.close()
