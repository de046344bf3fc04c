"""R/F/M scores don't depend on row order; local days follow the zone's DST."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from bot.db import Database
from bot.db.models import Customer, Order
from bot.tiering.engine import compute_metrics
from tests.tier_metrics_factory import AS_OF, TZ, customer, local, order

SCORES = ("r_score", "f_score", "m_score", "spend_percentile_365d", "ipt_median")

# A small pool of order histories, so identical customers are common.
HISTORY = st.lists(
    st.tuples(st.integers(0, 400), st.sampled_from([10, 50, 50, 120, 999])), min_size=0, max_size=4
)


def _load(db: Database, customers: list[tuple[str, list[tuple[int, int]]]]) -> None:
    with db.write() as s:
        s.execute(delete(Order))
        s.execute(delete(Customer))
    rows = [(ext, ago, yuan) for ext, hist in customers for ago, yuan in hist]
    with db.write() as s:
        made = {ext: customer(s, ext) for ext, _ in customers}
        for ext, ago, yuan in rows:
            order(s, made[ext], yuan, local(ago))


def _scores(db: Database) -> dict[str, tuple[Any, ...]]:
    with db.read() as s:
        ext = dict(s.execute(select(Customer.id, Customer.external_userid)).all())
    with compute_metrics(db, as_of=AS_OF, tz=TZ) as frame:
        return {ext[cid]: tuple(row[k] for k in SCORES) for cid, row in frame.rows().items()}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    histories=st.lists(st.sampled_from(range(6)), min_size=1, max_size=12),
    pool=st.lists(HISTORY, min_size=6, max_size=6),
    seed=st.integers(0, 2**32),
)
def test_scores_are_invariant_under_row_reordering(
    db: Database, histories: list[int], pool: list[list[tuple[int, int]]], seed: int
) -> None:
    customers = [(f"c{i}", pool[h]) for i, h in enumerate(histories)]
    _load(db, customers)
    first = _scores(db)
    shuffled = list(customers)
    random.Random(seed).shuffle(shuffled)
    shuffled = [(ext, random.Random(seed + 1).sample(h, len(h))) for ext, h in shuffled]
    _load(db, shuffled)
    assert _scores(db) == first
    # Identical customers got identical scores.
    by_history: dict[tuple[tuple[int, int], ...], set[tuple[Any, ...]]] = {}
    for ext, hist in customers:
        by_history.setdefault(tuple(sorted(hist)), set()).add(first[ext])
    assert all(len(v) == 1 for v in by_history.values())


def test_local_days_follow_daylight_saving(db: Database) -> None:
    # New York moved to EDT (UTC-4) on 2026-03-08; 04:30 UTC on 03-09 is 00:30 local that day.
    as_of = datetime(2026, 3, 9, 16, 0, tzinfo=UTC)
    with db.write() as s:
        c = customer(s, "ny")
        order(s, c, 10, datetime(2026, 3, 9, 4, 30, tzinfo=UTC))
        order(s, c, 10, datetime(2026, 1, 9, 4, 30, tzinfo=UTC))  # EST: 23:30 on 01-08
    with compute_metrics(db, as_of=as_of, tz="America/New_York") as frame:
        (row,) = frame.rows().values()
    assert row["days_since_last_order"] == 0
    assert row["days_since_first_order"] == 60  # 01-08 .. 03-09
    assert row["ipt_median"] == 60
