"""The welcome lane: send fresh welcomes newest-first, ahead of the inbox backlog."""

from __future__ import annotations

from bot.callbacks.welcome_lane import lane_for, send_one
from bot.runtime import Runtime
from bot.wakeone import WakeOne
from jobs.specs import WorkerSpec


def _step(rt: Runtime) -> int:
    lane = lane_for(rt)
    lane.active = True  # from now on the callback request hands fresh welcomes to us
    offer = lane.take()
    if offer is None:
        return 0
    send_one(rt, offer)
    return 1


def _wakeup(rt: Runtime) -> WakeOne:
    return lane_for(rt).wakeup


WELCOME_LANE = WorkerSpec(
    name="welcome",
    step=_step,
    wakeup=_wakeup,
    # Threads mostly wait on WeCom: each welcome is two round trips (fetch the customer,
    # send), so the rate it sustains is threads / (2 x round trip).
    threads=lambda s: s.jobs.welcome_threads,
    idle_seconds=5.0,
)
