"""A customer who scans a live code gets their tier tags within the minute, not at 03:00.

The scan's own channel tags go out at once (test_scan_flow); the add also marks the
customer touched, so the retier-touched worker tiers them (生命周期/潜在客户, their first
channel in 首次渠道) and the outbox puts those tags on the new relation in WeCom.
"""

from __future__ import annotations

import tomllib

import pytest
from sqlalchemy import func, select

from bot.config import settings_from_mapping
from bot.db.models import RetierRun, TouchedCustomer
from bot.tiering.defaults import default_tiers_text
from tests.support.channels import store_channel
from tests.support.corp import base_config
from tests.support.live import LiveServer
from tests.support.tiers import relation_tag_names
from tests.support.waiting import wait_for
from wecom_sim import Simulator


@pytest.mark.slow  # real workers: callback, touched re-tier, outbox
def test_a_scanned_customer_is_tiered_and_tagged_within_the_minute(
    db_url: str, simulator: Simulator
) -> None:
    simulator.add_staff("alice", "Alice")
    data = base_config(db_url, api_base=simulator.api_base) | tomllib.loads(default_tiers_text())
    data["app"] = {"log_level": "WARNING"}
    server = LiveServer(settings_from_mapping(data, environ={}), jobs=True).start()
    try:
        simulator.callback_url = server.url + "/wecom/callback"
        state = store_channel(server, name="门店", tags=("来源/门店",))
        ext = simulator.scan(state).external_userid
        wanted = {"来源/门店", "生命周期/潜在客户", "首次渠道/门店"}
        wait_for(
            lambda: wanted <= relation_tag_names(simulator, "alice", ext),
            timeout=60,
            what="the scanned customer's tier tags in WeCom",
        )
        with server.runtime.db.read() as s:
            scopes = s.scalars(select(RetierRun.scope)).all()
            left = s.scalar(select(func.count()).select_from(TouchedCustomer))
        assert "touched" in scopes
        assert left == 0
    finally:
        server.stop()
