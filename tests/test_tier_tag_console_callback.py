"""A tier tag deleted in the console comes back after its callback alone (no nightly sync)."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.db.models import InboxEvent
from bot.sync import run_sync
from bot.tags import push
from tests.support import parts
from tests.support.configs import settings_for
from tests.support.live import LiveServer
from tests.support.tiers import VALUE, assign_tiers, relation_tag_names
from tests.support.waiting import wait_for
from wecom_sim import Simulator


def test_the_delete_callback_alone_gets_the_tag_recreated_and_put_back(
    db_url: str, simulator: Simulator
) -> None:
    live = LiveServer(settings_for(db_url, simulator, tiering={"dimensions": [VALUE]})).start()
    simulator.callback_url = live.url + "/wecom/callback"
    try:
        _recreated(live, simulator)
    finally:
        live.stop()


def _recreated(live: LiveServer, simulator: Simulator) -> None:
    rt = live.runtime
    simulator.add_staff("alice", "Alice")
    vip, mid = (simulator.add_relation("alice", f"wm_console_{i}") for i in range(2))
    run_sync(db=rt.db, wecom=rt.wecom)
    assign_tiers(rt, {vip: {"value": "高价值"}, mid: {"value": "中价值"}})
    push.enqueue_tier_push(**parts.tier_push(rt))
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    old = simulator.tag_catalogue()["价值分层"]["高价值"]

    simulator.admin_delete_tag(old)  # the console: WeCom calls back with a tag delete event

    def handled() -> bool:
        with rt.db.read() as s:
            return not s.scalar(
                select(func.count()).select_from(InboxEvent).where(InboxEvent.status != "done")
            ) and bool(s.scalar(select(func.count()).select_from(InboxEvent)))

    wait_for(handled, timeout=30, what="the tag delete callback handled")
    simulator.reset_counters()
    plan = push.enqueue_tier_push(**parts.tier_push(rt))
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    assert [str(p) for p in plan.tags.created] == ["价值分层/高价值"]
    assert relation_tag_names(simulator, "alice", vip) == {"价值分层/高价值"}
    assert relation_tag_names(simulator, "alice", mid) == {"价值分层/中价值"}
    assert simulator.calls.get("externalcontact/mark_tag", 0) == 1
