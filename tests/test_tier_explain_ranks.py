"""A kept engine's ranks (by binary search in its sorted population) are brute-force counts.

An explanation or a touched run replaces its customers' rows in the kept population and
ranks them there. Whatever the changes between requests — a buyer buys more, one stops
being a buyer, a new buyer appears, the same customer changes again — each answer's R/M
scores, spend and clv percentiles must be what counting over that population gives, on
SQLite and PostgreSQL, also when the engine sorts anew (more replaced customers than it
keeps beside the sorted values).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import Customer, Order
from bot.rules import load_dimensions
from bot.tiering import engine as engine_module
from bot.tiering.defaults import default_tiering
from bot.tiering.engine import EngineLimits, MetricsEngine
from bot.tiering.run import retier
from tests.tier_metrics_factory import AS_OF, TZ, customer, local, order

DIMS = load_dimensions(default_tiering().dimensions)
RANKED = ("spend_percentile_365d", "m_score", "r_score", "clv_percentile")


def _customers(s: Session) -> list[int]:
    """45 buyers on four spends and four recencies (ties everywhere), two lapsed, one never.

    30 of the buyers buy again: enough for the predictive model's fit (clv_365d).
    """
    made = []
    for i in range(45):
        c = customer(s, f"wm_r{i}")
        for k in range(1 + i % 3):
            order(s, c, (300, 600, 600, 900)[i % 4], local(1 + 30 * (i % 4) + 5 * k))
        made.append(c.id)
    for i in range(2):
        c = customer(s, f"wm_lapsed{i}")
        order(s, c, 500, local(400 + i))
        made.append(c.id)
    made.append(customer(s, "wm_never").id)
    return made


def _expected(engine: MetricsEngine, cid: int) -> dict[str, Any]:
    """The ranked metrics counted over the engine's kept population, one row at a time."""
    rows = engine.con.execute(
        f"SELECT cid, fen_365d, last_ago, clv FROM {engine.catalog}.main.population"
    ).fetchall()
    mine = [r for r in rows if r[0] == cid]
    if not mine:
        return dict.fromkeys(RANKED)
    _, fen, ago, clv = mine[0]
    n = len(rows)
    k_m = sum(1 for r in rows if r[1] <= fen)
    k_r = sum(1 for r in rows if r[2] >= ago)
    with_clv = [r[3] for r in rows if r[3] is not None]
    k_c = sum(1 for v in with_clv if v <= clv) if clv is not None else None
    return {
        "spend_percentile_365d": 100.0 * k_m / n,
        "m_score": math.ceil(5 * k_m / n),
        "r_score": math.ceil(5 * k_r / n),
        "clv_percentile": None if k_c is None else 100.0 * k_c / len(with_clv),
    }


def _ranked(engine: MetricsEngine, ids: list[int]) -> dict[int, dict[str, Any]]:
    with engine.compute(as_of=AS_OF, customer_ids=ids, stale_ok=True) as frame:
        rows = frame.rows()
    return {cid: {k: rows.get(cid, {}).get(k) for k in RANKED} for cid in ids}


def _check(engine: MetricsEngine, ids: list[int]) -> None:
    got = _ranked(engine, ids)
    for cid in ids:
        expected = _expected(engine, cid)
        for name in RANKED:  # percentiles are floats: SQL's arithmetic against Python's
            want = expected[name]
            assert got[cid][name] == (want if want is None else pytest.approx(want)), (cid, name)


@pytest.mark.parametrize("max_replaced", [4096, 2])
def test_kept_ranks_are_brute_force_counts_through_changes(
    db: Database, monkeypatch: pytest.MonkeyPatch, max_replaced: int
) -> None:
    monkeypatch.setattr(engine_module, "MAX_REPLACED", max_replaced)
    with db.write() as s:
        ids = _customers(s)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)  # stores the population the engine loads
    engine = MetricsEngine(db, tz=TZ, limits=EngineLimits(threads=1))
    try:
        _check(engine, [ids[0]])
        with engine.compute(as_of=AS_OF, customer_ids=[ids[0]], stale_ok=True) as frame:
            values = frame.rows()[ids[0]]
        assert values["m_score"] is not None
        assert values["clv_percentile"] is not None  # the model scored the buyers

        def buy(i: int, yuan: int, days_ago: int) -> None:
            with db.write() as s:
                order(s, s.get_one(Customer, ids[i]), yuan, local(days_ago))

        buy(0, 900, 0)  # buys more, today
        _check(engine, [ids[0]])
        _check(engine, [ids[3]])  # another, ranked with ids[0]'s new row in the population
        buy(0, 300, 0)  # the same customer again
        _check(engine, [ids[0]])
        with db.write() as s:  # stops being a buyer: no ranks, and out of the others' n
            s.execute(delete(Order).where(Order.customer_id == ids[5]))
        _check(engine, [ids[5], ids[6]])
        buy(26, 600, 2)  # the one who never bought
        _check(engine, [ids[47]])
        buy(24, 600, 3)  # a lapsed buyer is back
        _check(engine, [ids[45], ids[46], ids[1], ids[2]])
        _check(engine, ids)  # everyone at once (a larger touched batch)
    finally:
        engine.close()
