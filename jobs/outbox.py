"""The outbox worker: push queued tag changes to WeCom under the adapter's rate limit."""

from __future__ import annotations

from bot.runtime import Runtime
from bot.tags import outbox
from jobs.specs import WorkerSpec


def _step(rt: Runtime) -> int:
    hb = rt.heartbeat
    return outbox.drain(
        db=rt.db,
        wecom=rt.wecom,
        limit=min(20, rt.settings.limits.outbox_batch),
        stopping=rt.stopping,
        # Named only once the heartbeat row exists: a claim naming a missing row is taken
        # over at once, as if this process had died.
        owner=hb.id if hb.beats else None,
    )


OUTBOX_WORKER = WorkerSpec(
    name="outbox",
    step=_step,
    wakeup=lambda rt: rt.wakeups.outbox,
    threads=lambda s: s.jobs.outbox_workers,
    idle_seconds=2.0,
)
