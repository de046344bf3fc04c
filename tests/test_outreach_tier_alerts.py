"""Built-in tier alerts: a real re-tier moves a 高价值 customer into 流失预警 and 沉睡客户."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot import staff_alerts
from bot.db.models import Customer, FollowRelation, Staff, StaffAlert
from bot.db.types import utcnow
from bot.outreach.tier_alerts import queue_tier_alerts, resolve
from bot.retier import hand_off, retier_configured
from bot.runtime import Runtime
from bot.tiering.defaults import default_tiering, default_tiers_text
from tests.support import parts
from tests.support.configs import settings_for
from tests.tier_metrics_factory import AS_OF, order
from wecom_sim import Simulator

DEFAULT_TIERS = tomllib.loads(default_tiers_text())["tiering"]


def _runtime(db_url: str, sim: Simulator, **outreach: Any) -> Runtime:
    return Runtime(settings_for(db_url, sim, tiering=DEFAULT_TIERS, outreach=outreach))


@pytest.fixture
def rt(db_url: str, simulator: Simulator) -> Iterator[Runtime]:
    runtime = _runtime(db_url, simulator)
    yield runtime
    runtime.close()


def _people(rt: Runtime, sim: Simulator) -> None:
    """王小明 (6,000 元 once, followed by 张三 and 李四, and once by 赵六 who lost him) and
    李雷 (300 元 once, followed by 李四), both ordering 10 days before AS_OF."""
    for userid, name in (("zhang", "张三"), ("li", "李四"), ("zhao", "赵六")):
        sim.add_staff(userid, name)
    with rt.db.write() as s:
        staff = {u: Staff(userid=u, name=n) for u, n in (("zhang", "张三"), ("li", "李四"))}
        staff["zhao"] = Staff(userid="zhao", name="赵六")
        s.add_all(staff.values())
        vip = Customer(external_userid="wm_vip", name="王小明")
        small = Customer(external_userid="wm_small", name="李雷")
        s.add_all([vip, small])
        s.flush()
        for who, status in (("zhang", "active"), ("li", "active"), ("zhao", "lost")):
            s.add(FollowRelation(staff_id=staff[who].id, customer_id=vip.id, status=status))
        s.add(FollowRelation(staff_id=staff["li"].id, customer_id=small.id))
        order(s, vip, 6000, AS_OF - timedelta(days=10))
        order(s, small, 300, AS_OF - timedelta(days=10))


def _deliver(rt: Runtime, sim: Simulator) -> list[tuple[str, str]]:
    """Send what is queued (as if the gather time and each member's window had passed)."""
    before = len(sim.app_messages)
    with rt.db.write() as s:
        past = utcnow() - timedelta(minutes=1)
        s.execute(update(StaffAlert).values(created_at=past))
        s.execute(update(StaffAlert).where(StaffAlert.sent_at.is_not(None)).values(sent_at=past))
    staff_alerts.drain("test", db=rt.db, wecom=rt.wecom)
    return sorted((m["touser"], m["text"]["content"]) for m in sim.app_messages[before:])


def _queued(rt: Runtime) -> int:
    with rt.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(StaffAlert)) or 0)


def test_the_names_resolve_from_the_default_tiers() -> None:
    names = resolve(default_tiering())
    assert names is not None
    assert names.value_dimension == "value"
    assert names.alert_tiers == (("lifecycle", "沉睡客户"), ("churn", "流失预警"))


def test_a_vip_going_quiet_alerts_each_active_member_once(
    rt: Runtime, db_url: str, simulator: Simulator
) -> None:
    _people(rt, simulator)
    retier_configured(
        **parts.retier(rt), as_of=AS_OF
    )  # first classification: 高价值, 新客户; no alert
    assert _queued(rt) == 0

    # 110 days after the only order: 流失预警 — but the alerts are off in this config.
    off = _runtime(db_url, simulator, tier_alerts=False)
    try:
        _, handoff = retier_configured(**parts.retier(off), as_of=AS_OF + timedelta(days=100))
    finally:
        off.close()
    assert handoff is not None
    assert handoff.alerts == 0
    assert _queued(rt) == 0
    # Switched on, the next hand-off catches the entry up: 张三 and 李四, not 赵六 (lost).
    assert hand_off(**parts.retier(rt)).alerts == 2
    assert _deliver(rt, simulator) == [
        ("li", "高价值客户 王小明 进入流失预警，建议电话回访"),
        ("zhang", "高价值客户 王小明 进入流失预警，建议电话回访"),
    ]

    # 210 days: 沉睡客户. 李雷 (低价值) enters it too, and alerts nobody.
    _, handoff = retier_configured(**parts.retier(rt), as_of=AS_OF + timedelta(days=200))
    assert handoff is not None
    assert handoff.alerts == 2
    assert _deliver(rt, simulator) == [
        ("li", "高价值客户 王小明 进入沉睡，建议电话回访"),
        ("zhang", "高价值客户 王小明 进入沉睡，建议电话回访"),
    ]

    # The same hand-off again, and a rerun of the run: nothing new.
    assert hand_off(**parts.retier(rt)).alerts == 0
    assert queue_tier_alerts(db=rt.db, settings=rt.settings, alerts_wakeup=rt.wakeups.alerts) == 0
    _, handoff = retier_configured(**parts.retier(rt), as_of=AS_OF + timedelta(days=200))
    assert handoff is not None
    assert handoff.alerts == 0
    assert _deliver(rt, simulator) == []
    assert _queued(rt) == 4
    with rt.db.read() as s:
        keys = set(s.scalars(select(StaffAlert.dedup_key)))
    assert all(k is not None and k.startswith("tier:") for k in keys)
    assert len(keys) == 4


def test_merged_alerts_name_each_customer() -> None:
    text = staff_alerts.compose(
        staff_alerts.TIER_ALERT, ["王小明 进入沉睡", "韩梅梅 进入流失预警"], ["…", "…"]
    )
    assert text == "2 条高价值客户提醒，建议电话回访：王小明 进入沉睡、韩梅梅 进入流失预警"
