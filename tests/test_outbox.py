"""The outbox: tag changes coalesce per relation, survive WeCom failures, end dead with a reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select

from bot.db.models import OutboxOperation, Tag, TagGroup
from bot.tags import outbox
from tests.support.channels import store_channel
from tests.support.configs import settings_for
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    server = LiveServer(settings_for(db_url, simulator), jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    simulator.add_staff("alice", "Alice")
    yield server
    server.stop()


def _tags(server: LiveServer, *names: str) -> list[Tag]:
    with server.runtime.db.read() as session:
        return [
            session.scalars(
                select(Tag).join(TagGroup, TagGroup.id == Tag.group_id).where(Tag.name == n)
            ).one()
            for n in names
        ]


def test_changes_to_one_relation_coalesce_into_one_call(
    live: LiveServer, simulator: Simulator
) -> None:
    store_channel(live, tags=("来源/门店", "兴趣/护肤", "兴趣/彩妆"))
    store, skin, makeup = _tags(live, "门店", "护肤", "彩妆")
    customer = simulator.state.new_customer()
    ext = customer.external_userid
    rt = live.runtime
    with rt.db.write() as session:
        first = outbox.enqueue_tags(
            session=session, staff_userid="alice", external_userid=ext, add=[store, skin]
        )
        second = outbox.enqueue_tags(
            session=session,
            staff_userid="alice",
            external_userid=ext,
            add=[makeup],
            remove=[skin],
        )
        assert first is not None
        assert second is not None
        assert first.id == second.id
        changes = {(c.tag_id, c.action) for c in second.tag_changes}
    assert changes == {(store.id, "add"), (skin.id, "remove"), (makeup.id, "add")}


def test_mark_tag_failures_fall_back_to_the_outbox(live: LiveServer, simulator: Simulator) -> None:
    state = store_channel(live)
    # Busy answers beyond the adapter's own retries: the direct call gives up, the outbox
    # retries with backoff and gets it done.
    simulator.inject_fault("externalcontact/mark_tag", errcode=-1, count=5)
    scan = simulator.scan(state)
    wait_for(lambda: bool(simulator.relation_tags("alice", scan.external_userid)), timeout=30)

    def ops() -> list[OutboxOperation]:
        with live.runtime.db.read() as session:
            return list(session.scalars(select(OutboxOperation)))

    # WeCom has the tags a moment before the worker records the operation as done.
    wait_for(lambda: [op.status for op in ops()] == ["done"], what="operation done")
    assert ops()[0].attempts >= 1


def test_permanent_failure_ends_dead_with_the_errcode(
    live: LiveServer, simulator: Simulator
) -> None:
    state = store_channel(live)
    simulator.inject_fault("externalcontact/mark_tag", errcode=84061, count=2)
    simulator.scan(state)

    def dead() -> list[OutboxOperation]:
        with live.runtime.db.read() as session:
            return list(
                session.scalars(select(OutboxOperation).where(OutboxOperation.status == "dead"))
            )

    wait_for(lambda: len(dead()) == 1, what="dead outbox operation")
    assert dead()[0].last_errcode == 84061
    metrics = requests.get(f"{live.url}/metrics", timeout=5).text
    assert 'tagbot_outbox_depth{status="dead"} 1.0' in metrics
    assert 'tagbot_inbox_depth{status="done"} 1.0' in metrics
    assert "tagbot_inbox_latency_seconds_bucket" in metrics
    assert "tagbot_welcome_total" in metrics
