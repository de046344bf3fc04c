"""The day's rank population, built once just after local midnight and stored for everyone.

Explanations (console, sidebar, `customer show`) rank a customer among the day's buyers
(R/M scores, percentiles). Without the day's population stored they rank against the
newest stored one and say so (`why.TierView.rank_note`). The nightly full run stores the
day's, but only at its hour; this job (scheduled right after local midnight,
`[tiering] population_schedule`) builds it once — one pass over every order, as a full
run's — and stores it with its fitted model (`population.store`, no run), so every
process loads it instead of building its own. A day already stored (by this job or a
full run) is left alone: a second run that day is a no-op.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from bot.db import Database
from bot.tiering import population
from bot.tiering.clock import Clock
from bot.tiering.engine import MetricsEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayPopulation:
    """What one run of the job did (its counts go to the 系统 page's job record)."""

    day: str  # the local day, ISO
    stored: bool  # False: the day's was stored already (or meanwhile): nothing written
    buyers: int = 0
    seconds: float = 0.0


def store_day_population(db: Database, *, tz: str, as_of: datetime) -> DayPopulation:
    """Build and store as_of's local day's rank population unless one is stored for it."""
    day = Clock(tz, as_of).as_of_day
    st = population.stored(db)
    if st is not None and st.serves(day, tz):
        return DayPopulation(day.isoformat(), stored=False)
    t0 = time.perf_counter()
    with MetricsEngine(db, tz=tz) as engine:
        engine.build_population(as_of=as_of)
        with db.write() as session:
            # A full run (or another scheduler's job) may have stored it meanwhile.
            now = population.lock_state(session=session)
            if now is not None and now.serves(day, tz):
                return DayPopulation(day.isoformat(), stored=False)
            buyers = engine.store_day_population(session)
    took = time.perf_counter() - t0
    log.info("day population for %s: %d buyers stored in %.1fs", day, buyers, took)
    return DayPopulation(day.isoformat(), stored=True, buyers=buyers, seconds=took)
