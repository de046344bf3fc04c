"""The outreach worker: perform due campaign tasks, resolve stale ones, release held runs."""

from __future__ import annotations

from bot.outreach import execute
from bot.runtime import Runtime
from jobs.specs import WorkerSpec


def _step(rt: Runtime) -> int:
    released = execute.release_held(
        db=rt.db,
        wecom=rt.wecom,
        settings=rt.settings,
        stopping=rt.stopping,
        alerts_wakeup=rt.wakeups.alerts,
    )
    # Tasks are claimed row by row (locked_until), so workers in several processes share them.
    return released + execute.perform_due(
        db=rt.db,
        wecom=rt.wecom,
        settings=rt.settings,
        stopping=rt.stopping,
        alerts_wakeup=rt.wakeups.alerts,
        limit=50,
    )


OUTREACH_WORKER = WorkerSpec(
    name="outreach",
    step=_step,
    wakeup=lambda rt: rt.wakeups.outreach,
    threads=lambda _s: 1,
    idle_seconds=5.0,
)
