"""Wall time that passes only when a WeCom budget naps, moving the simulator's clock along."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from bot.runtime import Runtime
from bot.wecom.budget import SharedBudget
from bot.wecom.client import WeComClient
from wecom_sim import Simulator


class SharedTime:
    """Epoch seconds that move only when the budget naps, the simulator's clock along."""

    def __init__(self, sim: Simulator, on_nap: list[object]) -> None:
        self.now = datetime.now(UTC).timestamp()
        self.naps = 0
        self._sim = sim
        self.on_nap = on_nap

    def clock(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.naps += 1
        self._sim.advance_time(seconds)
        for hook in self.on_nap:
            assert callable(hook)
            hook()


def one_call_an_hour_client(
    rt: Runtime, t: SharedTime, *, stop: threading.Event | None = None
) -> WeComClient:
    """Return a client whose budget is one call a minute and an hour, napping on `t`."""
    budget = SharedBudget(
        rt.db,
        rt.settings.wecom.corp_id,
        per_minute=1,
        per_hour=1,
        interactive_reserve=0.0,
        clock=t.clock,
        sleep=t.sleep,
        stop=stop,
        nap_seconds=15.0,
    )
    return WeComClient(rt.settings.wecom, rt.settings.limits, db=rt.db, budget=budget, stop=stop)
