"""The day-population job: the day's rank basis stored once for every process.

After local midnight explanations rank against the newest stored population and say so
(`rank_note`). The scheduled job builds the day's once and stores it; explanations in any
process then load it (no note, no build of their own). A second run that day is a no-op.
A web process builds the day's itself only when none is stored some time after the job's
hour (a deployment without a scheduler).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import delete
from sqlalchemy.orm import Session

from bot import job_runs
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import Order, TierPopulation
from bot.rules import load_dimensions
from bot.runtime import Runtime
from bot.tiering import population
from bot.tiering.day_population import store_day_population
from bot.tiering.defaults import default_tiering
from bot.tiering.engine import compute_metrics
from bot.tiering.run import retier
from bot.tiering.why import FALLBACK_GRACE, RANKED, ExplainEngine, TierView, explain_customer
from handlers.app import create_app
from jobs import registry
from jobs.background import Background
from jobs.planned import planned
from jobs.tiering import POPULATION_JOB
from tests.support.console import console_config, sign_in_with_token
from tests.support.corp import base_config
from tests.tier_metrics_factory import AS_OF, TZ, D, customer, local, order
from wecom_sim import Simulator

DIMS = load_dimensions(default_tiering().dimensions)
LATER = AS_OF + timedelta(days=3)  # 12:00 local, three days after the run's
LATER_DAY = D + timedelta(days=3)
NOTE = f"按 {D:%Y-%m-%d} 的客户总体排名（今天的客户总体尚未生成）"
SCHEDULE = "5 0 * * *"
# LATER_DAY 00:05 local (UTC+8), when the job runs, and from when a process builds its own.
JOB_AT = datetime(2026, 6, 17, 16, 5, tzinfo=UTC)
FALLBACK_AT = JOB_AT + FALLBACK_GRACE


def _customers(s: Session) -> list[int]:
    made = []
    for i in range(12):
        c = customer(s, f"wm_d{i}")
        for k in range(1 + i % 4):
            order(s, c, 300 * (1 + i // 2), local(1 + 20 * i + 7 * k))
        made.append(c)
    s.flush()
    return [c.id for c in made]


def _alone_after_the_run(db: Database) -> int:
    """Run on D, then delete everyone else's orders: LATER's own population has one buyer."""
    with db.write() as s:
        ids = _customers(s)
    retier(db, DIMS, tz=TZ, as_of=AS_OF)
    cid = ids[5]
    with db.write() as s:
        s.execute(delete(Order).where(Order.customer_id != cid))
    return cid


def _explain(db: Database, cid: int, engine: ExplainEngine | None, at: datetime) -> list[TierView]:
    return explain_customer(db, DIMS, customer_id=cid, tz=TZ, as_of=at, engine=engine)


def _rows(db: Database) -> list[tuple[int, int, int]]:
    with db.read() as s:
        return [
            (r.customer_id, r.spend_365d, r.days_since_last_order)
            for r in s.query(TierPopulation).order_by(TierPopulation.customer_id)
        ]


def test_the_job_stores_the_days_population_once(db: Database) -> None:
    cid = _alone_after_the_run(db)
    before = population.stored(db)
    assert before is not None
    assert before.as_of_day == D

    first = store_day_population(db, tz=TZ, as_of=JOB_AT)
    assert (first.day, first.stored, first.buyers) == (LATER_DAY.isoformat(), True, 1)
    st = population.stored(db)
    assert st is not None
    assert (st.run_id, st.as_of_day, st.tz) == (None, LATER_DAY, TZ)
    assert st.predictive is not None  # its model goes with it (no run holds it)
    rows = _rows(db)
    assert [r[0] for r in rows] == [cid]

    second = store_day_population(db, tz=TZ, as_of=JOB_AT + timedelta(hours=5))
    assert (second.stored, second.buyers) == (False, 0)
    assert population.stored(db) == st
    assert _rows(db) == rows

    # The nightly full run of that day replaces it with its own, as before.
    retier(db, DIMS, tz=TZ, as_of=LATER)
    after = population.stored(db)
    assert after is not None
    assert after.run_id is not None
    assert (after.as_of_day, after.predictive) == (LATER_DAY, None)


def test_explanations_after_the_job_rank_against_the_days_population(db: Database) -> None:
    cid = _alone_after_the_run(db)
    kept = ExplainEngine(schedule=SCHEDULE)
    try:
        # Just after midnight, before the job: yesterday's basis, said so, nothing built.
        stale = _explain(db, cid, kept, JOB_AT - timedelta(minutes=4))
        assert any(v.rank_note.endswith(NOTE) for v in stale)
        store_day_population(db, tz=TZ, as_of=JOB_AT)
        after = JOB_AT + timedelta(minutes=10)
        fresh = _explain(db, cid, kept, after)
        assert all(v.rank_note == "" for v in fresh)
        rfm = next(v for v in fresh if v.dimension == "rfm")
        assert rfm.metrics["m_score"] == 5  # the day's own population: first of one
        with compute_metrics(db, as_of=after, tz=TZ, customer_ids=[cid]) as frame:
            exact = frame.rows()[cid]
        for view in fresh:
            assert view.metrics == {n: exact.get(n) for n in view.metrics}
        # A process that starts now (`customer show`, another web process) loads it too.
        assert _explain(db, cid, None, after) == fresh
        assert _explain(db, cid, kept, LATER) == _explain(db, cid, None, LATER)
        assert kept.wait(30)
        assert (kept.request_builds, kept.background_builds) == (0, 0)
    finally:
        kept.close()


def test_without_the_job_a_web_process_builds_the_days_population_late(db: Database) -> None:
    cid = _alone_after_the_run(db)
    kept = ExplainEngine(schedule=SCHEDULE)
    try:
        assert kept.fallback_from(TZ, LATER_DAY) == FALLBACK_AT
        early = FALLBACK_AT - timedelta(minutes=1)
        ranked = [v for v in _explain(db, cid, kept, early) if set(v.metrics) & RANKED]
        assert ranked
        assert all(v.rank_note.endswith(NOTE) for v in ranked)
        assert kept.wait(30)
        assert kept.background_builds == 0  # the job is expected still: no build here

        _explain(db, cid, kept, FALLBACK_AT)  # no job ran: this process builds it once
        assert kept.wait(120)
        assert (kept.request_builds, kept.background_builds) == (0, 1)
        fresh = _explain(db, cid, kept, FALLBACK_AT)
        assert all(v.rank_note == "" for v in fresh)
        _explain(db, cid, kept, FALLBACK_AT + timedelta(minutes=5))
        assert kept.wait(30)
        assert kept.background_builds == 1
        assert population.stored(db) is not None
        assert population.stored(db).as_of_day == D  # type: ignore[union-attr]  # kept, not stored
    finally:
        kept.close()


def test_with_the_job_turned_off_a_web_process_builds_at_once(db_url: str) -> None:
    cfg = base_config(db_url)
    cfg["tiering"] = {"population_schedule": ""}
    settings = settings_from_mapping(cfg, environ={})
    assert POPULATION_JOB not in registry.scheduled(settings)
    rt = Runtime(settings)
    try:
        assert rt.explain.fallback_from(TZ, LATER_DAY) == datetime(2026, 6, 17, 16, tzinfo=UTC)
    finally:
        rt.close()
    on = settings_from_mapping(base_config(db_url), environ={})
    assert POPULATION_JOB in registry.scheduled(on)
    assert POPULATION_JOB.cron(on) == SCHEDULE


@pytest.fixture
def console(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    for userid in ("boss", "watcher"):
        simulator.add_staff(userid)
    app = create_app(settings_from_mapping(console_config(db_url, simulator), environ={}))
    yield app
    app.extensions["tagbot"].close()


def test_the_scheduler_runs_the_job_records_it_and_the_page_lists_it(
    console: Flask, db: Database
) -> None:
    rt: Runtime = console.extensions["tagbot"]
    with db.write() as s:
        _customers(s)
    background = Background(rt)
    assert background.leader.renew()
    try:
        assert background.run_if_leader(POPULATION_JOB)
        assert background.run_if_leader(POPULATION_JOB)  # the second run that day: no-op
    finally:
        background.leader.release()
    with db.read() as session:
        runs = job_runs.recent(session=session, job=POPULATION_JOB.id, limit=5)
    assert [(r.outcome, r.trigger) for r in runs] == [("ok", "schedule")] * 2
    first, second = runs[1].summary, runs[0].summary
    assert first is not None
    assert second is not None
    assert first["buyers"] == len(_rows(db)) > 0
    assert second == {"buyers": 0, "seconds": 0.0}
    st = population.stored(db)
    assert st is not None
    assert st.run_id is None
    jobs = {j.id: j for j in planned(rt.settings, now=datetime.now(UTC))}
    assert jobs[POPULATION_JOB.id].cron == SCHEDULE
    assert jobs[POPULATION_JOB.id].label == "当天客户总体（解释的排名基准）"
    client = console.test_client()
    assert sign_in_with_token(client).status_code == 303
    page = client.get("/admin/system").get_data(as_text=True)
    row = re.search(r'<tr class="job"[^>]*data-job="day-population".*?</tr>', page, re.S)
    assert row is not None
    assert "当天客户总体" in row[0]
    assert 'data-outcome="ok"' in row[0]
