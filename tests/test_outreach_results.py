"""群发 results polled from the simulator over HTTP: per-customer outcomes, window, cadence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot.db.models import CampaignDelivery, CampaignTask, Customer, TouchedCustomer
from bot.outreach.results import POLL_EVERY, RESULTS_WINDOW, poll_results
from bot.runtime import Runtime
from jobs import registry
from jobs.outreach_results import OUTREACH_RESULTS
from tests.support.configs import settings_for
from tests.support.group_messages import CreatedTask, record_group_message
from tests.support.simulators import start_simulator
from wecom_sim import Simulator

TASK_API = "externalcontact/get_groupmsg_task"
RESULT_API = "externalcontact/get_groupmsg_send_result"
A, B, C, D = (f"wm_results_{x}_0000000000000000" for x in "abcd")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """The simulator with WeCom's per-customer quota at one 群发 a month (status 3 after it)."""
    simulator = start_simulator(monthly_quota=1)
    yield simulator
    simulator.stop()


@pytest.fixture
def rt(db_url: str, sim: Simulator) -> Iterator[Runtime]:
    runtime = Runtime(settings_for(db_url, sim))
    yield runtime
    runtime.close()


def _calls(sim: Simulator) -> tuple[int, int]:
    calls = sim.calls
    return calls.get(TASK_API, 0), calls.get(RESULT_API, 0)


def _deliveries(
    rt: Runtime, task: CreatedTask
) -> dict[str, tuple[str, int | None, datetime | None]]:
    with rt.db.read() as session:
        rows = session.execute(
            select(
                Customer.external_userid,
                CampaignDelivery.status,
                CampaignDelivery.send_status,
                CampaignDelivery.sent_at,
            )
            .join(Customer, Customer.id == CampaignDelivery.customer_id)
            .where(CampaignDelivery.task_id == task.id)
        ).all()
    return {ext: (status, send, sent) for ext, status, send, sent in rows}


def _task(rt: Runtime, task: CreatedTask) -> CampaignTask:
    with rt.db.read() as session:
        row = session.get(CampaignTask, task.id)
        assert row is not None
        return row


def test_confirmed_message_records_sent_not_friend_and_over_quota_then_stops(
    rt: Runtime, sim: Simulator
) -> None:
    sim.add_staff("zhang", "张三")
    for ext in (A, B, C, D):
        sim.add_relation("zhang", ext)
    # D already had this month's one 群发: the next one is over quota for D (status 3).
    warm = record_group_message(rt, campaign="预热", sender="zhang", customers=[D])
    assert sim.confirm_group_msg(warm.msgid, "zhang") == {D: 1}
    with rt.db.write() as session:  # as if already polled to the end
        session.execute(
            update(CampaignTask).where(CampaignTask.id == warm.id).values(results_final=True)
        )

    task = record_group_message(rt, campaign="回访", sender="zhang", customers=[A, B, C, D])
    sim.staff_deletes_customer(C, "zhang")  # C is no longer the member's friend
    t0 = task.attempted_at

    # Just created: WeCom is still dispatching (41063) — not an error, tried a minute later.
    first = poll_results(db=rt.db, wecom=rt.wecom, now=t0 + timedelta(seconds=1))
    assert (first.tasks, first.calls, first.dispatching, first.errors) == (1, 1, 1, 0)
    assert sim.calls.get((TASK_API, 41063)) == 1
    assert (
        poll_results(db=rt.db, wecom=rt.wecom, now=t0 + timedelta(seconds=30)).tasks == 0
    )  # not due yet
    sim.advance_time(5)

    # Due again, but the member has not confirmed: one call, no send_result, nothing moves.
    second = poll_results(db=rt.db, wecom=rt.wecom, now=t0 + timedelta(minutes=2))
    assert (second.tasks, second.calls, second.final) == (1, 1, 0)
    assert _calls(sim) == (2, 0)
    assert {s for s, _, _ in _deliveries(rt, task).values()} == {"created"}
    assert (
        poll_results(db=rt.db, wecom=rt.wecom, now=t0 + timedelta(minutes=20)).tasks == 0
    )  # every 30 minutes

    statuses = sim.confirm_group_msg(task.msgid, "zhang")
    assert statuses == {A: 1, B: 1, C: 2, D: 3}
    send_time = sim.group_msgs[task.msgid].sends[0].send_time

    third = poll_results(db=rt.db, wecom=rt.wecom, now=t0 + timedelta(minutes=2) + POLL_EVERY)
    assert (third.tasks, third.calls, third.final) == (1, 2, 1)
    assert dict(third.deliveries) == {"sent": 2, "not_friend": 1, "over_quota": 1}
    sent_at = datetime.fromtimestamp(send_time, UTC)
    assert _deliveries(rt, task) == {
        A: ("sent", 1, sent_at),
        B: ("sent", 1, sent_at),
        C: ("not_friend", 2, None),
        D: ("over_quota", 3, None),
    }
    with rt.db.read() as session:  # their reach metrics changed: re-tiered soon
        touched = set(
            session.scalars(
                select(Customer.external_userid).join(
                    TouchedCustomer, TouchedCustomer.customer_id == Customer.id
                )
            )
        )
    assert touched == {A, B, C, D}
    row = _task(rt, task)
    assert row.results_final is True
    assert row.polled_at == t0 + timedelta(minutes=2) + POLL_EVERY

    # Final: never polled again, however late.
    before = _calls(sim)
    for days in (1, 3, 30):
        assert poll_results(db=rt.db, wecom=rt.wecom, now=t0 + timedelta(days=days)).tasks == 0
    assert _calls(sim) == before == (3, 1)


def test_unconfirmed_after_the_window_then_no_more_calls(rt: Runtime, sim: Simulator) -> None:
    sim.groupmsg_task_delay = 0
    sim.add_staff("li", "李四")
    e, f = sim.add_relation("li"), sim.add_relation("li")
    task = record_group_message(rt, campaign="唤醒", sender="li", customers=[e, f])
    t0 = task.attempted_at

    hour = poll_results(db=rt.db, wecom=rt.wecom, now=t0 + timedelta(hours=1))
    assert (hour.tasks, hour.calls, hour.final) == (1, 1, 0)
    assert {s for s, _, _ in _deliveries(rt, task).values()} == {"created"}

    # Polls on the cadence until the window, then the last poll settles it.
    late = t0 + RESULTS_WINDOW - timedelta(minutes=10)
    assert poll_results(db=rt.db, wecom=rt.wecom, now=late).tasks == 1
    with rt.db.read() as session:
        next_at = session.scalar(
            select(CampaignTask.next_attempt_at).where(CampaignTask.id == task.id)
        )
    assert next_at == t0 + RESULTS_WINDOW  # the final look at the window's end, not later
    end = poll_results(db=rt.db, wecom=rt.wecom, now=t0 + RESULTS_WINDOW + timedelta(minutes=1))
    assert (end.tasks, end.calls, end.final) == (1, 1, 1)
    assert _deliveries(rt, task) == {e: ("unconfirmed", None, None), f: ("unconfirmed", None, None)}
    assert _task(rt, task).results_final is True
    assert _calls(sim) == (3, 0)

    assert poll_results(db=rt.db, wecom=rt.wecom, now=t0 + timedelta(days=10)).tasks == 0
    assert _calls(sim) == (3, 0)


def test_two_pollers_poll_a_due_task_once(rt: Runtime, sim: Simulator, db_url: str) -> None:
    sim.groupmsg_task_delay = 0
    sim.add_staff("wang", "王五")
    task = record_group_message(
        rt, campaign="并发", sender="wang", customers=[sim.add_relation("wang")]
    )
    other = Runtime(settings_for(db_url, sim))
    try:
        now = task.attempted_at + timedelta(minutes=1)
        got = [
            poll_results(db=rt.db, wecom=rt.wecom, now=now).tasks,
            poll_results(db=other.db, wecom=other.wecom, now=now).tasks,
        ]
    finally:
        other.close()
    assert sorted(got) == [0, 1]
    assert _calls(sim) == (1, 0)


def test_the_poller_is_a_registered_worker() -> None:
    assert OUTREACH_RESULTS in registry.workers()
