"""An outbox worker waiting for WeCom budget: its claims hold, and a stop ends the wait.

The hourly budget (ours and the simulator's, set through its rate-limit control) is one
mark_tag; time passes on an injected clock that moves the simulator's clock with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.db.models import OutboxOperation
from bot.runtime import Runtime
from bot.tags import catalogue, outbox, push
from tests.support import parts
from tests.support.configs import settings_for
from tests.support.shared_time import SharedTime, one_call_an_hour_client
from wecom_sim import Simulator

MARK = "externalcontact/mark_tag"
LIMITS = {"calls_per_minute": 1, "calls_per_hour": 1, "interactive_reserve": 0.0}


@pytest.fixture
def rt(db_url: str, simulator: Simulator) -> Iterator[Runtime]:
    simulator.add_staff("alice", "Alice")
    runtime = Runtime(settings_for(db_url, simulator, limits=LIMITS))
    yield runtime
    runtime.close()


def _queue_two(rt: Runtime, simulator: Simulator) -> list[str]:
    """Make a tag (outside the mark_tag budget) and queue it for two relations."""
    exts = [simulator.add_relation("alice", name=f"客户{i}") for i in range(2)]
    (tag_id,) = catalogue.ensure(db=rt.db, wecom=rt.wecom, paths=[catalogue.TagPath("兴趣", "茶")])
    with rt.db.write() as session:
        for ext in exts:
            outbox.enqueue_tag_ids(
                session=session, staff_userid="alice", external_userid=ext, add=[tag_id], priority=0
            )
    simulator.set_rate_limit(MARK, per_minute=1, per_hour=1)
    return exts


def _ops(rt: Runtime) -> list[tuple[str, int]]:
    with rt.db.read() as session:
        rows = session.execute(
            select(OutboxOperation.status, OutboxOperation.attempts).order_by(OutboxOperation.id)
        )
        return [(status, attempts) for status, attempts in rows]


def test_a_worker_waiting_an_hour_for_budget_keeps_its_claims(
    rt: Runtime, simulator: Simulator
) -> None:
    _queue_two(rt, simulator)
    hooks: list[object] = []
    t = SharedTime(simulator, hooks)
    rt.wecom = one_call_an_hour_client(rt, t)
    taken_by_other: list[int] = []

    def other_worker() -> None:
        # Another worker looks for due work at every nap, on the same clock.
        with rt.db.write() as session:
            taken_by_other.extend(op.id for op in outbox.claim(session, limit=10, now=t.utc()))

    hooks.append(other_worker)
    assert outbox.drain(db=rt.db, wecom=rt.wecom, limit=10, now=t.utc) == 2
    # The second call waited out the hour, in naps, while its claim was renewed.
    assert t.naps * 15 >= 3600
    assert taken_by_other == []
    assert _ops(rt) == [("done", 1), ("done", 1)]
    assert simulator.calls[MARK] == 2
    assert simulator.calls.get((MARK, 45009), 0) == 0


def test_without_renewal_the_other_worker_would_take_it(rt: Runtime, simulator: Simulator) -> None:
    """The check above can fail: a claim left alone for over a minute is due to others."""
    _queue_two(rt, simulator)
    t = SharedTime(simulator, [])
    with rt.db.write() as session:
        mine = outbox.claim(session, limit=10, now=t.utc())
    t.sleep(outbox.CLAIM_SECONDS + 1)
    with rt.db.write() as session:
        theirs = outbox.claim(session, limit=10, now=t.utc())
    assert sorted(op.id for op in theirs) == sorted(op.id for op in mine)


def test_a_stop_ends_the_wait_for_the_hourly_budget_and_puts_the_work_back(
    rt: Runtime, simulator: Simulator
) -> None:
    exts = _queue_two(rt, simulator)
    stop = threading.Event()
    t = SharedTime(simulator, [lambda: stop.set() if t.naps == 3 else None])
    rt.wecom = one_call_an_hour_client(rt, t, stop=stop)
    assert outbox.drain(db=rt.db, wecom=rt.wecom, limit=10, now=t.utc) == 1
    assert t.naps == 3  # the first nap after the stop ended the wait
    assert _ops(rt) == [("done", 1), ("pending", 0)]
    assert simulator.calls[MARK] == 1
    with rt.db.read() as session:
        pending = session.scalars(
            select(OutboxOperation).where(OutboxOperation.status == "pending")
        ).one()
    assert (pending.external_userid, pending.locked_until) == (exts[1], None)


def test_a_real_wait_for_the_hourly_budget_ends_when_the_process_stops(
    rt: Runtime, simulator: Simulator
) -> None:
    _queue_two(rt, simulator)  # the real clock: the second mark_tag waits for the hour
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(push.drain_all(**parts.drain(rt), idle_poll=0.05))
    )
    worker.start()
    try:
        deadline = datetime.now(UTC).timestamp() + 60
        while _ops(rt)[0][0] != "done" and datetime.now(UTC).timestamp() < deadline:
            threading.Event().wait(0.05)
        assert _ops(rt)[0] == ("done", 1)
        rt.stopping.set()  # what `serve` does on SIGTERM before joining its threads
        worker.join(timeout=30)  # not the hour the budget would take
        assert not worker.is_alive()
    finally:
        rt.stopping.set()
        worker.join()
    assert result == [1]
    assert _ops(rt) == [("done", 1), ("pending", 0)]
