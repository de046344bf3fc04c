"""Background.stop waits (within its bound) for the scheduled job in hand, then gives the
scheduler lease up; past the bound it returns without waiting longer."""

from __future__ import annotations

import threading

from sqlalchemy import select

from bot.db.models import Lease
from bot.runtime import Runtime
from jobs.background import Background
from jobs.leadership import SCHEDULER_LEASE
from jobs.specs import ScheduledSpec
from tests.support.configs import settings_for
from wecom_sim import Simulator


def _lease_owner(rt: Runtime) -> str | None:
    with rt.db.read() as session:
        return session.scalar(select(Lease.owner).where(Lease.name == SCHEDULER_LEASE))


def _run_in_hand(bg: Background, work: ScheduledSpec) -> threading.Thread:
    started = threading.Event()

    def run(rt: Runtime) -> object:
        started.set()
        return work.run(rt)

    spec = ScheduledSpec(id=work.id, run=run, cron=work.cron)
    t = threading.Thread(target=bg.run_if_leader, args=(spec,))
    t.start()
    assert started.wait(10)
    return t


def test_stop_lets_the_job_in_hand_finish_before_the_lease_goes(
    db_url: str, simulator: Simulator
) -> None:
    rt = Runtime(settings_for(db_url, simulator))
    bg = Background(rt)
    bg.start_scheduler()
    seen: list[str | None] = []

    def job(r: Runtime) -> None:
        r.stopping.wait(10)  # the SIGTERM arrives while the job runs...
        seen.append(_lease_owner(r))  # ...which still holds the lease as it finishes

    t = _run_in_hand(bg, ScheduledSpec(id="in-hand", run=job, cron=lambda _s: "0 0 * * *"))
    try:
        assert bg.stop(seconds=10) is True
        assert seen == [bg.owner]  # finished under the lease, before stop() returned
        assert _lease_owner(rt) is None  # then given up: the next scheduler need not wait
        # No new run starts once stopping.
        assert bg.run_if_leader(ScheduledSpec("late", lambda _r: None, lambda _s: "")) is False
    finally:
        t.join(10)
        rt.close()


def test_stop_returns_at_its_bound_when_the_job_does_not_end(
    db_url: str, simulator: Simulator
) -> None:
    rt = Runtime(settings_for(db_url, simulator))
    bg = Background(rt)
    bg.start_scheduler()
    release = threading.Event()
    t = _run_in_hand(
        bg,
        ScheduledSpec(id="stuck", run=lambda _r: release.wait(30), cron=lambda _s: "0 0 * * *"),
    )
    try:
        assert bg.stop(seconds=0.5) is False  # it says so; the process exits anyway
        assert _lease_owner(rt) is None
    finally:
        release.set()
        t.join(10)
        rt.close()
