"""The heartbeat: renew this process's row every second so others know it is alive."""

from __future__ import annotations

import threading
import weakref

from bot import heartbeat
from bot.runtime import Runtime
from jobs.specs import WorkerSpec

_never: weakref.WeakKeyDictionary[Runtime, threading.Event] = weakref.WeakKeyDictionary()


def _step(rt: Runtime) -> int:
    heartbeat.beat(db=rt.db, heartbeat=rt.heartbeat)
    return 0  # then wait a beat


HEARTBEAT = WorkerSpec(
    name="heartbeat",
    step=_step,
    wakeup=lambda rt: _never.setdefault(rt, threading.Event()),
    threads=lambda _s: 1,
    idle_seconds=heartbeat.BEAT_SECONDS,
)
