"""Planning a campaign run: audience per staff member, holdout, cooldown, caps, `when`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot import leases
from bot.campaign_checks import parse_when
from bot.db.models import CampaignDelivery, CampaignRun
from bot.outreach.audience import narrow
from bot.outreach.plan import LEASE, OutreachBusyError, RunPlan, in_holdout, plan_run
from bot.outreach.service import get_campaign, run_campaign
from bot.runtime import Runtime
from tests.support import parts
from tests.support.campaigns import (
    AS_OF,
    assign,
    bulk_members,
    campaign,
    customer,
    enter,
    order,
    outreach_runtime,
    relation,
    retier_run,
    staff,
    table_counts,
)
from wecom_sim import Simulator


@pytest.fixture
def make_rt(db_url: str, simulator: Simulator) -> Iterator[Any]:
    made: list[Runtime] = []

    def make(*campaigns: dict[str, Any], **outreach: Any) -> Runtime:
        rt = outreach_runtime(db_url, simulator, *campaigns, **outreach)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def _plan(rt: Runtime, name: str, *, days: float = 0, dry_run: bool = False) -> RunPlan:
    return plan_run(
        get_campaign(rt.settings, name),
        db=rt.db,
        settings=rt.settings,
        as_of=AS_OF + timedelta(days=days),
        dry_run=dry_run,
    )


def _exts(members: Any) -> list[str]:
    return sorted(m.external_userid for m in members)


def _staff_of(plan: RunPlan) -> dict[str | None, list[str]]:
    return {s.staff_userid: _exts(s.treatment) for s in plan.by_staff() if s.treatment}


def _vip_corp(rt: Runtime) -> None:
    """Five 高价值 customers and one 中价值, followed by several staff members."""
    with rt.db.write() as s:
        zhang, li, wang = staff(s, "zhang"), staff(s, "li"), staff(s, "wang")
        gone = staff(s, "gone", active=False)
        c1, c2, c3, c4, c5 = (customer(s, f"wm_{i}", f"客户{i}") for i in range(1, 6))
        c6 = customer(s, "wm_6")
        relation(s, c1, zhang, days_ago=10)
        relation(s, c1, li, days_ago=2)  # the most recent relation wins
        relation(s, c2, zhang, days_ago=30)
        relation(s, c2, wang, days_ago=1, status="lost")  # lost: not a way to reach them
        relation(s, c3, gone, days_ago=1)  # only an inactive member: unreachable
        relation(s, c5, wang, days_ago=3)
        relation(s, c6, zhang, days_ago=3)
        for c in (c1, c2, c3, c4, c5):
            assign(s, c, "value", "高价值")
        assign(s, c6, "value", "中价值")


def test_members_now_each_customer_once_with_the_most_recent_active_relation(
    make_rt: Any,
) -> None:
    rt = make_rt(campaign("高价值关怀"))
    _vip_corp(rt)
    plan = _plan(rt, "高价值关怀")
    assert plan.audience == 5
    assert _staff_of(plan) == {"li": ["wm_1"], "zhang": ["wm_2"], "wang": ["wm_5"]}
    assert _exts(plan.unreachable) == ["wm_3", "wm_4"]
    with rt.db.read() as s:
        run = s.scalars(select(CampaignRun)).one()
        rows = s.execute(
            select(
                CampaignDelivery.customer_id,
                CampaignDelivery.staff_userid,
                CampaignDelivery.arm,
                CampaignDelivery.status,
                CampaignDelivery.tier,
            )
        ).all()
    assert (run.status, run.audience, run.treatment, run.holdout) == ("planned", 5, 3, 0)
    assert run.id == plan.run_id
    assert run.trigger == "manual"
    assert run.transitions_upto is None
    assert sorted((r[1], r[2], r[3], r[4]) for r in rows) == [
        ("li", "treatment", "planned", "高价值"),
        ("wang", "treatment", "planned", "高价值"),
        ("zhang", "treatment", "planned", "高价值"),
    ]


def test_on_enter_takes_the_latest_full_run_first_then_only_new_entries(make_rt: Any) -> None:
    rt = make_rt(
        campaign(
            "沉睡唤醒",
            action="follow_up",
            dimension="lifecycle",
            on_enter="沉睡客户",
            text="建议电话回访",
            cooldown_days=0,
        )
    )
    with rt.db.write() as s:
        zhang = staff(s, "zhang")
        cs = {e: customer(s, e) for e in ("wm_old", "wm_a", "wm_b", "wm_left", "wm_c")}
        for c in cs.values():
            relation(s, c, zhang, days_ago=100)
        first = retier_run(s)
        enter(s, cs["wm_old"], "lifecycle", "沉睡客户", run_id=first)  # before the latest full
        latest = retier_run(s)
        enter(s, cs["wm_a"], "lifecycle", "沉睡客户", run_id=latest)
        enter(s, cs["wm_b"], "lifecycle", "新客户", run_id=latest)  # another tier
        enter(s, cs["wm_left"], "lifecycle", "沉睡客户", run_id=latest)
        touched = retier_run(s, scope="touched")
        enter(s, cs["wm_left"], "lifecycle", None, run_id=touched)  # no longer in it
    one = _plan(rt, "沉睡唤醒")
    assert _exts(one.treatment) == ["wm_a"]
    with rt.db.write() as s:
        nxt = retier_run(s)
        enter(s, cs["wm_b"], "lifecycle", "沉睡客户", run_id=nxt)
        enter(s, cs["wm_c"], "lifecycle", "沉睡客户", run_id=nxt)
    two = _plan(rt, "沉睡唤醒", days=1)
    assert _exts(two.treatment) == ["wm_b", "wm_c"]
    assert two.transitions_upto is not None
    assert one.transitions_upto is not None
    assert two.transitions_upto > one.transitions_upto
    three = _plan(rt, "沉睡唤醒", days=2)
    assert three.audience == 0  # nothing entered since


def test_holdout_is_stable_across_runs_and_near_its_share(make_rt: Any) -> None:
    rt = make_rt(
        campaign("回访", action="follow_up", text="建议回访", holdout_pct=10, cooldown_days=0)
    )
    exts = bulk_members(rt.db, 2000)
    one = _plan(rt, "回访")
    two = _plan(rt, "回访", days=1)
    assert len(one.holdout) + len(one.treatment) == 2000
    # Binomial(2000, 0.10): mean 200, sd 13.4; the hash is fixed, so this is deterministic.
    assert 146 <= len(one.holdout) <= 254
    assert _exts(one.holdout) == _exts(two.holdout)
    assert _exts(one.holdout) == sorted(e for e in exts if in_holdout("回访", e, 10))
    with rt.db.read() as s:
        arms = dict(
            s.execute(
                select(CampaignDelivery.arm, func.count())
                .where(CampaignDelivery.run_id == one.run_id)
                .group_by(CampaignDelivery.arm)
            ).all()
        )
        held = s.scalar(
            select(func.count()).where(
                CampaignDelivery.arm == "holdout", CampaignDelivery.status == "holdout"
            )
        )
    assert arms == {"holdout": len(one.holdout), "treatment": len(one.treatment)}
    assert held == 2 * len(one.holdout)
    # Another campaign draws its own holdout from the same customers.
    assert _exts(one.holdout) != sorted(e for e in exts if in_holdout("别的活动", e, 10))


def test_cooldown_keeps_a_customer_out_until_it_passes(make_rt: Any) -> None:
    rt = make_rt(campaign("回访", action="follow_up", text="建议回访", cooldown_days=7))
    _vip_corp(rt)
    assert len(_plan(rt, "回访").treatment) == 3
    again = _plan(rt, "回访", days=6.9)
    assert (again.treatment, _exts(again.cooling)) == ([], ["wm_1", "wm_2", "wm_5"])
    later = _plan(rt, "回访", days=7)
    assert len(later.treatment) == 3
    assert later.cooling == []


def test_one_campaign_message_per_customer_per_day_across_campaigns(make_rt: Any) -> None:
    rt = make_rt(
        campaign("甲", cooldown_days=0),
        campaign("乙", action="webhook", webhook_url="https://crm.example.com/hook"),
        campaign("回访", action="follow_up", text="建议回访"),
    )
    _vip_corp(rt)
    assert len(_plan(rt, "甲").treatment) == 3
    same_day = _plan(rt, "乙", days=0.4)  # 21:36 the same Shanghai day
    assert _exts(same_day.capped) == ["wm_1", "wm_2", "wm_5"]
    # A webhook reaches beyond WeCom: customers with no usable relation stay in, no staff.
    assert _exts(same_day.treatment) == ["wm_3", "wm_4"]
    assert same_day.unreachable == []
    assert {m.staff_userid for m in same_day.treatment} == {None}
    # A follow-up messages staff, not the customer: never capped.
    assert len(_plan(rt, "回访", days=0.4).treatment) == 3
    next_day = _plan(rt, "甲", days=1)
    assert next_day.capped == []
    assert len(next_day.treatment) == 3


@pytest.mark.parametrize("refused", ["failed", "not_friend", "over_quota", "unconfirmed"])
def test_seven_and_thirty_day_caps_count_only_messages_received(make_rt: Any, refused: str) -> None:
    rt = make_rt(campaign("甲", cooldown_days=0), max_per_7d=2, max_per_30d=3)
    _vip_corp(rt)
    assert len(_plan(rt, "甲").treatment) == 3
    assert len(_plan(rt, "甲", days=2).treatment) == 3
    capped = _plan(rt, "甲", days=4)
    assert capped.treatment == []
    assert len(capped.capped) == 3
    # A delivery that never reached the customer does not count against the caps.
    with rt.db.write() as s:
        s.execute(
            update(CampaignDelivery)
            .where(
                CampaignDelivery.run_id == capped.run_id - 1, CampaignDelivery.staff_userid == "li"
            )
            .values(status=refused)
        )
    assert _exts(_plan(rt, "甲", days=4).treatment) == ["wm_1"]
    # Day 8: one message each in the last 7 days, two in 30 → all three get a third.
    assert len(_plan(rt, "甲", days=8).treatment) == 3
    assert len(_plan(rt, "甲", days=8.4).capped) == 3  # the same local day: the day cap
    at_30 = _plan(rt, "甲", days=12)  # one in 7 days, three in 30: the 30-day cap
    assert at_30.treatment == []
    assert len(at_30.capped) == 3


def test_when_narrows_the_audience_with_metrics_and_tiers(make_rt: Any) -> None:
    rt = make_rt(
        campaign("复购高价值", when='orders_365d >= 2 and tier.category == "茶"'),
    )
    with rt.db.write() as s:
        zhang = staff(s, "zhang")
        for ext, orders, cat in (
            ("wm_tea2", 2, "茶"),
            ("wm_tea1", 1, "茶"),
            ("wm_cof2", 2, "咖啡"),
        ):
            c = customer(s, ext)
            relation(s, c, zhang, days_ago=50)
            for i in range(orders):
                order(s, c, 3000, days_ago=10 + i, category=cat)
            assign(s, c, "value", "高价值")
            assign(s, c, "category", cat)
    plan = _plan(rt, "复购高价值")
    assert plan.audience == 1
    assert _exts(plan.treatment) == ["wm_tea2"]


def test_dry_run_writes_nothing_and_calls_nothing(make_rt: Any, simulator: Simulator) -> None:
    rt = make_rt(campaign("高价值关怀", holdout_pct=50))
    _vip_corp(rt)
    simulator.reset_counters()
    before = table_counts(rt.db)
    plan = _plan(rt, "高价值关怀", dry_run=True)
    assert plan.run_id is None
    assert len(plan.treatment) + len(plan.holdout) == 3
    assert table_counts(rt.db) == before
    assert simulator.calls == {}


def test_rerunning_never_duplicates_deliveries(make_rt: Any) -> None:
    rt = make_rt(campaign("高价值关怀", holdout_pct=30))
    _vip_corp(rt)
    first = run_campaign(**parts.outreach(rt), name="高价值关怀", as_of=AS_OF)
    second = run_campaign(**parts.outreach(rt), name="高价值关怀", as_of=AS_OF + timedelta(hours=1))
    assert len(first.treatment) + len(first.holdout) == 3
    assert second.treatment == []
    assert second.holdout == []
    assert len(second.cooling) == 3
    with rt.db.read() as s:
        per_customer = s.execute(
            select(CampaignDelivery.customer_id, func.count()).group_by(
                CampaignDelivery.customer_id
            )
        ).all()
    assert sorted(n for _, n in per_customer) == [1, 1, 1]


def test_when_reads_the_same_with_an_id_list_or_a_full_frame(make_rt: Any) -> None:
    rt = make_rt(campaign("甲"))
    with rt.db.write() as s:
        zhang = staff(s, "zhang")
        ids = []
        for i in range(6):
            c = customer(s, f"wm_{i}")
            relation(s, c, zhang, days_ago=50)
            for _ in range(i):
                order(s, c, 1000, days_ago=20)
            assign(s, c, "value", "高价值" if i >= 3 else "中价值")
            ids.append(c.id)
        outsider = customer(s, "wm_outside")  # matches the rule, but is no candidate
        for _ in range(5):
            order(s, outsider, 1000, days_ago=20)
    dims = rt.settings.tiering.dimensions
    rules = {
        'orders_365d >= 2 and tier.value == "高价值"': {ids[3], ids[4], ids[5]},
        "orders_365d >= 2 and not (orders_365d >= 5)": {ids[2], ids[3], ids[4]},
        # An attribute nobody has imported is missing for everyone: unknown, no match.
        'profile.会员等级 == "金卡" or orders_365d == 1': {ids[1]},
        "profile.会员等级 is missing and orders_365d == 0": {ids[0]},
    }
    for text, expected in rules.items():
        expr = parse_when(text, dims)
        listed = narrow(rt.db, expr, ids, as_of=AS_OF, tz="Asia/Shanghai")
        full = narrow(rt.db, expr, ids, as_of=AS_OF, tz="Asia/Shanghai", id_list_max=1)
        assert listed == full == expected, text


def test_a_plan_waits_for_another_plan_then_refuses(make_rt: Any) -> None:
    rt = make_rt(campaign("甲"))
    _vip_corp(rt)
    with leases.holding(rt.db, LEASE, "someone-else", 60.0) as held:
        assert held
        with pytest.raises(OutreachBusyError):
            plan_run(
                **parts.planning(rt), campaign=get_campaign(rt.settings, "甲"), as_of=AS_OF, wait=0
            )
        # A dry run records nothing, so it never waits.
        assert len(_plan(rt, "甲", dry_run=True).treatment) == 3
    with rt.db.read() as s:
        assert s.scalar(select(func.count()).select_from(CampaignRun)) == 0
