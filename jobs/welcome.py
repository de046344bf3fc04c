"""The welcome lane: send fresh welcomes newest-first, ahead of the inbox backlog."""

from __future__ import annotations

from bot.customers.scan_welcome import send_offered
from bot.runtime import Runtime
from bot.wakeone import WakeOne
from jobs.specs import WorkerSpec


def _step(rt: Runtime) -> int:
    lane = rt.welcome_lane
    lane.active = True  # from now on the callback request hands fresh welcomes to us
    offer = lane.take()
    if offer is None:
        return 0
    send_offered(
        offer,
        db=rt.db,
        wecom=rt.wecom,
        settings=rt.settings,
        lane=lane,
        cache=rt.context_cache,
        missed=rt.missed_welcomes,
    )
    return 1


def _wakeup(rt: Runtime) -> WakeOne:
    return rt.welcome_lane.wakeup


WELCOME_LANE = WorkerSpec(
    name="welcome",
    step=_step,
    wakeup=_wakeup,
    # Threads mostly wait on WeCom: each welcome is two round trips (fetch the customer,
    # send), so the rate it sustains is threads / (2 x round trip).
    threads=lambda s: s.jobs.welcome_threads,
    idle_seconds=5.0,
)
