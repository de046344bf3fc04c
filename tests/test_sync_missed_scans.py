"""Customers who scanned while the bot was down get their channel from `tagbot sync`.

Real parts: the simulator over HTTP records each scan's relation with the live code's
state while its callback finds nobody listening; `tagbot sync` runs as a CLI process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InboxEvent,
    OutboxOperation,
    TouchedCustomer,
)
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tags import push
from tests.support import parts
from tests.support.channels import welcome_channel
from tests.support.configs import toml_text
from tests.support.corp import base_config
from tests.support.live import LiveServer
from tests.support.processes import free_port, inbox_statuses
from tests.support.waiting import wait_for
from wecom_sim import Simulator

MARK = "externalcontact/mark_tag"
WELCOME = "externalcontact/send_welcome_msg"


def _sync(config: Path) -> subprocess.CompletedProcess[str]:
    tagbot = Path(sys.executable).with_name("tagbot")
    done = subprocess.run(
        [str(tagbot), "--config", str(config), "sync"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def _relations(db_url: str) -> dict[str, tuple[int | None, bool]]:
    """Return each relation's channel and whether its channel was applied, by customer."""
    db = Database(db_url)
    try:
        with db.read() as session:
            rows = session.execute(
                select(
                    Customer.external_userid,
                    FollowRelation.channel_id,
                    FollowRelation.channel_applied_at,
                ).join(Customer, Customer.id == FollowRelation.customer_id)
            ).all()
            return {ext: (channel, applied is not None) for ext, channel, applied in rows}
    finally:
        db.dispose()


@pytest.mark.slow  # a served bot, then `tagbot sync` processes
def test_sync_tags_the_customers_who_scanned_while_the_bot_was_down(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    simulator.add_staff("alice")
    cfg = base_config(db_url, api_base=simulator.api_base)
    config = tmp_path / "config.toml"
    config.write_text(toml_text(cfg), encoding="utf-8")
    settings = settings_from_mapping(cfg, environ={})
    rt = Runtime(settings)
    state = welcome_channel(rt)  # 活动: tag 来源/活动, welcome "hi"
    rt.close()
    tag = simulator.tag_catalogue()["来源"]["活动"]

    # While the bot is up, a scan is handled by its callback...
    live = LiveServer(settings).start()
    simulator.callback_url = live.url + "/wecom/callback"
    try:
        served = simulator.scan(state)
        assert served.callback_status == 200
        wait_for(lambda: simulator.relation_tags("alice", served.external_userid) == {tag})
        wait_for(lambda: set(inbox_statuses(db_url)) == {"done"}, what="the callback done")
    finally:
        live.stop()
    # ...and then alice takes the channel tag off by hand: no sync may put it back.
    simulator.callback_url = None
    simulator.staff_edit_tags("alice", served.external_userid, remove=[tag])

    # The bot is down: three customers scan, their callbacks find nobody.
    simulator.callback_url = f"http://127.0.0.1:{free_port()}/wecom/callback"
    missed = [simulator.scan(state, name=f"客户{i}") for i in range(3)]
    assert [m.callback_status for m in missed] == [None, None, None]
    assert all(simulator.relation_tags("alice", m.external_userid) == set() for m in missed)
    simulator.reset_counters()

    first = _sync(config)

    assert "补打渠道标签 3 位（回调未送达）" in first.stdout
    assert "whose add callback never arrived" in first.stderr
    for m in missed:
        assert simulator.relation_tags("alice", m.external_userid) == {tag}
    assert simulator.relation_tags("alice", served.external_userid) == set()
    calls = simulator.calls
    assert calls.get(MARK) == 3  # one per relation: coalesced, nothing for the served one
    assert calls.get(WELCOME) is None  # the codes are dead
    relations = _relations(db_url)
    db = Database(db_url)
    try:
        with db.read() as session:
            channel = session.scalars(select(Channel)).one()
            assert channel.scans == 4  # the served scan and the three missed ones
            touched = set(
                session.scalars(
                    select(Customer.external_userid).join(
                        TouchedCustomer, TouchedCustomer.customer_id == Customer.id
                    )
                )
            )
    finally:
        db.dispose()
    assert relations == {
        m.external_userid: (channel.id, True) for m in [served, *missed]
    }  # first channel: 活动, for everyone
    assert {m.external_userid for m in missed} <= touched

    simulator.reset_counters()
    second = _sync(config)

    assert "补打渠道标签" not in second.stdout
    assert simulator.calls.get(MARK) is None
    assert simulator.relation_tags("alice", served.external_userid) == set()


@pytest.fixture
def rt(db_url: str, simulator: Simulator) -> Iterator[Runtime]:
    simulator.add_staff("alice")
    runtime = Runtime(settings_from_mapping(base_config(db_url, simulator.api_base), environ={}))
    yield runtime
    runtime.wecom.close()
    runtime.close()


def _queued(rt: Runtime) -> int:
    with rt.db.read() as session:
        return len(session.scalars(select(OutboxOperation.id)).all())


def test_a_scan_whose_add_event_waits_in_the_inbox_is_left_to_it(
    rt: Runtime, simulator: Simulator
) -> None:
    state = welcome_channel(rt)
    scan = simulator.scan(state)  # no callback URL: nothing delivered
    with rt.db.write() as session:  # ...but say WeCom's retry got in and waits to be handled
        event = InboxEvent(
            dedup_key="add-1",
            event="change_external_contact",
            change_type="add_external_contact",
            payload="<xml/>",
            relation_key=f"alice|{scan.external_userid}",
        )
        session.add(event)
    assert run_sync(db=rt.db, wecom=rt.wecom).missed_scans == 0
    assert _queued(rt) == 0

    with rt.db.write() as session:  # the callback failed for good: sync applies the channel
        session.execute(update(InboxEvent).values(status="dead"))
    report = run_sync(db=rt.db, wecom=rt.wecom)
    assert (report.missed_scans, report.missed_scan_customers) == (1, 1)
    assert _queued(rt) == 1


def test_a_customer_who_left_and_came_back_while_the_bot_was_down_is_tagged_again(
    rt: Runtime, simulator: Simulator
) -> None:
    state = welcome_channel(rt)
    tag = simulator.tag_catalogue()["来源"]["活动"]
    scan = simulator.scan(state)
    assert run_sync(db=rt.db, wecom=rt.wecom).missed_scans == 1
    push.drain_all(**parts.drain(rt))
    assert simulator.relation_tags("alice", scan.external_userid) == {tag}

    simulator.customer_deletes_staff(scan.external_userid, "alice")
    simulator.state.skew += 3600  # an hour later the customer scans again
    again = simulator.scan(state, external_userid=scan.external_userid)
    assert again.userid == "alice"
    assert simulator.relation_tags("alice", scan.external_userid) == set()
    assert run_sync(db=rt.db, wecom=rt.wecom).missed_scans == 1
    push.drain_all(**parts.drain(rt))
    assert simulator.relation_tags("alice", scan.external_userid) == {tag}

    simulator.reset_counters()
    assert run_sync(db=rt.db, wecom=rt.wecom).missed_scans == 0
    assert _queued(rt) == 2
    assert simulator.calls.get(MARK) is None


def test_a_channel_tag_deleted_in_wecom_is_created_again_as_a_scan_would(
    rt: Runtime, simulator: Simulator
) -> None:
    state = welcome_channel(rt)
    simulator.admin_delete_tag(simulator.tag_catalogue()["来源"]["活动"])
    scan = simulator.scan(state)
    simulator.reset_counters()
    report = run_sync(db=rt.db, wecom=rt.wecom)
    assert report.missed_scans == 1
    assert report.calls["externalcontact/add_corp_tag"] == 1  # counted with the sync's calls
    push.drain_all(**parts.drain(rt))
    recreated = simulator.tag_catalogue()["来源"]["活动"]
    assert simulator.relation_tags("alice", scan.external_userid) == {recreated}
