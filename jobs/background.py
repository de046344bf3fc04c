"""Start and stop the background threads of a process: worker loops and the scheduler."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot import heartbeat, job_runs, leases, metrics
from bot.db.types import utcnow
from bot.runtime import Runtime
from bot.wakeone import WakeOne
from jobs import registry, runner
from jobs.leadership import LEASE_RENEW, Leadership
from jobs.runner import run_job
from jobs.specs import ScheduledSpec, WorkerSpec

log = logging.getLogger("tagbot.jobs")


class Pace:
    """When a worker's threads last looked for work: one safety poll per idle period in all.

    Without it each idle thread polls on its own timer, and the work an idle process does
    every second grows with the number of threads (four inbox threads: four claims every
    two seconds). Wake-ups are not paced: they wake every thread at once, as before.
    """

    def __init__(self, idle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock()

    def stepped(self) -> None:
        """Record that a thread just looked for work."""
        now = self._clock()
        with self._lock:
            self._last = max(self._last, now)

    def wait_for(self) -> float:
        """Return how long until the next safety poll is due."""
        with self._lock:
            return max(0.0, self._last + self.idle_seconds - self._clock())

    def take_poll(self) -> bool:
        """Claim the due safety poll for this thread; False when it is not due or taken."""
        now = self._clock()
        with self._lock:
            if now - self._last < self.idle_seconds:
                return False
            self._last = now
            return True


def _worker_loop(rt: Runtime, spec: WorkerSpec, pace: Pace) -> None:
    event = spec.wakeup(rt)
    assert isinstance(event, threading.Event | WakeOne)
    while not rt.stopping.is_set():
        handled = run_job(rt, spec.name, spec.step)
        pace.stepped()
        if handled:
            continue  # more may be waiting: drain before sleeping
        # Sleep until woken, or until the safety poll is due and this thread takes it.
        while not event.wait(pace.wait_for()):
            if rt.stopping.is_set() or pace.take_poll():
                break
        # Clear only after waking, then drain again: a wake-up set during the drain makes
        # the wait return at once instead of being wiped out before anyone looked.
        event.clear()


@dataclass
class Background:
    """The threads one process runs besides serving requests."""

    rt: Runtime
    owner: str = field(default_factory=leases.new_owner)
    threads: list[threading.Thread] = field(default_factory=list)
    scheduler: BackgroundScheduler | None = None
    clock: leases.Clock = utcnow  # the lease's clock; tests pass time instead of waiting
    # A worker's safety poll by name, instead of its spec's: a test sets an hour so that
    # only a wake-up can explain work done in the meantime.
    idle_seconds: dict[str, float] = field(default_factory=dict)
    leader: Leadership = field(init=False)
    # Scheduled jobs running now: stop() waits for them (within the bound) before it
    # gives the scheduler lease up, so no second scheduler starts one beside them.
    _in_hand: int = field(default=0, init=False)
    _idle: threading.Condition = field(default_factory=threading.Condition, init=False)

    def __post_init__(self) -> None:
        metrics.register(runner.METRICS)
        self.leader = Leadership(self.rt.db, self.owner, clock=self.clock)

    def start_workers(self) -> None:
        wanted = [s.switch_interval for s in registry.workers() if s.switch_interval is not None]
        if wanted and sys.getswitchinterval() > min(wanted):
            sys.setswitchinterval(min(wanted))
        # Beat before any worker claims: a claim by a process without a heartbeat row
        # looks abandoned to the others.
        heartbeat.beat(db=self.rt.db, heartbeat=self.rt.heartbeat)
        for spec in registry.workers():
            if spec.name in self.idle_seconds:
                spec = replace(spec, idle_seconds=self.idle_seconds[spec.name])
            pace = Pace(spec.idle_seconds)
            for i in range(spec.threads(self.rt.settings)):
                t = threading.Thread(
                    target=_worker_loop,
                    args=(self.rt, spec, pace),
                    name=f"{spec.name}-{i}",
                    daemon=True,
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
                self.run_if_leader,
                trigger,
                args=(spec,),
                id=spec.id,
                coalesce=True,
                max_instances=1,
            )
        sched.add_job(self.leader.renew, "interval", seconds=LEASE_RENEW, id="scheduler-lease")
        leads = self.leader.renew()
        sched.start()
        self.scheduler = sched
        log.info("scheduler started (%s); it runs the jobs now: %s", self.owner, leads)

    def run_if_leader(self, spec: ScheduledSpec) -> bool:
        """Run a scheduled job when this process holds the lease; return whether it ran."""
        with self._idle:
            if self.rt.stopping.is_set() or not self.leader.leads():
                return False
            self._in_hand += 1
        rt = self.rt
        try:
            run_job(
                rt,
                spec.id,
                # Recorded for the 系统 page (last run, outcome, counts); run_job logs a failure.
                lambda _rt: job_runs.run_recorded(
                    rt.db, spec.id, job_runs.SCHEDULE, lambda: spec.run(rt)
                ),
            )
        finally:
            with self._idle:
                self._in_hand -= 1
                self._idle.notify_all()
        return True

    def stop(self, seconds: float | None = None) -> bool:
        """Stop within `seconds` ([server] stop_seconds); return whether all work ended in time.

        Workers finish the operation in hand and put the rest of their claims back (the
        outbox and campaign loops check `stopping` between operations); a scheduled job
        stops at its next safe point (a re-tier between phases or chunks). Then the
        scheduler lease and the heartbeat go, so other processes take over at once
        instead of at lease or claim expiry. Past the bound the process exits anyway:
        what is still running is cut as by a crash, which the queues survive.
        """
        bound = self.rt.settings.server.stop_seconds if seconds is None else seconds
        deadline = time.monotonic() + bound
        self.rt.stopping.set()
        for spec in registry.workers():
            event = spec.wakeup(self.rt)
            if isinstance(event, threading.Event):
                event.set()
            elif isinstance(event, WakeOne):
                event.set_all()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)  # no new runs; the one in hand is waited below
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._idle:
            self._idle.wait_for(
                lambda: self._in_hand == 0, timeout=max(0.0, deadline - time.monotonic())
            )
            in_hand = self._in_hand
        running = [t.name for t in self.threads if t.is_alive()]
        if running or in_hand:
            log.warning(
                "stop: %d scheduled job(s) and threads %s still running after %.0f s; exiting",
                in_hand,
                running,
                bound,
            )
        if self.scheduler is not None:
            try:
                self.leader.release()
            except Exception:
                log.exception("could not release the scheduler lease")
        # With threads still running (past the bound) the row stays: a worker may be mid
        # call on a claim it holds, and a missing row hands its claims over at once. Once
        # this process has exited, the next beat on this host drops the row.
        if self.threads and not running:
            try:  # gone for good: others take what is left at once
                heartbeat.stop(db=self.rt.db, heartbeat=self.rt.heartbeat)
            except Exception:
                log.exception("could not drop the heartbeat")
        log.info("stopped (%s)", self.owner)
        return not running and not in_hand
