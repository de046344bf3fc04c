"""The rank population a full run stores: written by real runs only, used on its day and zone."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from bot.db import Database
from bot.db.models import Customer, Order, TierPopulation
from bot.tiering import population
from bot.tiering.defaults import default_tiering
from bot.tiering.engine import MetricsEngine
from bot.tiering.rules import load_dimensions
from bot.tiering.run import retier
from bot.tiering.source import FULL_SNAPSHOT
from tests.support.snapshots import attached_path
from tests.tier_metrics_factory import AS_OF, TZ, D, customer, local, order, profile

DIMS = load_dimensions(default_tiering().dimensions)


def _buyers(db: Database) -> dict[str, int]:
    """Five customers: three window buyers (two tied), one lapsed, one refunded; their ids."""
    with db.write() as s:
        a, b, c = customer(s, "a"), customer(s, "b"), customer(s, "c")
        order(s, a, 100, local(3))
        order(s, a, "50.5", local(10))
        order(s, b, 200, local(3))
        order(s, c, 200, local(40))
        old, refunded = customer(s, "old"), customer(s, "refunded")
        order(s, old, 900, local(400))  # outside the 365-day window
        order(s, refunded, 900, local(1), status="refunded")
        profile(s, a, "会员等级", "L1")
        return {x.external_userid: x.id for x in (a, b, c, old, refunded)}


def _stored_rows(db: Database) -> set[tuple[int, int, int]]:
    with db.read() as s:
        rows = s.execute(
            select(
                TierPopulation.customer_id,
                TierPopulation.spend_365d,
                TierPopulation.days_since_last_order,
            )
        ).all()
    return {(int(c), int(f), int(d)) for c, f, d in rows}


def test_a_full_run_stores_its_population_and_a_dry_run_does_not(db: Database) -> None:
    ids = _buyers(db)
    retier(db, DIMS, tz=TZ, as_of=AS_OF, dry_run=True)
    assert population.stored(db) is None
    assert _stored_rows(db) == set()

    run = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    assert population.stored(db) == population.Stored(run.run_id or 0, D, TZ, ["会员等级"])
    assert _stored_rows(db) == {(ids["a"], 15050, 3), (ids["b"], 20000, 3), (ids["c"], 20000, 40)}

    # A touched run leaves it; the next day's full run replaces it.
    retier(db, DIMS, tz=TZ, as_of=AS_OF, customer_ids=[ids["a"]])
    assert population.stored(db) == population.Stored(run.run_id or 0, D, TZ, ["会员等级"])
    nxt = retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=1))
    stored = population.stored(db)
    assert stored is not None
    assert (stored.run_id, stored.as_of_day) == (nxt.run_id, D + timedelta(days=1))
    assert _stored_rows(db) == {(ids["a"], 15050, 4), (ids["b"], 20000, 4), (ids["c"], 20000, 41)}

    # A dry run the day after keeps the real run's.
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=2), dry_run=True)
    assert population.stored(db) == stored


def test_a_population_of_another_day_or_zone_is_not_used(db: Database) -> None:
    ids = _buyers(db)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    # b and c's orders go: a population built now holds a alone, the stored one all three.
    with db.write() as s:
        s.execute(delete(Order).where(Order.customer_id.in_([ids["b"], ids["c"]])))
        assert s.get(Customer, ids["a"]) is not None
    for tz, as_of in (
        (TZ, AS_OF + timedelta(days=1)),  # the next local day
        ("Europe/Berlin", AS_OF),  # the same date (06:00 in Berlin), another zone
    ):
        with MetricsEngine(db, tz=tz) as fresh, fresh.compute(as_of=as_of) as full:
            expected = full.rows([ids["a"]])
        with (
            MetricsEngine(db, tz=tz) as new,
            new.compute(as_of=as_of, customer_ids=[ids["a"]]) as part,
        ):
            if db.is_sqlite:  # the population is built from every order: the whole file
                assert attached_path(new).name == FULL_SNAPSHOT
            got = part.rows()
        assert got == expected
        assert got[ids["a"]]["spend_percentile_365d"] == 100.0  # a alone, not one of three
