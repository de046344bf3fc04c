"""One staff-alert sender at a time: a crashed one is taken over, a slow one keeps the lease.

Time passes on injected clocks (the lease's, the claims', the WeCom budget's), never by
sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot import staff_alerts
from bot.db.models import Lease
from bot.runtime import Runtime
from bot.wecom.client import WeComClient
from tests.support.clock import UtcClock
from tests.support.configs import settings_for
from tests.support.shared_time import SharedTime, one_call_an_hour_client
from wecom_sim import Simulator

MEMBERS = ("alice", "bob")


class SenderCrashError(Exception):
    """The sender's process dies in the middle of a send."""


class CrashingClient(WeComClient):
    def send_app_message(self, *args: Any, **kwargs: Any) -> Any:
        raise SenderCrashError


@pytest.fixture
def rt(db_url: str, simulator: Simulator) -> Iterator[Runtime]:
    for member in MEMBERS:
        simulator.add_staff(member)
    runtime = Runtime(settings_for(db_url, simulator))
    with runtime.db.write() as session:
        for member in MEMBERS:
            for name in ("张三", "李四"):
                staff_alerts.enqueue(
                    session,
                    userid=member,
                    kind=staff_alerts.CUSTOMER_LOST,
                    subject=name,
                    text=f"客户 {name} 已将你删除",
                )
    yield runtime
    runtime.close()


def _sent(sim: Simulator) -> list[str]:
    return [m["touser"] for m in sim.app_messages]


def _holder(rt: Runtime) -> str | None:
    with rt.db.read() as session:
        name = staff_alerts.LEASE
        return session.scalars(select(Lease.owner).where(Lease.name == name)).one_or_none()


def test_a_crashed_senders_alerts_are_taken_over_after_the_lease(
    rt: Runtime, simulator: Simulator
) -> None:
    t = UtcClock()
    t.advance(staff_alerts.GATHER_SECONDS + 1)
    working = rt.wecom
    rt.wecom = CrashingClient(rt.settings.wecom, rt.settings.limits, db=rt.db)
    with pytest.raises(SenderCrashError):  # alice's alerts claimed, bob's not yet
        staff_alerts.drain("a", db=rt.db, wecom=rt.wecom, now=t)
    rt.wecom.close()
    rt.wecom = working
    t.advance(staff_alerts.LEASE_SECONDS - 1)
    assert staff_alerts.drain("b", db=rt.db, wecom=rt.wecom, now=t) == 0  # still a's
    t.advance(2)
    assert (
        staff_alerts.drain("b", db=rt.db, wecom=rt.wecom, now=t) == 2
    )  # bob's; alice's stay claimed by a
    assert (_holder(rt), _sent(simulator)) == ("b", ["bob"])
    t.advance(staff_alerts.QUEUE.claim_seconds)
    assert (
        staff_alerts.drain("b", db=rt.db, wecom=rt.wecom, now=t) == 2
    )  # a's abandoned claim, once
    assert staff_alerts.drain("b", db=rt.db, wecom=rt.wecom, now=t) == 0
    assert _sent(simulator) == ["bob", "alice"]


def test_a_sender_waiting_an_hour_for_budget_keeps_the_lease_and_its_claim(
    rt: Runtime, simulator: Simulator
) -> None:
    hooks: list[object] = []
    t = SharedTime(simulator, hooks)
    t.now += staff_alerts.GATHER_SECONDS + 1
    rt.wecom = one_call_an_hour_client(rt, t)
    other = Runtime(rt.settings)  # another process, with its own budget on the same clock
    other.wecom = one_call_an_hour_client(other, t)
    holders: list[str | None] = []
    taken_by_other: list[int] = []
    busy: list[bool] = []

    def other_sender() -> None:
        # Another process's sender tries at every nap, on the same clock (once at a
        # time: its own sends would nap on this clock too).
        if busy:
            return
        busy.append(True)
        taken_by_other.append(staff_alerts.drain("b", db=other.db, wecom=other.wecom, now=t.utc))
        holders.append(_holder(rt))
        busy.clear()

    hooks.append(other_sender)
    try:
        assert staff_alerts.drain("a", db=rt.db, wecom=rt.wecom, now=t.utc) == 4
    finally:
        other.close()
    # The second message waited out the hour, in naps, while the lease was renewed.
    assert set(holders) == {"a"}
    assert set(taken_by_other) == {0}
    assert t.naps * 15 >= 3600
    assert _sent(simulator) == ["alice", "bob"]
