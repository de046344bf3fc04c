"""The outreach worker: perform due campaign tasks, resolve stale ones, release held runs."""

from __future__ import annotations

import threading

from bot.outreach import execute
from bot.runtime import Runtime
from jobs.specs import WorkerSpec


class OutreachWakeup:
    """The event that wakes the outreach worker (one per process, via Runtime.local)."""

    def __init__(self) -> None:
        self.event = threading.Event()


def _step(rt: Runtime) -> int:
    released = execute.release_held(rt)
    # Tasks are claimed row by row (locked_until), so workers in several processes share them.
    return released + execute.perform_due(rt, limit=50)


OUTREACH_WORKER = WorkerSpec(
    name="outreach",
    step=_step,
    wakeup=lambda rt: rt.local(OutreachWakeup).event,
    threads=lambda _s: 1,
    idle_seconds=5.0,
)
