"""The welcome lane: send fresh welcomes newest-first, ahead of the inbox backlog."""

from __future__ import annotations

import threading

from bot.runtime import Runtime
from bot.welcome_lane import lane_for, send_one
from jobs.registry import WorkerSpec


def _step(rt: Runtime) -> int:
    lane = lane_for(rt)
    lane.active = True  # from now on the callback request hands fresh welcomes to us
    offer = lane.take()
    if offer is None:
        return 0
    send_one(rt, offer)
    return 1


def _wakeup(rt: Runtime) -> threading.Event:
    return lane_for(rt).wakeup


WELCOME_LANE = WorkerSpec(
    name="welcome",
    step=_step,
    wakeup=_wakeup,
    # Each welcome is two quick calls; a couple of threads keep up with what the inbox can.
    threads=lambda s: max(1, s.jobs.inbox_workers // 2),
    idle_seconds=5.0,
)
