"""Fresh events, profiles and imported orders re-tier their customers and reach WeCom.

test_retier_outside covers an order through `POST /api/orders` in the database; here each
other way in (`POST /api/events`, `POST /api/profiles`, `tagbot import orders`) marks its
customer, the touched re-tier moves exactly those customers, and the hand-off puts their
new tier tags on their relations in the simulator: one mark_tag per changed relation. The
end-to-end case runs the real workers behind real HTTP: a VIP order shows as 高价值 in
WeCom within the minute.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

from bot.config import Settings, settings_from_mapping
from bot.db import Database
from bot.db.models import Customer, OutboxOperation, RetierRun, TouchedCustomer
from bot.retier import retier_configured
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tags import push
from bot.tiering.defaults import default_tiers_text
from handlers.app import create_app
from jobs.tiering import retier_touched
from tagbot.cli import main
from tests.support import parts
from tests.support.corp import ADMIN_TOKEN, base_config
from tests.support.live import LiveServer
from tests.support.tiers import default_tiers_config, relation_tag_names
from tests.support.waiting import wait_for
from wecom_sim import Simulator

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CUSTOMERS = ["wm_fresh_events", "wm_fresh_profile", "wm_fresh_import", "wm_fresh_idle"]


def _settings(db: Database, sim: Simulator) -> Settings:
    data = base_config(db.url, api_base=sim.api_base) | tomllib.loads(default_tiers_text())
    data["app"] = {"log_level": "WARNING"}
    return settings_from_mapping(data, environ={})


def _mark_tags(sim: Simulator) -> int:
    return sim.calls.get("externalcontact/mark_tag", 0)


def _yesterday() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).isoformat()


@pytest.fixture
def corp(simulator: Simulator) -> list[str]:
    simulator.add_staff("alice", "Alice")
    return [simulator.add_relation("alice", ext) for ext in CUSTOMERS]


@pytest.fixture
def tier_app(db: Database, simulator: Simulator, corp: list[str]) -> Iterator[Flask]:
    """The app on the simulator with the default dimensions, everyone tiered and pushed."""
    app = create_app(_settings(db, simulator))
    rt: Runtime = app.extensions["tagbot"]
    run_sync(db=rt.db, wecom=rt.wecom)
    retier_configured(**parts.retier(rt))
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    simulator.reset_counters()
    yield app
    rt.close()


def test_events_profiles_and_an_import_retier_those_customers_into_wecom(
    tier_app: Flask, db: Database, simulator: Simulator, tmp_path: Path
) -> None:
    rt: Runtime = tier_app.extensions["tagbot"]
    events, profile, imported, idle = CUSTOMERS
    before = {ext: relation_tag_names(simulator, "alice", ext) for ext in CUSTOMERS}
    client = tier_app.test_client()
    views = [
        {
            "event_id": f"v{i}",
            "external_userid": events,
            "kind": "view",
            "occurred_at": _yesterday(),
        }
        for i in range(2)
    ]
    assert client.post("/api/events", json=views, headers=AUTH).status_code == 200
    level = [{"external_userid": profile, "会员等级": "金卡"}]
    assert client.post("/api/profiles", json=level, headers=AUTH).status_code == 200
    config = default_tiers_config(tmp_path, db.url, simulator.api_base)
    orders = tmp_path / "orders.csv"
    orders.write_text(
        f"order_id,external_userid,amount,paid_at,status\nbig1,{imported},6000,{_yesterday()},paid\n",
        encoding="utf-8",
    )
    assert main(["--config", str(config), "import", "orders", str(orders)]) == 0

    with db.read() as s:
        touched = set(s.scalars(select(Customer.external_userid).join(TouchedCustomer)).all())
    assert touched == {events, profile, imported}
    assert retier_touched(rt, quiet=timedelta(0)) == 3
    push.drain_all(**parts.drain(rt), idle_poll=0.05)

    after = {ext: relation_tag_names(simulator, "alice", ext) for ext in CUSTOMERS}
    assert {"活跃度/活跃", "购买行为/有意向未购买"} <= after[events] - before[events]
    assert after[profile] - before[profile] == {"会员等级/金卡"}
    assert {"价值分层/高价值", "生命周期/新客户"} <= after[imported] - before[imported]
    assert "生命周期/潜在客户" in before[imported] - after[imported]
    assert after[idle] == before[idle]
    assert _mark_tags(simulator) == 3  # one per changed relation, every dimension in it
    with db.read() as s:
        scopes = s.scalars(select(RetierRun.scope).order_by(RetierRun.id)).all()
        left = s.scalar(select(func.count()).select_from(TouchedCustomer))
    assert (scopes, left) == (["full", "touched"], 0)


@pytest.mark.slow  # the real workers: debounce, touched re-tier, outbox
def test_a_vip_order_over_http_shows_as_high_value_in_wecom_within_the_minute(
    db: Database, simulator: Simulator, corp: list[str]
) -> None:
    server = LiveServer(_settings(db, simulator), jobs=True).start()
    try:
        rt = server.runtime
        run_sync(db=rt.db, wecom=rt.wecom)
        retier_configured(**parts.retier(rt))
        rt.wakeups.outbox.set()

        def drained() -> bool:
            with db.read() as s:
                return not s.scalar(
                    select(func.count())
                    .select_from(OutboxOperation)
                    .where(OutboxOperation.status != "done")
                )

        wait_for(drained, timeout=60, what="the first tier push")
        simulator.reset_counters()
        vip = CUSTOMERS[0]
        row = {
            "order_id": "vip1",
            "external_userid": vip,
            "amount": "9000.00",
            "paid_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "status": "paid",
        }
        resp = requests.post(f"{server.url}/api/orders", json=[row], headers=AUTH, timeout=10)
        assert resp.status_code == 200
        wait_for(
            lambda: "价值分层/高价值" in relation_tag_names(simulator, "alice", vip),
            timeout=60,
            what="高价值 on the VIP's relation in WeCom",
        )
        wait_for(drained, timeout=10, what="the touched push")
        assert _mark_tags(simulator) == 1  # only the VIP's relation changed
    finally:
        server.stop()
