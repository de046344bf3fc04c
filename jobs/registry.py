"""The catalogue of background work: continuous workers and scheduled jobs.

Feature modules declare their jobs in jobs/<area>.py and add them here, so
`tagbot serve`, `tagbot worker` and `tagbot scheduler` all find them in one place.
"""

from __future__ import annotations

import importlib
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


@dataclass(frozen=True)
class ScheduledSpec:
    """A job run on a cron schedule by the one scheduler holding the lease."""

    id: str
    run: Callable[[Runtime], object]
    cron: Callable[[Settings], str]


# "module:attribute" of each WorkerSpec / ScheduledSpec; modules land with their features.
WORKER_SPECS: list[str] = [
    "jobs.inbox:INBOX_WORKER",
    "jobs.outbox:OUTBOX_WORKER",
    "jobs.channels:CHANNEL_UPKEEP",
    "jobs.welcome:WELCOME_LANE",
    "jobs.inbox_listener:INBOX_LISTENER",
]
SCHEDULED_SPECS: list[str] = [
    "jobs.sync:SYNC_JOB",
]


def _resolve(specs: list[str]) -> list[object]:
    found = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # that feature has not landed in this build
        found.append(getattr(module, attr))
    return found


def workers() -> list[WorkerSpec]:
    """Return the continuous workers available in this build."""
    return [w for w in _resolve(WORKER_SPECS) if isinstance(w, WorkerSpec)]


def scheduled() -> list[ScheduledSpec]:
    """Return the scheduled jobs available in this build."""
    return [s for s in _resolve(SCHEDULED_SPECS) if isinstance(s, ScheduledSpec)]
