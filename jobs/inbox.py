"""The inbox worker: process stored callbacks as soon as the request wakes it."""

from __future__ import annotations

from collections.abc import Sequence

from bot.callbacks.dispatch import process_next
from bot.callbacks.inbox import Claimed
from bot.runtime import Runtime
from jobs.specs import WorkerSpec

# Workers share the GIL with the threads answering callbacks. CPython hands the GIL over
# every 5 ms by default; a request waiting that long at each I/O step misses the 20 ms
# ack target under load, so processes that run this worker switch ten times as often
# (set by jobs.background when the workers start, not at import).
SWITCH_INTERVAL = 0.0005
YIELD_SECONDS = 0.25  # at most; the lane says when it is empty
# Hand-off ids claimed in one transaction: fewer write transactions under a burst, while
# a batch is still short enough not to hold up the events behind it.
HANDOFF_BATCH = 4


def _process(
    rt: Runtime, *, limit: int = 1, ids: Sequence[int] = (), taken: Sequence[Claimed] = ()
) -> int:
    return process_next(
        owner=rt.heartbeat.id,
        db=rt.db,
        wecom=rt.wecom,
        settings=rt.settings,
        lane=rt.welcome_lane,
        cache=rt.context_cache,
        missed=rt.missed_welcomes,
        outbox_wakeup=rt.wakeups.outbox,
        alerts_wakeup=rt.wakeups.alerts,
        limit=limit,
        ids=ids,
        taken=taken,
    )


def _step(rt: Runtime) -> int:
    handoff = rt.handoff
    handoff.active = True  # from now on this process processes the events it acknowledges
    # Welcomes waiting in the fast lane go first: their codes expire, tags can wait.
    lane = rt.welcome_lane
    if not lane.empty.is_set():
        lane.empty.wait(YIELD_SECONDS)
        return 1  # come straight back without sleeping on the wake-up event
    if handoff.poll_due():  # older due events first: taken over, or retries come due
        taken = _process(rt, limit=HANDOFF_BATCH)
        if taken:
            handoff.poll_again()
            return taken
    entries = handoff.take(HANDOFF_BATCH)
    if entries:
        claimed = [e for e in entries if isinstance(e, Claimed)]
        ids = [e for e in entries if isinstance(e, int)]
        if claimed:  # claimed by the ack itself
            _process(rt, taken=claimed)
        if ids:
            _process(rt, ids=ids)
        return len(entries)  # consumed, even if another process got to some of them first
    if not handoff.nudged():
        # Woken by an ack whose event another thread took: an empty claim here would
        # cost a write transaction per idle thread and scan (the poll above still looks).
        return 0
    # One event per claim: a welcome must not wait behind a batch another thread could take.
    taken = _process(rt, limit=1)
    if taken:
        handoff.nudge()  # more may be due: the next step looks again
    return taken


INBOX_WORKER = WorkerSpec(
    name="inbox",
    step=_step,
    wakeup=lambda rt: rt.wakeups.inbox,
    threads=lambda s: s.jobs.inbox_workers,
    idle_seconds=2.0,  # also catches retries coming due and events stored by other processes
    switch_interval=SWITCH_INTERVAL,
)
