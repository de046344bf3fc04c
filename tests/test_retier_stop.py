"""A re-tier in hand at SIGTERM stops at its next safe point and leaves nothing half-written.

Before recording it writes nothing; between record chunks what it wrote is consistent, and
the next run does the rest, ending where an uninterrupted run ends.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from bot.db import Database
from bot.db.models import RetierRun, TierAssignment, TierTransition
from bot.errors import StoppedError
from bot.rules import Dimension, load_dimensions
from bot.tiering.defaults import default_tiering
from bot.tiering.run import retier
from tests.tier_metrics_factory import AS_OF, TZ, customer, local, order

DIMS: tuple[Dimension, ...] = load_dimensions(default_tiering().dimensions)


def _customers(db: Database, n: int = 12) -> None:
    with db.write() as s:
        for i in range(n):
            c = customer(s, f"c{i}")
            for k in range(i % 4 + 1):
                order(s, c, 100 * (i + 1), local(10 + 30 * k))


def _state(db: Database) -> tuple[int, int, list[tuple[int, str, str]]]:
    with db.read() as s:
        runs = s.scalar(select(func.count()).select_from(RetierRun)) or 0
        moves = s.scalar(select(func.count()).select_from(TierTransition)) or 0
        tiers = s.execute(
            select(TierAssignment.customer_id, TierAssignment.dimension, TierAssignment.tier)
        ).all()
    return runs, moves, sorted((int(a), str(b), str(c)) for a, b, c in tiers)


def test_a_stop_before_recording_writes_nothing(db: Database) -> None:
    _customers(db)
    stop = threading.Event()
    stop.set()
    with pytest.raises(StoppedError, match="after the metrics"):
        retier(db, DIMS, tz=TZ, as_of=AS_OF, stop=stop)
    assert _state(db) == (0, 0, [])


def test_a_stop_while_recording_leaves_consistent_chunks_the_next_run_completes(
    db: Database,
) -> None:
    _customers(db)
    stop = threading.Event()
    # SIGTERM arrives while the record is written: the run stops after the chunk in hand.
    with pytest.raises(StoppedError, match="changes"):
        retier(db, DIMS, tz=TZ, as_of=AS_OF, stop=stop, on_progress=lambda *_: stop.set())
    runs, moves, tiers = _state(db)
    assert runs == 1
    assert moves > 0
    # Every recorded transition has its assignment: no half-written customer.
    with db.read() as s:
        unmatched = s.scalar(
            select(func.count())
            .select_from(TierTransition)
            .outerjoin(
                TierAssignment,
                (TierAssignment.customer_id == TierTransition.customer_id)
                & (TierAssignment.dimension == TierTransition.dimension)
                & (TierAssignment.tier == TierTransition.to_tier),
            )
            .where(TierAssignment.customer_id.is_(None), TierTransition.to_tier.is_not(None))
        )
    assert unmatched == 0
    # The next run (the next night, or the next process) ends where one whole run ends.
    report = retier(db, DIMS, tz=TZ, as_of=AS_OF)
    assert report.run_id is not None
    assert report.transitions == 0  # the chunk in hand held them all: nothing left to do
    assert _state(db)[2] == tiers
