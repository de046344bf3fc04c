"""A scan's channel tag goes out while a large tier push drains at its bulk share.

test_wecom_budget shows the two lanes on a bare client; here the real parts meet: the
outbox workers drain a tier push of many relations within mark_tag's bulk share of a
small per-minute budget (so it needs minutes), a customer scans a live code, the
simulator calls back over HTTP, and the scan's tag reaches WeCom in the reserved share
while most of the push is still queued, with no 45009.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from bot.channels import live_codes
from bot.db.models import OutboxOperation
from bot.sync import run_sync
from bot.tags import push
from bot.tags.catalogue import TagPath
from tests.support import parts
from tests.support.configs import settings_for
from tests.support.live import LiveServer
from tests.support.tiers import VALUE, assign_tiers
from tests.support.waiting import wait_for
from wecom_sim import Simulator

N = 45  # relations in the push: three minutes of a 15-a-minute bulk share
MARK = "externalcontact/mark_tag"


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    """The bot with its workers on a 20-a-minute budget, 5 of them reserved for people."""
    settings = settings_for(
        db_url,
        simulator,
        limits={"calls_per_minute": 20, "calls_per_hour": 1000, "interactive_reserve": 0.25},
        tiering={"dimensions": [VALUE]},
    )
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    yield server
    server.stop()


def _done(server: LiveServer) -> int:
    with server.runtime.db.read() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(OutboxOperation)
                .where(OutboxOperation.status == "done")
            )
            or 0
        )


@pytest.mark.slow  # real workers and a callback over HTTP
def test_a_scan_is_tagged_while_a_large_push_waits_for_its_bulk_share(
    live: LiveServer, simulator: Simulator
) -> None:
    rt = live.runtime
    simulator.add_staff("alice", "Alice")
    customers = [simulator.add_relation("alice", f"wm_bulk_{i:02d}") for i in range(N)]
    ch = live_codes.create(
        live_codes.ChannelSpec(name="门店", staff=("alice",), tags=(TagPath.parse("来源/门店"),)),
        db=rt.db,
        wecom=rt.wecom,
    )
    store_tag = simulator.tag_catalogue()["来源"]["门店"]
    run_sync(db=rt.db, wecom=rt.wecom)
    assign_tiers(rt, {c: {"value": "高价值"} for c in customers})
    assert push.enqueue_tier_push(**parts.tier_push(rt)).diff.new_operations == N
    rt.wakeups.outbox.set()
    wait_for(lambda: _done(live) >= 5, timeout=60, what="the push to be draining")

    scan = simulator.scan(ch.state)
    assert scan.callback_status == 200
    wait_for(
        lambda: store_tag in simulator.relation_tags(scan.userid, scan.external_userid),
        timeout=30,
        what="the scan's channel tag in WeCom",
    )
    # The push is far from done: at most 15 bulk calls a minute went out meanwhile.
    assert _done(live) < N
    assert simulator.calls.get((MARK, 45009), 0) == 0
