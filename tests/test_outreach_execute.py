"""Performing a planned run exactly once, against the simulator over HTTP, on both databases."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot import staff_alerts
from bot.config import settings_from_mapping
from bot.db.models import CampaignRun, StaffAlert
from bot.db.types import utcnow
from bot.outreach import claims, execute, task_plan
from bot.outreach.claims import SETTLE_SECONDS
from bot.runtime import Runtime
from jobs.outreach import OUTREACH_WORKER
from tests.support import parts
from tests.support.corp import base_config
from tests.support.outreach import (
    Member,
    deliveries,
    dispatch_elsewhere,
    members_in_sim,
    record_run,
    run_status,
    seeded_member,
    tasks,
)
from tests.support.waiting import wait_for
from wecom_sim import Simulator

ADD = "externalcontact/add_msg_template"
LIST = "externalcontact/get_groupmsg_list_v2"
TASK = "externalcontact/get_groupmsg_task"
SEND = "message/send"
LINK = {"type": "link", "title": "冬季新品", "url": "https://shop.example/new", "desc": "限时"}
VIP = {
    "name": "高价值关怀",
    "action": "group_message",
    "dimension": "价值",
    "tiers": ["高价值"],
    "text": "您好，我是{staff}，冬季新品给您留了一份",
    "attachments": [LINK],
}
CALLBACK = {
    "name": "沉睡回访",
    "action": "follow_up",
    "dimension": "价值",
    "on_enter": "沉睡客户",
    "text": "进入沉睡，建议电话回访",
}


def config_for(
    db_url: str, sim: Simulator, *, timeout: float = 10.0, **outreach: Any
) -> dict[str, Any]:
    config = base_config(db_url, sim.api_base)
    config["wecom"]["timeout_seconds"] = timeout
    config["staff"] = {"alice": "小爱"}
    config["outreach"] = {"quiet_hours": "", "campaigns": [VIP, CALLBACK], **outreach}
    # The campaigns' dimension, so check-config accepts them (runs are built by hand here).
    config["tiering"] = {
        "dimensions": [
            {
                "name": "价值",
                "tag_group": "价值分层",
                "tiers": [
                    {"tag": "高价值", "when": "spend_365d >= 5000"},
                    {"tag": "沉睡客户", "when": "days_since_last_order > 180"},
                ],
            }
        ]
    }
    return config


def runtime_for(db_url: str, sim: Simulator, *, timeout: float = 10.0, **outreach: Any) -> Runtime:
    config = config_for(db_url, sim, timeout=timeout, **outreach)
    return Runtime(settings_from_mapping(config, environ={}))


@pytest.fixture
def rt(db_url: str, simulator: Simulator) -> Iterator[Runtime]:
    runtime = runtime_for(db_url, simulator)
    yield runtime
    runtime.wecom.close()
    runtime.close()


def night_and_morning(rt: Runtime) -> tuple[datetime, datetime]:
    """Return 23:30 two days from now and 08:00 the next morning (local), in UTC."""
    day = (utcnow() + timedelta(days=2)).astimezone(rt.settings.tz).date()
    night = datetime.combine(day, time(23, 30), tzinfo=rt.settings.tz)
    morning = datetime.combine(day + timedelta(days=1), time(8, 0), tzinfo=rt.settings.tz)
    return night.astimezone(UTC), morning.astimezone(UTC)


def outcome(kind: str, name: str) -> float:
    """Read tagbot_outreach_tasks_total for one kind and outcome."""
    for metric in claims.OUTCOMES.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels == {"kind": kind, "outcome": name}:
                return sample.value
    return 0.0


def alerts(rt: Runtime) -> list[StaffAlert]:
    with rt.db.read() as session:
        found = list(session.scalars(select(StaffAlert).order_by(StaffAlert.id)))
        session.expunge_all()
        return found


def _pending(rt: Runtime) -> bool:
    return any(a.status != "sent" for a in alerts(rt))


def test_one_group_message_per_member_with_their_customers(
    rt: Runtime, simulator: Simulator
) -> None:
    alice, bob = members_in_sim(simulator, {"alice": ("Alice", 3), "bob": ("王波", 2)})
    simulator.add_staff("carol", "Carol")
    gone = simulator.add_relation("carol")  # bob is no friend of this one: WeCom fails it
    bob_with_gone = Member(bob.userid, bob.name, [*bob.customers, (gone, "走了的")])
    held_out = simulator.add_relation("alice", name="对照组")
    run_id = record_run(
        rt, VIP["name"], "group_message", [alice, bob_with_gone], holdout=[(held_out, "对照组")]
    )

    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "done"

    msgs = sorted(simulator.group_msgs.values(), key=lambda m: m.sender)
    assert [m.sender for m in msgs] == ["alice", "bob"]
    assert [sorted(s.external_userid for s in m.sends) for m in msgs] == [
        sorted(e for e, _ in alice.customers),
        sorted(e for e, _ in bob.customers),
    ]
    assert msgs[1].fail_list == [gone]
    # {staff}: the configured display name, else the name from the staff table
    assert msgs[0].text == "您好，我是小爱，冬季新品给您留了一份"
    assert msgs[1].text == "您好，我是王波，冬季新品给您留了一份"
    assert msgs[0].attachments == [
        {
            "msgtype": "link",
            "link": {"title": "冬季新品", "url": "https://shop.example/new", "desc": "限时"},
        }
    ]
    found = tasks(rt, run_id)
    assert [(t.sender, t.batch, t.customers, t.status, t.attempts) for t in found] == [
        ("alice", 0, 3, "created", 1),
        ("bob", 0, 3, "created", 1),
    ]
    assert {t.msgid for t in found} == {m.msgid for m in msgs}
    states = deliveries(rt, run_id)
    assert states[gone] == ("failed", found[1].id)
    assert states[held_out] == ("holdout", None)
    assert {states[e] for e, _ in alice.customers} == {("created", found[0].id)}
    assert {states[e] for e, _ in bob.customers} == {("created", found[1].id)}
    notices = alerts(rt)
    assert [(a.userid, a.dedup_key, a.text) for a in notices] == [
        (
            "alice",
            f"groupmsg:{found[0].id}",
            "你有3 位高价值客户的群发待确认，请在企业微信「客户联系→群发助手」中确认发送",
        ),
        (
            "bob",
            f"groupmsg:{found[1].id}",
            "你有2 位高价值客户的群发待确认，请在企业微信「客户联系→群发助手」中确认发送",
        ),
    ]
    # The staff alert worker delivers the notices as app messages.
    wait_for(
        lambda: staff_alerts.drain("test", db=rt.db, wecom=rt.wecom) >= 0 and not _pending(rt),
        what="notices",
    )
    assert sorted((m["touser"], m["text"]["content"]) for m in simulator.app_messages) == sorted(
        (a.userid, a.text) for a in notices
    )
    # 41063-free: nothing listed or polled right after creating
    assert simulator.calls.get(LIST, 0) == 0
    assert simulator.calls.get(TASK, 0) == 0

    # A rerun of a done run, and a worker pass, send nothing.
    calls = simulator.calls.get(ADD, 0)
    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "done"
    assert execute.perform_due(**parts.outreach(rt)) == 0
    assert OUTREACH_WORKER.step(rt) == 0
    assert simulator.calls.get(ADD, 0) == calls == 2
    assert len(alerts(rt)) == 2


def test_more_than_ten_thousand_customers_split_into_batches(
    rt: Runtime, simulator: Simulator
) -> None:
    member = seeded_member(simulator, "big", 10_001)
    run_id = record_run(rt, VIP["name"], "group_message", [member])

    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "done"

    found = tasks(rt, run_id)
    assert [(t.batch, t.customers, t.status) for t in found] == [
        (0, 10_000, "created"),
        (1, 1, "created"),
    ]
    sizes = sorted(len(m.sends) for m in simulator.group_msgs.values())
    assert sizes == [1, 10_000]
    everyone = {
        e for m in simulator.group_msgs.values() for s in m.sends for e in [s.external_userid]
    }
    assert everyone == {e for e, _ in member.customers}
    states = deliveries(rt, run_id)
    assert sum(1 for s, t in states.values() if s == "created" and t == found[0].id) == 10_000
    assert sum(1 for s, t in states.values() if s == "created" and t == found[1].id) == 1


@pytest.fixture
def impatient(db_url: str, simulator: Simulator) -> Iterator[Runtime]:
    """A runtime whose WeCom calls time out after 0.5 s."""
    runtime = runtime_for(db_url, simulator, timeout=0.5)
    yield runtime
    runtime.wecom.close()
    runtime.close()


def test_a_timeout_after_wecom_created_the_task_is_resolved_not_retried(
    impatient: Runtime, simulator: Simulator
) -> None:
    rt = impatient
    settled, resolved = outcome("group_message", "settle"), outcome("group_message", "resolved")
    (alice,) = members_in_sim(simulator, {"alice": ("Alice", 2)})
    run_id = record_run(rt, VIP["name"], "group_message", [alice])
    simulator.inject_stall(ADD, 1.5)  # the answer comes after the client gave up (0.5 s)

    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "sending"
    (task,) = tasks(rt, run_id)
    assert (task.status, task.attempts, task.msgid) == ("calling", 1, None)
    wait_for(lambda: len(simulator.group_msgs) == 1, what="WeCom to create it anyway")

    # Until it settles nothing is called; afterwards it is resolved by listing, once.
    assert execute.perform_due(**parts.outreach(rt)) == 0
    later = utcnow() + timedelta(seconds=SETTLE_SECONDS + 1)
    assert execute.perform_due(**parts.outreach(rt), clock=lambda: later) == 1

    (msgid,) = simulator.group_msgs
    (task,) = tasks(rt, run_id)
    assert (task.status, task.msgid, task.attempts) == ("created", msgid, 1)
    assert simulator.calls[ADD] == 1
    assert simulator.calls[LIST] == 1
    assert outcome("group_message", "settle") == settled + 1
    assert outcome("group_message", "resolved") == resolved + 1
    assert run_status(rt, run_id) == "done"
    assert {s for s, _ in deliveries(rt, run_id).values()} == {"created"}
    assert [a.dedup_key for a in alerts(rt)] == [f"groupmsg:{task.id}"]
    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id, clock=lambda: later) == "done"
    assert simulator.calls[ADD] == 1


def test_a_crash_before_the_request_left_is_called_again_once(
    rt: Runtime, simulator: Simulator
) -> None:
    (alice,) = members_in_sim(simulator, {"alice": ("Alice", 2)})
    first = record_run(rt, VIP["name"], "group_message", [alice])
    assert execute.dispatch_run(**parts.outreach(rt), run_id=first) == "done"
    (earlier,) = tasks(rt, first)
    # A second run, same sender, same text: the process records `calling`, then dies
    # before its request is sent.
    run_id = record_run(rt, VIP["name"], "group_message", [alice])
    assert execute.prepare_run(run_id, db=rt.db, settings=rt.settings) == "sending"
    with rt.db.write() as session:
        claimed = claims.claim(utcnow(), session=session, run_id=run_id)
    assert claimed is not None
    assert not claimed.resolving
    assert (
        execute.perform_due(**parts.outreach(rt)) == 0
    )  # still within its claim: nobody touches it

    # Past its claim deadline it is resolved: the one message with its text is the first
    # run's (held by that task), so WeCom has none of this one's and it is called again.
    later = utcnow() + timedelta(seconds=claims.CLAIM_SECONDS + 1)
    assert execute.perform_due(**parts.outreach(rt), clock=lambda: later) == 2  # resolve, then call
    assert simulator.calls[ADD] == 2
    assert simulator.calls[LIST] == 1
    assert len(simulator.group_msgs) == 2
    (task,) = tasks(rt, run_id)
    assert (task.status, task.attempts) == ("created", 2)
    assert task.msgid in simulator.group_msgs
    assert task.msgid != earlier.msgid
    assert run_status(rt, run_id) == "done"


def test_a_crash_after_wecom_created_the_task_resolves_to_it(
    rt: Runtime, simulator: Simulator
) -> None:
    (alice,) = members_in_sim(simulator, {"alice": ("Alice", 2)})
    run_id = record_run(rt, VIP["name"], "group_message", [alice])
    assert execute.prepare_run(run_id, db=rt.db, settings=rt.settings) == "sending"
    with rt.db.write() as session:
        claimed = claims.claim(utcnow(), session=session, run_id=run_id)
    assert claimed is not None
    # The request reached WeCom; the process died before recording the answer.
    msgid, _ = rt.wecom.add_msg_template(
        sender="alice", external_userids=[e for e, _ in alice.customers], text=claimed.text
    )

    later = utcnow() + timedelta(seconds=claims.CLAIM_SECONDS + 1)
    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id, clock=lambda: later) == "done"
    assert simulator.calls[ADD] == 1
    assert list(simulator.group_msgs) == [msgid]
    (task,) = tasks(rt, run_id)
    assert (task.status, task.msgid, task.attempts) == ("created", msgid, 1)
    assert {s for s, _ in deliveries(rt, run_id).values()} == {"created"}
    assert len(alerts(rt)) == 1


@pytest.mark.slow  # a real process, killed
def test_kill_9_while_wecom_creates_the_task_resolves_to_it(
    db_url: str, rt: Runtime, simulator: Simulator
) -> None:
    (alice,) = members_in_sim(simulator, {"alice": ("Alice", 2)})
    run_id = record_run(rt, VIP["name"], "group_message", [alice])
    simulator.inject_stall(ADD, 3.0)  # WeCom takes its time; the process dies meanwhile
    proc = dispatch_elsewhere(config_for(db_url, simulator), run_id)
    try:
        wait_for(lambda: simulator.calls.get(ADD, 0) == 1, timeout=60, what="the request")
        assert [t.status for t in tasks(rt, run_id)] == ["calling"]  # recorded before it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    wait_for(lambda: len(simulator.group_msgs) == 1, what="WeCom to create it anyway")
    assert [t.status for t in tasks(rt, run_id)] == ["calling"]

    later = utcnow() + timedelta(seconds=claims.CLAIM_SECONDS + 1)
    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id, clock=lambda: later) == "done"
    (msgid,) = simulator.group_msgs
    (task,) = tasks(rt, run_id)
    assert (task.status, task.msgid, task.attempts) == ("created", msgid, 1)
    assert simulator.calls[ADD] == 1
    assert len(alerts(rt)) == 1


def test_quiet_hours_hold_the_run_until_they_end(db_url: str, simulator: Simulator) -> None:
    rt = runtime_for(db_url, simulator, quiet_hours="22:00-08:00")
    try:
        (alice,) = members_in_sim(simulator, {"alice": ("Alice", 2)})
        run_id = record_run(rt, VIP["name"], "group_message", [alice])
        night, morning = night_and_morning(rt)

        assert (
            execute.dispatch_run(**parts.outreach(rt), run_id=run_id, clock=lambda: night) == "held"
        )
        assert execute.release_held(**parts.outreach(rt), clock=lambda: night) == 0
        assert (
            execute.release_held(**parts.outreach(rt), clock=lambda: morning - timedelta(minutes=1))
            == 0
        )
        assert tasks(rt, run_id) == []
        assert simulator.calls.get(ADD, 0) == 0
        assert run_status(rt, run_id) == "held"

        assert execute.release_held(**parts.outreach(rt), clock=lambda: morning) == 1
        assert run_status(rt, run_id) == "done"
        assert simulator.calls[ADD] == 1
        assert execute.release_held(**parts.outreach(rt), clock=lambda: morning) == 0
    finally:
        rt.wecom.close()
        rt.close()


def test_a_retry_due_in_quiet_hours_waits_for_them_to_end(
    db_url: str, simulator: Simulator
) -> None:
    rt = runtime_for(db_url, simulator, quiet_hours="22:00-08:00")
    try:
        (alice,) = members_in_sim(simulator, {"alice": ("Alice", 1)})
        run_id = record_run(rt, VIP["name"], "group_message", [alice])
        night, morning = night_and_morning(rt)
        evening = night - timedelta(hours=2)
        simulator.inject_fault(ADD, errcode=-1, count=4)  # busy beyond the adapter's retries
        assert (
            execute.dispatch_run(**parts.outreach(rt), run_id=run_id, clock=lambda: evening)
            == "sending"
        )
        assert [t.status for t in tasks(rt, run_id)] == ["pending"]

        assert execute.perform_due(**parts.outreach(rt), clock=lambda: night) == 0  # due, but quiet
        assert simulator.calls[ADD] == 4
        assert execute.perform_due(**parts.outreach(rt), clock=lambda: morning) == 1
        assert simulator.calls[ADD] == 5
        assert [t.status for t in tasks(rt, run_id)] == ["created"]
    finally:
        rt.wecom.close()
        rt.close()


def test_the_worker_releases_a_held_run(rt: Runtime, simulator: Simulator) -> None:
    (alice,) = members_in_sim(simulator, {"alice": ("Alice", 1)})
    run_id = record_run(rt, VIP["name"], "group_message", [alice], status="held")
    assert OUTREACH_WORKER.step(rt) >= 1
    assert run_status(rt, run_id) == "done"
    assert len(simulator.group_msgs) == 1


def test_follow_up_tells_each_member_whom_to_call(rt: Runtime, simulator: Simulator) -> None:
    alice, bob = members_in_sim(simulator, {"alice": ("Alice", 3), "bob": ("王波", 1)})
    run_id = record_run(rt, CALLBACK["name"], "follow_up", [alice, bob], tier="沉睡客户")

    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "done"

    sent = {m["touser"]: m["text"]["content"] for m in simulator.app_messages}
    names = "、".join(n for _, n in alice.customers)
    assert sent == {
        "alice": f"3 位沉睡客户进入沉睡，建议电话回访：{names}",
        "bob": "1 位沉睡客户进入沉睡，建议电话回访：王波的客户0",
    }
    assert simulator.calls.get(ADD, 0) == 0  # no customer is messaged
    assert [(t.sender, t.status, t.customers) for t in tasks(rt, run_id)] == [
        ("alice", "sent", 3),
        ("bob", "sent", 1),
    ]
    assert {s for s, _ in deliveries(rt, run_id).values()} == {"notified"}
    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "done"
    assert simulator.calls[SEND] == 2


def test_a_long_follow_up_list_stays_under_the_message_limit(
    rt: Runtime, simulator: Simulator
) -> None:
    member = seeded_member(simulator, "many", 120)
    run_id = record_run(rt, CALLBACK["name"], "follow_up", [member], tier="沉睡客户")
    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "done"
    (message,) = simulator.app_messages
    text = message["text"]["content"]
    assert len(text.encode()) <= 2048
    assert text.startswith("120 位沉睡客户进入沉睡，建议电话回访：")
    assert text.endswith("…等 120 位")
    assert text.count("、") == 49  # the first 50 names


def test_a_follow_up_left_calling_by_a_crash_is_sent_again_as_a_new_attempt(
    rt: Runtime, simulator: Simulator
) -> None:
    (alice,) = members_in_sim(simulator, {"alice": ("Alice", 2)})
    run_id = record_run(rt, CALLBACK["name"], "follow_up", [alice], tier="沉睡客户")
    assert execute.prepare_run(run_id, db=rt.db, settings=rt.settings) == "sending"
    with rt.db.write() as session:  # the process records `calling`, then dies
        assert claims.claim(utcnow(), session=session, run_id=run_id) is not None
    assert (
        execute.perform_due(**parts.outreach(rt)) == 0
    )  # still within its claim: nobody touches it

    later = utcnow() + timedelta(seconds=claims.CLAIM_SECONDS + 1)
    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id, clock=lambda: later) == "done"
    assert simulator.calls[SEND] == 1
    (task,) = tasks(rt, run_id)
    assert (task.status, task.attempts, task.attempted_at) == ("sent", 2, later)


def test_busy_wecom_backs_off_and_a_refusal_fails_the_task(
    rt: Runtime, simulator: Simulator
) -> None:
    alice, bob = members_in_sim(simulator, {"alice": ("Alice", 1), "bob": ("王波", 1)})
    run_id = record_run(rt, VIP["name"], "group_message", [alice, bob])
    simulator.inject_fault(ADD, errcode=-1, count=4)  # past the adapter's own retries
    simulator.inject_fault(ADD, errcode=41048, count=1)  # then a permanent answer (bob)

    assert execute.dispatch_run(**parts.outreach(rt), run_id=run_id) == "sending"
    first = tasks(rt, run_id)
    assert [(t.sender, t.status) for t in first] == [("alice", "pending"), ("bob", "failed")]
    assert first[0].next_attempt_at > utcnow()
    assert "-1" in (first[0].last_error or "")
    assert "41048" in (first[1].last_error or "")
    states = deliveries(rt, run_id)
    assert states[bob.customers[0][0]][0] == "failed"
    assert states[alice.customers[0][0]][0] == "queued"

    later = utcnow() + timedelta(hours=1)
    assert execute.perform_due(**parts.outreach(rt), clock=lambda: later) == 1
    assert [t.status for t in tasks(rt, run_id)] == ["created", "failed"]
    assert run_status(rt, run_id) == "done"
    assert len(simulator.group_msgs) == 1


def test_two_processes_never_perform_one_task(
    db_url: str, rt: Runtime, simulator: Simulator
) -> None:
    members = members_in_sim(simulator, {f"m{i}": (f"成员{i}", 2) for i in range(6)})
    run_id = record_run(rt, VIP["name"], "group_message", members)
    assert execute.prepare_run(run_id, db=rt.db, settings=rt.settings) == "sending"
    simulator.inject_stall(ADD, 0.2, count=6)  # calls overlap: both workers are busy at once
    other = runtime_for(db_url, simulator)
    taken: list[int] = []
    try:
        workers = [
            threading.Thread(
                target=lambda r=r: taken.append(execute.perform_due(**parts.outreach(r)))
            )
            for r in (rt, other)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
    finally:
        other.wecom.close()
        other.close()
    assert sum(taken) == 6
    assert simulator.calls[ADD] == 6
    assert sorted(m.sender for m in simulator.group_msgs.values()) == [f"m{i}" for i in range(6)]
    assert {t.status for t in tasks(rt, run_id)} == {"created"}
    assert run_status(rt, run_id) == "done"


def test_batches_of_the_whole_treatment_for_a_webhook(rt: Runtime, simulator: Simulator) -> None:
    alice, bob = members_in_sim(simulator, {"alice": ("Alice", 3), "bob": ("王波", 2)})
    run_id = record_run(rt, VIP["name"], "webhook", [alice, bob])
    with rt.db.write() as session:
        run = session.get(CampaignRun, run_id)
        assert run is not None
        made = task_plan.create_tasks(
            session, run, text_for=lambda _s: "", batch_max=2, now=utcnow(), by_staff=False
        )
    assert made == 3
    found = tasks(rt, run_id)
    assert [(t.sender, t.batch, t.customers, t.kind) for t in found] == [
        ("", 0, 2, "webhook"),
        ("", 1, 2, "webhook"),
        ("", 2, 1, "webhook"),
    ]
    states = deliveries(rt, run_id)
    assert sorted(t for _, t in states.values()) == sorted(
        [found[0].id] * 2 + [found[1].id] * 2 + [found[2].id]
    )
    assert {s for s, _ in states.values()} == {"queued"}


def test_the_worker_is_registered() -> None:
    from jobs import registry

    assert OUTREACH_WORKER in registry.workers()
