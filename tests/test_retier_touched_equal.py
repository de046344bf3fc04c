"""A touched re-tier after fresh data gives its customers what a full run would, both backends.

On SQLite the touched run reads a copy of its customers' rows only (not the whole file);
the ranks (R, M, spend percentile) still come from the whole population of buyers — kept
by the engine, or in a new engine the one the day's full run stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select

from bot.config import DimensionSettings
from bot.db import Database
from bot.db.models import Order, TierAssignment, TierPopulation, TierTransition
from bot.rules import OTHER_TAG, load_dimensions
from bot.tiering.defaults import default_tiering
from bot.tiering.engine import MetricsEngine
from bot.tiering.run import retier
from bot.tiering.source import TOUCHED_SNAPSHOT
from tests.support.deliveries import delivery
from tests.support.snapshots import attached_path, copied_tables
from tests.support.waiting import wait_for
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

DIMS = load_dimensions(default_tiering().dimensions)


def _population(db: Database) -> list[int]:
    """Forty customers whose spends and recencies tie in groups; return their ids."""
    ids = []
    with db.write() as s:
        st = staff(s, "u")
        ch = channel(s, "门店")
        for i in range(40):
            c = customer(s, f"c{i}", gender=i % 3)
            ids.append(c.id)
            relation(s, c, st, added=local(i * 9), ch=ch if i % 2 else None)
            for k in range(i % 5):
                # Amounts repeat every 7 customers and days every 4: ties in M and R.
                order(s, c, 600 * (i % 7) + k, local(k * 30 + i % 4), category=f"cat{k % 3}")
            event(s, c, "view", local(i % 10))
            if i % 3 == 0:
                profile(s, c, "会员等级", f"L{i % 4}")
    return ids


def _fresh_data(db: Database, touched: list[int]) -> None:
    """New orders, events and a profile value for the touched customers, tying with others."""
    from bot.db.models import Customer

    with db.write() as s:
        for n, cid in enumerate(touched):
            c = s.get(Customer, cid)
            assert c is not None
            order(s, c, 600 * (n % 3), local(n % 4), category="cat1")  # 0 yuan: a tie at the floor
            event(s, c, "cart", local(0))
            # A value no one held before, under a second subject (latest, then greater, wins).
            profile(s, c, "会员等级", "L9", subject=f"unionid:u{cid}", updated=AS_OF)
            # A 群发 reached some of them and one clicked: the reach metrics have values.
            delivery(s, c, "sent" if n % 2 else "not_friend", local(3), sent=local(3))
            if n == 1:
                event(s, c, "click", local(2))


def _tiers(db: Database, ids: list[int]) -> dict[tuple[int, str], tuple[str, Any]]:
    with db.read() as s:
        rows = s.execute(
            select(
                TierAssignment.customer_id,
                TierAssignment.dimension,
                TierAssignment.tier,
                TierAssignment.since,
            ).where(TierAssignment.customer_id.in_(ids))
        ).all()
    return {(c, d): (t, since) for c, d, t, since in rows}


def test_touched_metrics_and_tiers_equal_a_full_runs_for_those_customers(db: Database) -> None:
    ids = _population(db)
    touched = [*ids[::5], ids[1], ids[2]]
    with MetricsEngine(db, tz=TZ) as kept:  # the fresh-data worker's long-lived engine
        retier(db, DIMS, tz=TZ, as_of=AS_OF, engine=kept)  # the nightly run
        _fresh_data(db, touched)
        with kept.compute(as_of=AS_OF, customer_ids=touched) as part:
            if db.is_sqlite:  # its customers' rows only, never the whole file
                assert attached_path(kept).name == TOUCHED_SNAPSHOT
                assert part.count() == len(touched)
            got = part.rows()
        with MetricsEngine(db, tz=TZ) as fresh, fresh.compute(as_of=AS_OF) as full:
            expected = full.rows(touched)
            assert set(full.profile_names) == set(part.profile_names)
        assert got == expected
        assert {r["messages_90d"] for r in got.values()} == {1}
        assert {r["reach_rate_90d"] for r in got.values()} == {0.0, 1.0}
        # Fresh data moved some of them: in M (the new spend) and in the member level.
        report = retier(db, DIMS, tz=TZ, as_of=AS_OF, customer_ids=touched, engine=kept)
        assert (report.scope, report.customers) == ("touched", len(touched))
        assert report.transitions > 0
    after_touched = _tiers(db, touched)
    assert {t for (_, d), (t, _) in after_touched.items() if d == "member_level"} == {"L9"}

    # A full run on a fresh engine finds nothing left to move for the touched customers.
    run = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    with db.read() as s:
        moved = s.scalars(
            select(TierTransition.customer_id).where(
                TierTransition.run_id == run.run_id, TierTransition.customer_id.in_(touched)
            )
        ).all()
    assert moved == []
    assert _tiers(db, touched) == after_touched


def test_a_touched_run_on_a_customers_copy_still_sees_the_populations_tag_values(
    db: Database,
) -> None:
    # max_tags 3: with more than 3 values the two most common keep a tag, the rest 其他.
    cat = load_dimensions(
        [
            DimensionSettings.model_validate(
                {"name": "cat", "tag_group": "品类", "tag_from": "top_category_365d", "max_tags": 3}
            )
        ]
    )
    with db.write() as s:
        for i, name in enumerate(["茶叶", "茶叶", "咖啡", "咖啡", "可可", "奶茶"]):
            order(s, customer(s, f"t{i}"), 100, local(5), category=name)
    with MetricsEngine(db, tz=TZ) as kept:
        retier(db, cat, tz=TZ, as_of=AS_OF, engine=kept)
        with db.write() as s:
            fresh = customer(s, "fresh")
            order(s, fresh, 100, local(1), category="果汁")
        retier(db, cat, tz=TZ, as_of=AS_OF, customer_ids=[fresh.id], engine=kept)
        if db.is_sqlite:
            workdir = attached_path(kept).parent
            assert attached_path(kept).name == TOUCHED_SNAPSHOT
            # The full run's copy goes (off the touched run's path): only the touched one stays.
            wait_for(
                lambda: [p.name for p in workdir.iterdir()] == [TOUCHED_SNAPSHOT],
                what="the full snapshot removed",
            )
    # The population's 茶叶 and 咖啡 fill the room: 其他, as a full run gives (none moves).
    assert _tiers(db, [fresh.id])[(fresh.id, "cat")][0] == OTHER_TAG
    full = retier(db, cat, tz=TZ, as_of=AS_OF)
    assert [(m.dimension, m.from_tier, m.to_tier, m.customers) for m in full.moves] == []


@pytest.mark.parametrize(
    ("held", "fresh", "expected"),
    [
        # max_tags − 1 values held, no 其他: a new value fits, as in a full run (3 ≤ 3).
        (["茶叶", "茶叶", "咖啡", "咖啡"], ["果汁"], ["果汁"]),
        # The same, two new values at once: 4 > 3, both least held, both 其他.
        (["茶叶", "茶叶", "咖啡", "咖啡"], ["果汁", "奶茶"], [OTHER_TAG, OTHER_TAG]),
        # max_tags values held: a new one is 其他 (the full run also folds 茶叶, untouched).
        (["茶叶", "茶叶", "咖啡", "咖啡", "可可", "可可"], ["果汁"], [OTHER_TAG]),
    ],
    ids=["max_tags-1_held", "max_tags-1_held_two_new", "max_tags_held"],
)
def test_a_touched_run_gives_a_new_tag_value_what_a_full_run_gives_at_the_boundary(
    db: Database, held: list[str], fresh: list[str], expected: list[str]
) -> None:
    cat = load_dimensions(
        [
            DimensionSettings.model_validate(
                {"name": "cat", "tag_group": "品类", "tag_from": "top_category_365d", "max_tags": 3}
            )
        ]
    )
    with db.write() as s:
        for i, name in enumerate(held):
            order(s, customer(s, f"t{i}"), 100, local(5), category=name)
    with MetricsEngine(db, tz=TZ) as kept:
        retier(db, cat, tz=TZ, as_of=AS_OF, engine=kept)
        with db.write() as s:
            new = [customer(s, f"fresh{i}") for i in range(len(fresh))]
            for c, name in zip(new, fresh, strict=True):
                order(s, c, 100, local(1), category=name)
            ids = [c.id for c in new]
        retier(db, cat, tz=TZ, as_of=AS_OF, customer_ids=ids, engine=kept)
    touched = [_tiers(db, ids)[(i, "cat")][0] for i in ids]
    retier(db, cat, tz=TZ, as_of=AS_OF)
    full = [_tiers(db, ids)[(i, "cat")][0] for i in ids]
    assert touched == full == expected


def test_a_new_engine_ranks_against_the_population_the_days_full_run_stored(
    db: Database,
) -> None:
    ids = _population(db)
    touched = [*ids[::5], ids[1], ids[2]]
    retier(db, DIMS, tz=TZ, as_of=AS_OF)  # the nightly run, in a process of its own
    with MetricsEngine(db, tz=TZ) as fresh, fresh.compute(as_of=AS_OF) as full:
        expected = full.rows(touched)
        names = set(full.profile_names)
    # Everyone else's orders go: only the stored population still knows their spend and
    # recency, so any pass over the orders would rank the touched customers differently.
    with db.write() as s:
        s.execute(delete(Order).where(Order.customer_id.not_in(touched)))
    later = AS_OF + timedelta(hours=4)  # the same local day
    with MetricsEngine(db, tz=TZ) as new:  # a worker, or `customer show`, started after it
        with new.compute(as_of=later, customer_ids=touched) as part:
            if db.is_sqlite:  # its customers' rows and the stored population, not the file
                assert attached_path(new).name == TOUCHED_SNAPSHOT
                assert "tier_population" in copied_tables(new)
            assert set(part.profile_names) == names
            assert part.rows() == expected
        # The next batch ranks against what the engine holds: the stored rows aren't read.
        with db.write() as s:
            s.execute(delete(TierPopulation))
        with new.compute(as_of=later, customer_ids=touched[:3]) as part:
            if db.is_sqlite:
                assert "tier_population" not in copied_tables(new)
            assert part.rows() == {c: expected[c] for c in touched[:3]}


def test_a_touched_run_reads_text_as_a_full_run_does(db: Database) -> None:
    # Commas, quotes, newlines, the empty string (a value, not a missing one) and text that
    # looks like NULL come back from a touched run's reads as stored, as a full run reads them.
    values = ['a,"b"\nc', "", "  padded  ", "\\N", "NULL", "逗号，中文"]
    name = 'note, "quoted"'
    with db.write() as s:
        st = staff(s, "u")
        ch = channel(s, 'shop, "north"\nfloor 2')
        ids = []
        for i, value in enumerate(values):
            c = customer(s, f"t{i}")
            relation(s, c, st, added=local(3), ch=ch)
            order(s, c, 100 + i, local(2), category=value)
            profile(s, c, name, value)
            ids.append(c.id)
    with MetricsEngine(db, tz=TZ) as kept:
        kept.compute(as_of=AS_OF).close()  # the population: on SQLite a customers' copy next
        with kept.compute(as_of=AS_OF, customer_ids=ids) as part:
            if db.is_sqlite:
                assert attached_path(kept).name == TOUCHED_SNAPSHOT
            got = part.rows()
    with MetricsEngine(db, tz=TZ) as fresh, fresh.compute(as_of=AS_OF) as full:
        expected = full.rows(ids)
    assert got == expected
    assert [got[c][f"profile.{name}"] for c in ids] == values
    assert {got[c]["channel"] for c in ids} == {'shop, "north"\nfloor 2'}
