"""The 群发 results poller: each created group_message task at most every POLL_EVERY."""

from __future__ import annotations

import threading
import weakref

from bot.outreach import results
from bot.runtime import Runtime
from jobs.specs import WorkerSpec

_events: weakref.WeakKeyDictionary[Runtime, threading.Event] = weakref.WeakKeyDictionary()


def _wakeup(rt: Runtime) -> threading.Event:
    return _events.setdefault(rt, threading.Event())


def _step(rt: Runtime) -> int:
    # Tasks become due by their next_attempt_at: a step that polled some looks again at
    # once (a batch may remain), else the loop sleeps idle_seconds.
    return results.poll_results(db=rt.db, wecom=rt.wecom).tasks


OUTREACH_RESULTS = WorkerSpec(
    name="outreach-results",
    step=_step,
    wakeup=_wakeup,
    threads=lambda _s: 1,
    idle_seconds=60.0,
)
