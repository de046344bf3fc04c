"""The inbox worker: process stored callbacks as soon as the request wakes it."""

from __future__ import annotations

from bot.callback_processing import process_next
from bot.runtime import Runtime
from jobs.registry import WorkerSpec


def _step(rt: Runtime) -> int:
    # One event per claim: a welcome must not wait behind a batch another thread could take.
    return process_next(rt, limit=1)


INBOX_WORKER = WorkerSpec(
    name="inbox",
    step=_step,
    wakeup=lambda rt: rt.wakeups.inbox,
    threads=lambda s: s.jobs.inbox_workers,
    idle_seconds=2.0,  # also catches retries coming due and events stored by other processes
)
