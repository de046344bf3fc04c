"""Start and stop the background threads of a process: worker loops and the scheduler."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import uuid
from dataclasses import dataclass, field

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot import heartbeat, leases, metrics
from bot.runtime import Runtime
from jobs import registry, runner
from jobs.runner import run_job
from jobs.specs import ScheduledSpec, WorkerSpec

log = logging.getLogger("tagbot.jobs")

SCHEDULER_LEASE = "scheduler"
LEASE_TTL = 60.0
LEASE_RENEW = 15.0


def _worker_loop(rt: Runtime, spec: WorkerSpec) -> None:
    event = spec.wakeup(rt)
    assert isinstance(event, threading.Event)
    while not rt.stopping.is_set():
        handled = run_job(rt, spec.name, spec.step)
        if handled:
            continue  # more may be waiting: drain before sleeping
        # Clear only after waking, then drain again: a wake-up set during the drain makes
        # the wait return at once instead of being wiped out before anyone looked.
        event.wait(spec.idle_seconds)
        event.clear()


@dataclass
class Background:
    """The threads one process runs besides serving requests."""

    rt: Runtime
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    threads: list[threading.Thread] = field(default_factory=list)
    scheduler: BackgroundScheduler | None = None
    is_leader: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        metrics.register(runner.METRICS)

    def start_workers(self) -> None:
        wanted = [s.switch_interval for s in registry.workers() if s.switch_interval is not None]
        if wanted and sys.getswitchinterval() > min(wanted):
            sys.setswitchinterval(min(wanted))
        # Beat before any worker claims: a claim by a process without a heartbeat row
        # looks abandoned to the others.
        heartbeat.beat(self.rt)
        for spec in registry.workers():
            for i in range(spec.threads(self.rt.settings)):
                t = threading.Thread(
                    target=_worker_loop, args=(self.rt, spec), name=f"{spec.name}-{i}", daemon=True
                )
                t.start()
                self.threads.append(t)
        log.info("started %d worker threads", len(self.threads))

    def start_scheduler(self) -> None:
        """Schedule the jobs; only the process holding the lease actually runs them."""
        sched = BackgroundScheduler(timezone=self.rt.settings.tz)
        for spec in registry.scheduled(self.rt.settings):
            trigger = CronTrigger.from_crontab(
                spec.cron(self.rt.settings), timezone=self.rt.settings.tz
            )
            sched.add_job(
                self._run_if_leader,
                trigger,
                args=(spec,),
                id=spec.id,
                coalesce=True,
                max_instances=1,
            )
        sched.add_job(self._renew_lease, "interval", seconds=LEASE_RENEW, id="scheduler-lease")
        self._renew_lease()
        sched.start()
        self.scheduler = sched

    def _renew_lease(self) -> None:
        try:
            with self.rt.db.write() as session:
                held = leases.try_acquire(session, SCHEDULER_LEASE, self.owner, LEASE_TTL)
        except Exception:
            log.exception("could not renew the scheduler lease")
            held = False
        if held and not self.is_leader.is_set():
            log.info("this process now runs the scheduled jobs (%s)", self.owner)
        if held:
            self.is_leader.set()
        else:
            self.is_leader.clear()

    def _run_if_leader(self, spec: ScheduledSpec) -> None:
        if self.is_leader.is_set():
            run_job(self.rt, spec.id, spec.run)

    def stop(self) -> None:
        self.rt.stopping.set()
        for spec in registry.workers():
            event = spec.wakeup(self.rt)
            if isinstance(event, threading.Event):
                event.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            try:
                with self.rt.db.write() as session:
                    leases.release(session, SCHEDULER_LEASE, self.owner)
            except Exception:
                log.exception("could not release the scheduler lease")
        for t in self.threads:
            t.join(timeout=5)
        if self.threads:
            try:  # gone for good: others take what is left at once
                heartbeat.stop(self.rt)
            except Exception:
                log.exception("could not drop the heartbeat")
