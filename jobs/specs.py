"""What a background job is: a continuous worker or a scheduled job, run by jobs.background."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Settings
from bot.runtime import Runtime


@dataclass(frozen=True)
class WorkerSpec:
    """A loop that drains a queue: `step(rt)` returns how many items it handled."""

    name: str
    step: Callable[[Runtime], int]
    wakeup: Callable[[Runtime], object]  # returns the threading.Event that wakes it
    threads: Callable[[Settings], int]
    idle_seconds: float = 5.0  # safety net: also look every few seconds (other processes)
    # The interpreter's GIL switch interval a process running this worker wants (None: leave it)
    switch_interval: float | None = None


@dataclass(frozen=True)
class ScheduledSpec:
    """A job run on a cron schedule by the one scheduler holding the lease."""

    id: str
    run: Callable[[Runtime], object]
    cron: Callable[[Settings], str]
