"""The rank population a full run stores: written by real runs only, used on its day and zone."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from bot.db import Database
from bot.db.models import Customer, Order, TierPopulation
from bot.rules import load_dimensions
from bot.tiering import population
from bot.tiering.defaults import default_tiering
from bot.tiering.engine import MetricsEngine
from bot.tiering.run import retier
from bot.tiering.source import FULL_SNAPSHOT
from tests.support.snapshots import attached_path, copied_tables
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

    # A touched run without fresh data writes the same rows; the next day's full run replaces it.
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


def _spenders(db: Database) -> dict[str, int]:
    """x, y, z spend 100, 200, 300 yuan (y ranks between); w 50 yuan; their ids."""
    with db.write() as s:
        ids = {}
        for name, yuan, days in (("x", 100, 5), ("y", 200, 20), ("z", 300, 30), ("w", 50, 60)):
            c = customer(s, name)
            order(s, c, yuan, local(days))
            ids[name] = c.id
        return ids


def _touch_x_and_w(db: Database, ids: dict[str, int]) -> None:
    """x pays 1,000 yuan today (from below y to above z) and gains a new attribute; w's order goes."""
    with db.write() as s:
        x = s.get(Customer, ids["x"])
        assert x is not None
        order(s, x, 1000, local(0))
        profile(s, x, "新属性", "是")
        s.execute(delete(Order).where(Order.customer_id == ids["w"]))


def test_a_new_engine_after_a_touched_run_ranks_as_a_full_run_does(db: Database) -> None:
    ids = _spenders(db)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)  # the nightly run
    later = AS_OF + timedelta(hours=2)  # the same local day
    with MetricsEngine(db, tz=TZ) as a:  # the long-lived worker's engine
        _touch_x_and_w(db, ids)
        retier(db, DIMS, tz=TZ, as_of=later, customer_ids=[ids["x"], ids["w"]], engine=a)
        with a.compute(as_of=later, customer_ids=[ids["y"]]) as part:
            kept = part.rows()
    touched_rows, stored = _stored_rows(db), population.stored(db)

    with MetricsEngine(db, tz=TZ) as fresh, fresh.compute(as_of=later) as full:
        expected = full.rows([ids["y"]])
        names = full.profile_names
    assert expected[ids["y"]]["spend_percentile_365d"] != 100.0  # sanity: x now above y
    # A new engine (a restarted worker, `customer show`) loads the stored rows: y ranks
    # against x's new spend and without w, as in the engine that kept its population.
    with MetricsEngine(db, tz=TZ) as b, b.compute(as_of=later, customer_ids=[ids["y"]]) as part:
        if db.is_sqlite:
            assert "tier_population" in copied_tables(b)
        assert part.rows() == expected == kept
        assert part.profile_names == names
    assert stored is not None
    assert stored.profile_names == ["新属性"]
    # The rows are those a full run of the day stores.
    retier(db, DIMS, tz=TZ, as_of=later)
    assert touched_rows == _stored_rows(db)
    assert {c for c, _, _ in touched_rows} == {ids["x"], ids["y"], ids["z"]}


def test_a_dry_or_another_days_touched_run_leaves_the_stored_population(db: Database) -> None:
    ids = _spenders(db)
    run = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    before, state = _stored_rows(db), population.stored(db)
    assert state == population.Stored(run.run_id or 0, D, TZ, [])
    _touch_x_and_w(db, ids)
    touched = [ids["x"], ids["w"]]
    retier(db, DIMS, tz=TZ, as_of=AS_OF, customer_ids=touched, dry_run=True)
    # The next local day: the rows count days from D, so they are not this run's to change.
    retier(db, DIMS, tz=TZ, as_of=AS_OF + timedelta(days=1), customer_ids=touched)
    with MetricsEngine(db, tz="Europe/Berlin") as other:  # another zone, the same date
        retier(db, DIMS, tz="Europe/Berlin", as_of=AS_OF, customer_ids=touched, engine=other)
    assert (_stored_rows(db), population.stored(db)) == (before, state)
