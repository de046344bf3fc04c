"""Tier tags in WeCom, the desired-vs-actual diff and the push, against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest
from sqlalchemy import select

from bot.db.models import (
    Customer,
    FollowRelation,
    OutboxOperation,
    Tag,
    TagGroup,
)
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tags import outbox, push
from tests.support import parts
from tests.support.tiers import (
    ACTIVITY,
    VALUE,
    assign_tiers,
    mark_tag_calls,
    relation_tag_names,
    synced_tier_runtime,
    tier_runtime,
    two_member_corp,
)
from wecom_sim import Simulator


@pytest.fixture
def corp(simulator: Simulator) -> list[str]:
    """Two members; alice has six customers, bob shares the first one."""
    return two_member_corp(simulator, "wm_cust_", 6)


@pytest.fixture
def rt(db_url: str, simulator: Simulator, corp: list[str]) -> Iterator[Runtime]:
    with closing(synced_tier_runtime(db_url, simulator, VALUE, ACTIVITY)) as runtime:
        yield runtime


def _push(rt: Runtime) -> push.TierPushPlan:
    plan = push.enqueue_tier_push(**parts.tier_push(rt))
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    return plan


def _statuses(rt: Runtime) -> list[str]:
    with rt.db.read() as session:
        return list(session.scalars(select(OutboxOperation.status).order_by(OutboxOperation.id)))


def test_first_push_creates_tags_in_tier_order_and_a_rerun_costs_nothing(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(
        rt, {corp[0]: {"value": "高价值", "activity": "活跃"}, corp[1]: {"value": "低价值"}}
    )
    plan = _push(rt)
    assert [str(p) for p in plan.tags.created] == [
        "价值分层/高价值",
        "价值分层/中价值",
        "价值分层/低价值",
        "活跃度/活跃",
        "活跃度/沉睡",
    ]
    # The first tier sorts first in the WeCom client (larger order first).
    groups = {g.group_name: g for g in rt.wecom.get_corp_tag_list()}
    assert [t.name for t in sorted(groups["价值分层"].tags, key=lambda t: -t.order)] == [
        "高价值",
        "中价值",
        "低价值",
    ]
    with rt.db.read() as session:
        managed = session.scalars(
            select(Tag.managed).join(TagGroup).where(TagGroup.name == "价值分层")
        )
        assert all(managed)
    # alice and bob both follow customer 0: one call each; customer 1: one call.
    assert plan.diff.changed == 3
    assert mark_tag_calls(simulator) == 3
    assert relation_tag_names(simulator, "alice", corp[0]) == {"价值分层/高价值", "活跃度/活跃"}
    assert relation_tag_names(simulator, "bob", corp[0]) == {"价值分层/高价值", "活跃度/活跃"}
    assert relation_tag_names(simulator, "alice", corp[1]) == {"价值分层/低价值"}
    assert relation_tag_names(simulator, "alice", corp[2]) == set()

    simulator.reset_counters()
    again = _push(rt)
    assert (again.diff.changed, again.diff.new_operations) == (0, 0)
    assert again.tags.calls == 0
    assert simulator.calls == {}
    assert _statuses(rt) == ["done"] * 3


def test_several_dimensions_changing_cost_one_call_per_relation(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {c: {"value": "低价值", "activity": "沉睡"} for c in corp[:4]})
    _push(rt)
    simulator.reset_counters()
    # Customers 1-3 move in both dimensions, customer 4 gets its first tiers, 5 nothing.
    assign_tiers(rt, {c: {"value": "高价值", "activity": "活跃"} for c in corp[1:4]})
    assign_tiers(rt, {corp[4]: {"value": "中价值", "activity": "沉睡"}})
    plan = _push(rt)
    assert plan.diff.changed == 4
    assert plan.diff.new_operations == 4
    assert (plan.diff.adds, plan.diff.removes) == (8, 6)
    assert mark_tag_calls(simulator) == 4
    for c in corp[1:4]:
        assert relation_tag_names(simulator, "alice", c) == {"价值分层/高价值", "活跃度/活跃"}
    assert relation_tag_names(simulator, "alice", corp[4]) == {"价值分层/中价值", "活跃度/沉睡"}
    # A customer losing a tier loses its tag; the other dimension stays.
    simulator.reset_counters()
    assign_tiers(rt, {corp[1]: {"activity": None}})
    _push(rt)
    assert mark_tag_calls(simulator) == 1
    assert relation_tag_names(simulator, "alice", corp[1]) == {"价值分层/高价值"}


def test_tags_the_bot_does_not_manage_are_left_alone(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    # A console tag inside a tier group and one in another group, both on the customer.
    console_in_group = simulator.admin_create_tag("价值分层", "手工标记")
    other = simulator.admin_create_tag("来源", "门店")
    simulator.staff_edit_tags("alice", corp[1], add=[console_in_group, other])
    run_sync(db=rt.db, wecom=rt.wecom)
    assign_tiers(rt, {corp[1]: {"value": "中价值"}})
    _push(rt)
    assert relation_tag_names(simulator, "alice", corp[1]) == {
        "价值分层/手工标记",
        "来源/门店",
        "价值分层/中价值",
    }
    assert "手工标记" in simulator.tag_catalogue()["价值分层"]
    # Dropping the tier again removes only the tier tag.
    simulator.reset_counters()
    assign_tiers(rt, {corp[1]: {"value": None}})
    _push(rt)
    assert mark_tag_calls(simulator) == 1
    assert relation_tag_names(simulator, "alice", corp[1]) == {"价值分层/手工标记", "来源/门店"}


def test_a_tier_tag_deleted_in_the_console_is_recreated_and_pushed_again(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {corp[0]: {"value": "高价值"}, corp[1]: {"value": "中价值"}})
    _push(rt)
    old_id = simulator.tag_catalogue()["价值分层"]["高价值"]
    simulator.admin_delete_tag(old_id)  # WeCom takes it off every customer
    assert relation_tag_names(simulator, "alice", corp[0]) == set()
    # The tag callback (or the nightly sync) refreshes the catalogue.
    run_sync(db=rt.db, wecom=rt.wecom)
    simulator.reset_counters()
    plan = _push(rt)
    assert [str(p) for p in plan.tags.created] == ["价值分层/高价值"]
    new_id = simulator.tag_catalogue()["价值分层"]["高价值"]
    assert new_id != old_id
    assert relation_tag_names(simulator, "alice", corp[0]) == {"价值分层/高价值"}
    assert relation_tag_names(simulator, "alice", corp[1]) == {"价值分层/中价值"}
    assert mark_tag_calls(simulator) == 2  # alice and bob for customer 0


def test_a_tier_removed_from_config_comes_off_and_its_tag_is_deleted(
    db_url: str, rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {corp[0]: {"value": "中价值"}, corp[1]: {"value": "低价值"}})
    _push(rt)
    simulator.reset_counters()
    fewer = {**VALUE, "tiers": VALUE["tiers"][:2]}  # 低价值 dropped
    rt2 = tier_runtime(db_url, simulator, fewer, ACTIVITY)
    try:
        plan = _push(rt2)
        assert [str(p) for p in plan.tags.deleted] == ["价值分层/低价值"]
        assert "低价值" not in simulator.tag_catalogue()["价值分层"]
        assert relation_tag_names(simulator, "alice", corp[1]) == set()
        assert relation_tag_names(simulator, "alice", corp[0]) == {"价值分层/中价值"}
        # Deleting the tag took it off everyone: no mark_tag needed.
        assert mark_tag_calls(simulator) == 0
        simulator.reset_counters()
        assert _push(rt2).diff.changed == 0
        assert simulator.calls == {}
    finally:
        rt2.close()


def test_not_a_friend_any_more_marks_the_relation_lost(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {corp[2]: {"value": "高价值"}})
    # The customer deleted alice; no callback reached us.
    with simulator.state.lock:
        del simulator.state.by_user["alice"][corp[2]]
        del simulator.state.by_customer[corp[2]]["alice"]
    _push(rt)
    with rt.db.read() as session:
        op = session.scalars(select(OutboxOperation)).one()
        relation = session.scalars(
            select(FollowRelation).join(Customer).where(Customer.external_userid == corp[2])
        ).one()
    assert (op.status, op.last_errcode) == ("dead", 84061)
    assert relation.status == "lost"
    # A lost relation is no longer diffed.
    simulator.reset_counters()
    assert _push(rt).diff.changed == 0
    assert simulator.calls == {}


def test_an_invalid_tag_id_refreshes_the_catalogue_and_retries_once(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {corp[0]: {"value": "高价值"}})
    push.enqueue_tier_push(**parts.tier_push(rt))  # queued, not yet sent
    simulator.inject_fault("externalcontact/mark_tag", errcode=40068, count=1)
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    assert simulator.calls[("externalcontact/mark_tag", 40068)] == 1
    assert simulator.calls.get("externalcontact/get_corp_tag_list", 0) >= 1
    assert relation_tag_names(simulator, "alice", corp[0]) == {"价值分层/高价值"}
    assert _statuses(rt) == ["done", "done"]

    # Twice invalid: one refresh, one retry, then a dead letter with the reason.
    assign_tiers(rt, {corp[1]: {"value": "中价值"}})
    push.enqueue_tier_push(**parts.tier_push(rt))
    simulator.reset_counters()
    simulator.inject_fault("externalcontact/mark_tag", errcode=40068, count=2)
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    assert simulator.calls[("externalcontact/mark_tag", 40068)] == 2
    assert simulator.calls["externalcontact/mark_tag"] == 2
    with rt.db.read() as session:
        dead = session.scalars(select(OutboxOperation).where(OutboxOperation.status == "dead"))
        assert [(op.last_errcode, op.external_userid) for op in dead] == [(40068, corp[1])]


def test_a_long_push_drains_highest_value_first(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    order = ["低价值", "中价值", "高价值", None, "中价值", "低价值"]
    assign_tiers(
        rt, {c: {"value": v, "activity": "沉睡"} for c, v in zip(corp, order, strict=True)}
    )
    push.enqueue_tier_push(**parts.tier_push(rt))
    # A scan's tag change queued after the bulk push still goes first.
    with rt.db.write() as session:
        tag = session.scalars(select(Tag).where(Tag.name == "活跃")).one()
        outbox.enqueue_tag_ids(
            session=session, staff_userid="alice", external_userid=corp[5], add=[tag.id]
        )
    sent: list[str] = []
    seen: set[int] = set()
    while push.drain_all(**parts.drain(rt), batch=1, max_operations=1):
        with rt.db.read() as session:
            done = session.execute(
                select(
                    OutboxOperation.id,
                    OutboxOperation.staff_userid,
                    OutboxOperation.external_userid,
                ).where(OutboxOperation.status == "done")
            ).all()
        (new,) = [row for row in done if row.id not in seen]
        seen.add(new.id)
        sent.append(f"{new.staff_userid}:{new.external_userid}")
    by_ext = dict(zip(corp, order, strict=True))
    tiers = [by_ext[s.split(":")[1]] for s in sent]
    assert sent[0] == f"alice:{corp[5]}"  # merged with the scan's change: interactive
    assert tiers[1:] == ["高价值", "中价值", "中价值", "低价值", "低价值", None]
    assert sent[4:6] == [f"alice:{corp[0]}", f"bob:{corp[0]}"]
