"""Re-tiering in the background: the nightly full run and the touched-customer re-tier."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot import touched
from bot.db.types import utcnow
from bot.retier import Handoff, RetierBusyError, retier_configured
from bot.runtime import Runtime
from bot.tiering.day_population import DayPopulation, store_day_population
from bot.tiering.engine import MetricsEngine
from bot.tiering.run import RetierReport
from jobs.specs import ScheduledSpec, WorkerSpec

log = logging.getLogger(__name__)

TOUCHED_BATCH = 5_000  # customers per touched re-tier (1,000 take about a second)
FULL_RUN_ABOVE = 50_000  # touched customers beyond which a full run is cheaper


def _retier(
    rt: Runtime,
    *,
    customer_ids: list[int] | None = None,
    engine: MetricsEngine | None = None,
    wait: float = 120.0,
) -> tuple[RetierReport, Handoff | None]:
    return retier_configured(
        db=rt.db,
        wecom=rt.wecom,
        settings=rt.settings,
        outbox_wakeup=rt.wakeups.outbox,
        alerts_wakeup=rt.wakeups.alerts,
        customer_ids=customer_ids,
        engine=engine,
        wait=wait,
        stop=rt.stopping,
    )


def _full(rt: Runtime) -> RetierReport:
    report, _ = _retier(rt)
    log.info(
        "retier: %d customers, %d transitions, %d relations to mark",
        report.customers,
        report.transitions,
        report.relations_to_mark,
    )
    return report


RETIER_JOB = ScheduledSpec(id="retier", run=_full, cron=lambda s: s.tiering.schedule)


def _day_population(rt: Runtime) -> DayPopulation:
    return store_day_population(rt.db, tz=rt.settings.app.timezone, as_of=utcnow())


# Explanations' rank basis for the day, stored once for every process (`[tiering]
# population_schedule`; registry.scheduled leaves it out when that is "").
POPULATION_JOB = ScheduledSpec(
    id="day-population", run=_day_population, cron=lambda s: s.tiering.population_schedule
)


def retier_touched(
    rt: Runtime, *, limit: int = TOUCHED_BATCH, quiet: timedelta = touched.QUIET
) -> int:
    """Re-tier one batch of customers touched by fresh data; return how many."""
    if not rt.settings.tiering.dimensions:
        return 0  # nothing to tier by: the touched rows wait for a config that has some
    state = rt.touched
    with state.lock:
        with rt.db.read() as session:
            waiting = touched.pending(session=session, quiet=quiet)
            ids, taken_at = touched.ready(session=session, limit=limit, quiet=quiet)
        if not ids:
            return 0
        if waiting > FULL_RUN_ABOVE:
            # A big import: one full run costs less than many touched batches.
            try:
                _retier(rt, wait=0)
            except RetierBusyError:
                return 0
            with rt.db.write() as session:
                touched.untouch_all(session=session, taken_at=taken_at)
            return waiting
        if state.engine is None:
            state.engine = MetricsEngine(rt.db, tz=rt.settings.app.timezone)
        try:
            # A full run holding the lease: skip, the next step tries again.
            _retier(rt, customer_ids=ids, engine=state.engine, wait=0)
        except RetierBusyError:
            return 0
        except BaseException:
            state.engine.close()  # a fresh engine next time, not a half-built one
            state.engine = None
            raise
        with rt.db.write() as session:
            touched.untouch(ids, session=session, taken_at=taken_at)
        return len(ids)


TOUCHED_WORKER = WorkerSpec(
    name="retier-touched",
    step=retier_touched,
    wakeup=lambda rt: rt.touched.wakeup,
    threads=lambda s: 1,
    idle_seconds=10.0,  # fresh data shows in its tier within the quiet time plus this
)
