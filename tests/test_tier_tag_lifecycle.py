"""Tier tags that outlive their use: tag_from values nobody holds, dimensions dropped.

Against the simulator over HTTP: the bot deletes only what it made, in as few calls as
WeCom allows (deleting a tag takes it off every customer; deleting a group, its tags).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest
from sqlalchemy import func, select

from bot.channels import live_codes
from bot.db.models import TagGroup, TierAssignment
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tags import push
from bot.tags.catalogue import TagPath
from tests.support import parts
from tests.support.tiers import (
    ACTIVITY,
    VALUE,
    assign_tiers,
    relation_tag_names,
    synced_tier_runtime,
    two_member_corp,
)
from wecom_sim import Simulator

REGION = {"name": "region", "tag_group": "地区", "tag_from": "profile.region"}


@pytest.fixture
def corp(simulator: Simulator) -> list[str]:
    """Two members; alice has four customers, bob shares the first one."""
    return two_member_corp(simulator, "wm_life_", 4)


@pytest.fixture
def rt(db_url: str, simulator: Simulator, corp: list[str]) -> Iterator[Runtime]:
    with closing(synced_tier_runtime(db_url, simulator, VALUE, ACTIVITY, REGION)) as runtime:
        yield runtime


def _push(rt: Runtime) -> push.TierPushPlan:
    plan = push.enqueue_tier_push(**parts.tier_push(rt))
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    return plan


def _push_again_costs_nothing(rt: Runtime, sim: Simulator) -> None:
    sim.reset_counters()
    again = _push(rt)
    assert (again.tags.calls, again.diff.changed) == (0, 0)
    assert sim.calls == {}


def _calls(sim: Simulator, api: str) -> int:
    return sim.calls.get(f"externalcontact/{api}", 0)


def _assignments(rt: Runtime, dimension: str) -> int:
    with rt.db.read() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(TierAssignment)
                .where(TierAssignment.dimension == dimension)
            )
            or 0
        )


def _serves(rt: Runtime, group: str) -> str | None:
    """The tier dimension the catalogue records for a live group."""
    with rt.db.read() as session:
        return session.scalar(
            select(TagGroup.tier_dimension).where(
                TagGroup.name == group, TagGroup.deleted.is_(False)
            )
        )


def test_a_tag_from_value_nobody_holds_is_deleted_with_one_call(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    console = simulator.admin_create_tag("地区", "手工")
    simulator.staff_edit_tags("alice", corp[2], add=[console])
    run_sync(db=rt.db, wecom=rt.wecom)
    assign_tiers(
        rt,
        {
            corp[0]: {"region": "上海"},
            corp[1]: {"region": "北京"},
            corp[2]: {"region": "广州"},
        },
    )
    _push(rt)
    assert set(simulator.tag_catalogue()["地区"]) == {"上海", "北京", "广州", "手工"}
    assert relation_tag_names(simulator, "bob", corp[0]) == {"地区/上海"}

    simulator.reset_counters()
    # 北京 and 广州 disappear: their customers moved (or left the dimension).
    assign_tiers(rt, {corp[1]: {"region": "上海"}, corp[2]: {"region": None}})
    plan = _push(rt)
    assert sorted(str(p) for p in plan.tags.deleted) == ["地区/北京", "地区/广州"]
    assert set(simulator.tag_catalogue()["地区"]) == {"上海", "手工"}  # the console's stays
    assert _calls(simulator, "del_corp_tag") == 1
    # Deleting took 北京 off customer 1; only the new tag needs a mark_tag.
    assert _calls(simulator, "mark_tag") == 1
    assert relation_tag_names(simulator, "alice", corp[1]) == {"地区/上海"}
    assert relation_tag_names(simulator, "alice", corp[2]) == {"地区/手工"}
    assert relation_tag_names(simulator, "alice", corp[0]) == {"地区/上海"}

    _push_again_costs_nothing(rt, simulator)


def test_a_dimension_removed_from_config_loses_its_tags_and_its_group(
    db_url: str, rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(
        rt,
        {
            corp[0]: {"value": "高价值", "activity": "活跃"},
            corp[1]: {"value": "低价值", "activity": "沉睡"},
        },
    )
    _push(rt)
    assert relation_tag_names(simulator, "bob", corp[0]) == {"价值分层/高价值", "活跃度/活跃"}
    simulator.reset_counters()
    rt2 = synced_tier_runtime(db_url, simulator, VALUE, REGION)  # 活跃度 dropped
    try:
        plan = _push(rt2)
        assert plan.tags.deleted_groups == ["活跃度"]
        assert sorted(str(p) for p in plan.tags.deleted) == ["活跃度/沉睡", "活跃度/活跃"]
        assert "活跃度" not in simulator.tag_catalogue()
        # One call deletes the group and, with it, every tag on every customer.
        assert _calls(simulator, "del_corp_tag") == 1
        assert _calls(simulator, "mark_tag") == 0
        assert relation_tag_names(simulator, "bob", corp[0]) == {"价值分层/高价值"}
        assert relation_tag_names(simulator, "alice", corp[1]) == {"价值分层/低价值"}
        assert _assignments(rt2, "activity") == 0
        assert _assignments(rt2, "value") == 2

        _push_again_costs_nothing(rt2, simulator)
    finally:
        rt2.close()


def test_a_dropped_dimensions_group_keeps_tags_the_bot_did_not_make(
    db_url: str, rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {corp[0]: {"activity": "活跃"}, corp[1]: {"activity": "沉睡"}})
    _push(rt)
    console = simulator.admin_create_tag("活跃度", "人工关注")
    simulator.staff_edit_tags("alice", corp[1], add=[console])
    # A channel's group, made by the bot, with a tag named like the tier its customer has.
    live_codes.create(
        live_codes.ChannelSpec(name="活动", staff=("alice",), tags=(TagPath("来源", "活跃"),)),
        db=rt.db,
        wecom=rt.wecom,
    )
    channel_tag = simulator.tag_catalogue()["来源"]["活跃"]
    simulator.staff_edit_tags("alice", corp[0], add=[channel_tag])
    run_sync(db=rt.db, wecom=rt.wecom)
    simulator.reset_counters()
    rt2 = synced_tier_runtime(db_url, simulator, VALUE, REGION)
    try:
        plan = _push(rt2)
        assert sorted(str(p) for p in plan.tags.deleted) == ["活跃度/沉睡", "活跃度/活跃"]
        assert plan.tags.deleted_groups == []
        assert simulator.tag_catalogue()["活跃度"] == {"人工关注": console}
        assert simulator.tag_catalogue()["来源"] == {"活跃": channel_tag}
        assert _calls(simulator, "del_corp_tag") == 1
        assert relation_tag_names(simulator, "alice", corp[1]) == {"活跃度/人工关注"}
        assert relation_tag_names(simulator, "alice", corp[0]) == {"来源/活跃"}
        assert _assignments(rt2, "activity") == 0
    finally:
        rt2.close()


@pytest.mark.parametrize("console_tag", [False, True], ids=["all_ours", "with_console_tag"])
def test_a_removed_dimension_whose_tags_reached_no_customer_is_cleaned_up_too(
    db_url: str, rt: Runtime, simulator: Simulator, corp: list[str], console_tag: bool
) -> None:
    assign_tiers(rt, {corp[0]: {"value": "高价值"}})  # nobody has an activity tier
    _push(rt)
    assert set(simulator.tag_catalogue()["活跃度"]) == {"活跃", "沉睡"}
    assert _serves(rt, "活跃度") == "activity"
    console = simulator.admin_create_tag("活跃度", "人工关注") if console_tag else None
    simulator.reset_counters()
    rt2 = synced_tier_runtime(db_url, simulator, VALUE, REGION)  # 活跃度 dropped
    try:
        plan = _push(rt2)
        assert sorted(str(p) for p in plan.tags.deleted) == ["活跃度/沉睡", "活跃度/活跃"]
        assert _calls(simulator, "del_corp_tag") == 1
        assert _calls(simulator, "mark_tag") == 0
        if console is None:
            assert plan.tags.deleted_groups == ["活跃度"]
            assert "活跃度" not in simulator.tag_catalogue()
        else:
            # The console's tag and so its group stay, and no dimension is recorded for it.
            assert plan.tags.deleted_groups == []
            assert simulator.tag_catalogue()["活跃度"] == {"人工关注": console}
            assert _serves(rt2, "活跃度") is None
        assert relation_tag_names(simulator, "bob", corp[0]) == {"价值分层/高价值"}

        _push_again_costs_nothing(rt2, simulator)
    finally:
        rt2.close()


def test_a_dimension_renamed_in_config_keeps_its_group_and_tags(
    db_url: str, rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {corp[0]: {"activity": "活跃"}, corp[1]: {"activity": "沉睡"}})
    _push(rt)
    ids = simulator.tag_catalogue()["活跃度"]
    engagement = {**ACTIVITY, "name": "engagement"}  # the same group, a new key
    rt2 = synced_tier_runtime(db_url, simulator, VALUE, engagement, REGION)
    simulator.reset_counters()
    try:
        # The re-tier under the new key runs first, as the nightly job does.
        assign_tiers(rt2, {corp[0]: {"engagement": "活跃"}, corp[1]: {"engagement": "沉睡"}})
        plan = _push(rt2)
        assert (plan.tags.deleted, plan.tags.deleted_groups, plan.diff.changed) == ([], [], 0)
        assert simulator.tag_catalogue()["活跃度"] == ids
        assert simulator.calls == {}
        assert relation_tag_names(simulator, "bob", corp[0]) == {"活跃度/活跃"}
        assert _serves(rt2, "活跃度") == "engagement"
        assert (_assignments(rt2, "activity"), _assignments(rt2, "engagement")) == (0, 2)
    finally:
        rt2.close()
    # The record moved with it: removing the new key now removes the group.
    rt3 = synced_tier_runtime(db_url, simulator, VALUE, REGION)
    try:
        assert _push(rt3).tags.deleted_groups == ["活跃度"]
        assert "活跃度" not in simulator.tag_catalogue()
    finally:
        rt3.close()


def test_a_group_renamed_in_config_is_renamed_in_wecom_with_one_call(
    db_url: str, rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {corp[0]: {"activity": "活跃"}, corp[1]: {"activity": "沉睡"}})
    _push(rt)
    ids = simulator.tag_catalogue()["活跃度"]
    simulator.reset_counters()
    rt2 = synced_tier_runtime(db_url, simulator, VALUE, {**ACTIVITY, "tag_group": "互动"}, REGION)
    try:
        plan = _push(rt2)
        assert plan.tags.renamed_groups == [("活跃度", "互动")]
        assert (plan.tags.created, plan.tags.deleted, plan.diff.changed) == ([], [], 0)
        # The same tags, still on every customer: no tag made, none marked.
        assert simulator.tag_catalogue()["互动"] == ids
        assert "活跃度" not in simulator.tag_catalogue()
        assert _calls(simulator, "edit_corp_tag") == 1
        assert _calls(simulator, "add_corp_tag") + _calls(simulator, "mark_tag") == 0
        assert relation_tag_names(simulator, "bob", corp[0]) == {"互动/活跃"}
        assert _serves(rt2, "互动") == "activity"
        assert _assignments(rt2, "activity") == 2

        _push_again_costs_nothing(rt2, simulator)
    finally:
        rt2.close()


def test_a_group_renamed_in_config_holding_console_tags_is_left_to_them(
    db_url: str, rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {corp[0]: {"activity": "活跃"}, corp[1]: {"activity": "沉睡"}})
    _push(rt)
    console = simulator.admin_create_tag("活跃度", "人工关注")
    simulator.staff_edit_tags("alice", corp[1], add=[console])
    simulator.reset_counters()
    rt2 = synced_tier_runtime(db_url, simulator, VALUE, {**ACTIVITY, "tag_group": "互动"}, REGION)
    try:
        plan = _push(rt2)
        assert plan.tags.renamed_groups == []
        assert [str(p) for p in plan.tags.created] == ["互动/活跃", "互动/沉睡"]  # tier order
        assert sorted(str(p) for p in plan.tags.deleted) == ["活跃度/沉睡", "活跃度/活跃"]
        assert simulator.tag_catalogue()["活跃度"] == {"人工关注": console}
        assert _calls(simulator, "edit_corp_tag") == 0
        assert _calls(simulator, "del_corp_tag") == 1
        assert relation_tag_names(simulator, "alice", corp[1]) == {"活跃度/人工关注", "互动/沉睡"}
        assert relation_tag_names(simulator, "bob", corp[0]) == {"互动/活跃"}
        assert (_serves(rt2, "活跃度"), _serves(rt2, "互动")) == (None, "activity")
        assert _assignments(rt2, "activity") == 2
    finally:
        rt2.close()


def test_a_removed_dimension_in_a_console_made_group_takes_only_the_bots_tags(
    db_url: str, rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    console = simulator.admin_create_tag("地区", "手工")  # the group is the console's
    run_sync(db=rt.db, wecom=rt.wecom)
    assign_tiers(rt, {corp[0]: {"region": "上海"}, corp[1]: {"region": "北京"}})
    _push(rt)
    assert _serves(rt, "地区") == "region"  # adopted
    rt2 = synced_tier_runtime(db_url, simulator, VALUE, ACTIVITY)  # region dropped
    simulator.reset_counters()
    try:
        plan = _push(rt2)
        assert sorted(str(p) for p in plan.tags.deleted) == ["地区/上海", "地区/北京"]
        assert plan.tags.deleted_groups == []
        assert simulator.tag_catalogue()["地区"] == {"手工": console}
        assert _calls(simulator, "del_corp_tag") == 1
        assert relation_tag_names(simulator, "bob", corp[0]) == set()
        assert _assignments(rt2, "region") == 0
    finally:
        rt2.close()
