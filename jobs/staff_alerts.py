"""The staff alert worker: send queued alerts, merged per member under WeCom's limit."""

from __future__ import annotations

from bot import staff_alerts
from bot.runtime import Runtime
from jobs.specs import WorkerSpec


def _step(rt: Runtime) -> int:
    staff_alerts.drain(rt.heartbeat.id, db=rt.db, wecom=rt.wecom)
    return 0  # a member's next message waits for its window anyway: look again later


STAFF_ALERTS = WorkerSpec(
    name="staff-alerts",
    step=_step,
    wakeup=lambda rt: rt.wakeups.alerts,
    threads=lambda _s: 1,
    idle_seconds=staff_alerts.GATHER_SECONDS,
)
