"""Lost relations, hand edits, tag library changes and dead letters, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from bot import staff_alerts
from bot.channels import lookup
from bot.config import settings_from_mapping
from bot.db.models import (
    Customer,
    FollowRelation,
    InboxEvent,
    RelationTag,
    Staff,
    Tag,
    TagGroup,
    TierAssignment,
)
from bot.sync import run_sync
from tagbot.cli import main
from tests.support.channels import store_channel
from tests.support.configs import toml_text
from tests.support.corp import base_config
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    settings = settings_from_mapping(base_config(db_url, api_base=simulator.api_base), environ={})
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    simulator.add_staff("alice", "Alice")
    yield server
    server.stop()


def _relation(server: LiveServer, ext: str) -> FollowRelation | None:
    with server.runtime.db.read() as session:
        return session.scalars(
            select(FollowRelation)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .where(Customer.external_userid == ext)
        ).first()


def _all_done(server: LiveServer) -> bool:
    with server.runtime.db.read() as session:
        statuses = set(session.scalars(select(InboxEvent.status)))
    return bool(statuses) and statuses <= {"done", "ignored"}


def test_customer_deleting_staff_marks_lost_and_alerts_in_chinese(
    live: LiveServer, simulator: Simulator
) -> None:
    state = store_channel(live)
    scan = simulator.scan(state, name="王小明")
    wait_for(lambda: bool(simulator.relation_tags("alice", scan.external_userid)))
    wait_for(lambda: _all_done(live))
    with live.runtime.db.write() as session:
        customer_id = session.scalars(
            select(Customer.id).where(Customer.external_userid == scan.external_userid)
        ).one()
        session.add(TierAssignment(customer_id=customer_id, dimension="价值", tier="高价值"))

    simulator.customer_deletes_staff(scan.external_userid, "alice")
    wait_for(lambda: bool(simulator.app_messages), what="app message")
    message = simulator.app_messages[0]
    assert message["touser"] == "alice"
    assert message["agentid"] == live.runtime.settings.wecom.agent_id
    text = message["text"]["content"]
    assert "客户 王小明 已将你删除" in text
    assert "门店" in text
    assert "价值：高价值" in text
    relation = _relation(live, scan.external_userid)
    assert relation is not None
    assert (relation.status, relation.lost_reason) == ("lost", "del_follow_user")
    assert relation.lost_at is not None
    with live.runtime.db.read() as session:
        view = lookup.view(
            lookup.get("门店", session=session), session=session, tz=live.runtime.settings.tz
        )
    assert (view.adds, view.lost) == (1, 1)


def test_twenty_customers_leaving_one_member_are_merged_and_none_dropped(
    live: LiveServer, simulator: Simulator
) -> None:
    state = store_channel(live)
    names = [f"客户{i:02d}" for i in range(20)]
    scans = [simulator.scan(state, name=name) for name in names]
    wait_for(lambda: _all_done(live))
    for scan in scans:  # within seconds: one message each would be 20 in a minute
        simulator.customer_deletes_staff(scan.external_userid, "alice")

    def told() -> str:
        return "\n".join(m["text"]["content"] for m in simulator.app_messages)

    wait_for(lambda: all(name in told() for name in names), timeout=30, what="all 20 names")
    messages = simulator.app_messages
    assert all(m["touser"] == "alice" for m in messages)
    assert 1 <= len(messages) <= 3  # merged: one message per member per window
    assert any("位客户已将你删除：" in m["text"]["content"] for m in messages)
    control = requests.get(simulator.url + "/control/app_messages", timeout=5).json()
    assert control["dropped"] == {}

    def recorded() -> bool:
        with live.runtime.db.read() as session:
            return staff_alerts.counts(session=session)["sent"] == 20

    wait_for(recorded, what="the alerts recorded as sent")
    assert staff_alerts.ALERTS.labels("merged")._value.get() >= 20 - len(messages)


def test_a_merged_alert_lists_names_politely_within_the_message_limit() -> None:
    one = staff_alerts.compose(staff_alerts.CUSTOMER_LOST, ["张三"], ["客户 张三 已将你删除"])
    assert one == "客户 张三 已将你删除"  # alone: the full alert
    two = staff_alerts.compose(staff_alerts.CUSTOMER_LOST, ["张三", "李四"], ["a", "b"])
    assert two == "2 位客户已将你删除：张三、李四"
    many = [f"很长的客户昵称{i:03d}" * 3 for i in range(50)]
    text = staff_alerts.compose(staff_alerts.CUSTOMER_LOST, many, ["x"] * 50)
    assert text.startswith("50 位客户已将你删除：")
    assert text.endswith("…等 50 位")
    assert text.count("、") == staff_alerts.MAX_NAMES - 1
    assert len(text.encode()) <= staff_alerts.TEXT_MAX_BYTES
    huge = ["名" * 300] * 5
    text = staff_alerts.compose(staff_alerts.CUSTOMER_LOST, huge, ["x"] * 5)
    assert len(text.encode()) <= staff_alerts.TEXT_MAX_BYTES
    assert text.endswith("…等 5 位")


def test_staff_deleting_customer_and_transfer_fail(live: LiveServer, simulator: Simulator) -> None:
    state = store_channel(live)
    scan = simulator.scan(state)
    wait_for(lambda: _all_done(live))
    xml = simulator.event_xml(
        "change_external_contact",
        "transfer_fail",
        {
            "UserID": "alice",
            "ExternalUserID": scan.external_userid,
            "FailReason": "customer_refused",
        },
    )
    simulator.post_callback(xml)
    simulator.staff_deletes_customer(scan.external_userid, "alice")
    wait_for(lambda: (_relation(live, scan.external_userid) or FollowRelation()).status == "lost")
    relation = _relation(live, scan.external_userid)
    assert relation is not None
    assert relation.lost_reason == "del_external_contact"
    wait_for(lambda: _all_done(live))
    relation = _relation(live, scan.external_userid)
    assert relation is not None
    assert relation.transfer_fail_reason == "customer_refused"
    assert simulator.app_messages == []  # only the customer's deletion alerts the staff


def test_hand_edited_tags_are_read_back(live: LiveServer, simulator: Simulator) -> None:
    state = store_channel(live)
    scan = simulator.scan(state)
    wait_for(lambda: bool(simulator.relation_tags("alice", scan.external_userid)))
    wait_for(lambda: _all_done(live))
    theirs = simulator.admin_create_tag("客服备注", "爱砍价")
    simulator.staff_edit_tags("alice", scan.external_userid, add=[theirs])
    wait_for(lambda: _all_done(live))

    def tag_names() -> set[str]:
        with live.runtime.db.read() as session:
            return set(
                session.scalars(
                    select(Tag.name)
                    .join(RelationTag, RelationTag.tag_id == Tag.id)
                    .join(FollowRelation, FollowRelation.id == RelationTag.relation_id)
                    .join(Customer, Customer.id == FollowRelation.customer_id)
                    .where(Customer.external_userid == scan.external_userid)
                )
            )

    wait_for(lambda: tag_names() == {"门店", "爱砍价"}, what="relation tags read back")
    # The hand-added tag is theirs: we never remove it.
    assert theirs in simulator.relation_tags("alice", scan.external_userid)


def _our_tags(server: LiveServer, userid: str, ext: str) -> dict[str, set[str]]:
    """Return the WeCom ids and names of the tags we record on one relation."""
    with server.runtime.db.read() as session:
        rows = session.execute(
            select(Tag.wecom_tag_id, Tag.name)
            .join(RelationTag, RelationTag.tag_id == Tag.id)
            .join(FollowRelation, FollowRelation.id == RelationTag.relation_id)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .where(Customer.external_userid == ext, Staff.userid == userid)
        ).all()
    return {"ids": {i for i, _ in rows}, "names": {n for _, n in rows}}


def test_personal_and_rule_group_tags_are_read_and_never_touched(
    live: LiveServer, simulator: Simulator
) -> None:
    simulator.add_staff("bob", "Bob")
    vip = simulator.admin_create_tag("价值", "VIP")
    rule = simulator.add_rule_tag("规则组", "高频")
    personal = [("", "爱喝茶"), ("", "VIP")]  # a personal tag may share a corp tag's name
    ext = simulator.add_relation("bob", tag_ids=[vip, rule], personal_tags=personal)
    wait_for(
        lambda: _all_done(live)
    )  # the tag-create event first: its catalogue write races channels.create
    state = store_channel(live)
    simulator.scan(state, external_userid=ext)  # a friend of bob's adds alice
    store = simulator.tag_catalogue()["来源"]["门店"]
    wait_for(lambda: simulator.relation_tags("alice", ext) == {store}, what="channel tag")
    wait_for(lambda: _all_done(live))
    # alice gets personal and rule-group tags on the customer too, by hand
    simulator.add_relation("alice", ext, tag_ids=[rule], personal_tags=[("", "老乡")])
    simulator.post_callback(
        simulator.event_xml(
            "change_external_contact",
            "edit_external_contact",
            {"UserID": "alice", "ExternalUserID": ext},
        )
    )
    wait_for(lambda: _all_done(live))
    rt = live.runtime
    report = run_sync(db=rt.db, wecom=rt.wecom)
    assert report.unknown_tag_ids >= 1  # the rule-group tag is not in the corp library
    wait_for(lambda: _all_done(live))
    assert simulator.relation_tag_kinds("bob", ext) == {
        "corp": [vip],
        "personal": [list(p) for p in personal],
        "rule": [rule],
    }
    assert simulator.relation_tag_kinds("alice", ext) == {
        "corp": [store],
        "personal": [["", "老乡"]],
        "rule": [rule],
    }
    assert _our_tags(live, "bob", ext) == {"ids": {vip}, "names": {"VIP"}}
    assert _our_tags(live, "alice", ext) == {"ids": {store}, "names": {"门店"}}
    mark_calls = {k: v for k, v in simulator.calls.items() if k == "externalcontact/mark_tag"}
    assert mark_calls == {"externalcontact/mark_tag": 1}  # the channel tag, nothing else
    with rt.db.read() as session:
        names = {(g, t) for g, t in session.execute(select(TagGroup.name, Tag.name).join(Tag))}
    assert ("规则组", "高频") not in names
    assert ("", "爱喝茶") not in names


def test_tag_library_changes_refresh_the_catalogue(live: LiveServer, simulator: Simulator) -> None:
    store_channel(live)
    tag_id = simulator.tag_catalogue()["来源"]["门店"]
    simulator.admin_rename_tag(tag_id, "线下门店")
    simulator.admin_create_tag("活动", "双11")

    def names() -> set[tuple[str, str]]:
        with live.runtime.db.read() as session:
            rows = session.execute(
                select(TagGroup.name, Tag.name)
                .join(Tag, Tag.group_id == TagGroup.id)
                .where(Tag.deleted.is_(False))
            ).all()
        return {(g, t) for g, t in rows}

    wait_for(lambda: names() == {("来源", "线下门店"), ("活动", "双11")}, what="catalogue")
    simulator.admin_delete_tag(tag_id)
    wait_for(lambda: names() == {("活动", "双11")}, what="deleted tag gone")
    assert simulator.calls.get("externalcontact/get_corp_tag_list", 0) <= 4


def test_failures_end_dead_and_replay_from_the_cli(
    live: LiveServer,
    simulator: Simulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = store_channel(live)
    simulator.inject_fault("externalcontact/get", errcode=40096, count=1)  # permanent
    scan = simulator.scan(state)

    def dead() -> list[InboxEvent]:
        with live.runtime.db.read() as session:
            return list(session.scalars(select(InboxEvent).where(InboxEvent.status == "dead")))

    wait_for(lambda: len(dead()) == 1, what="dead letter")
    assert "40096" in (dead()[0].last_error or "")
    config = tmp_path / "config.toml"
    config.write_text(toml_text(base_config(live.runtime.settings.database.url)), encoding="utf-8")
    assert main(["--config", str(config), "inbox", "list"]) == 0
    out = capsys.readouterr().out
    assert "dead=1" in out
    assert "40096" in out
    assert main(["--config", str(config), "inbox", "replay", "--all-dead"]) == 0
    live.runtime.wakeups.inbox.set()  # the CLI is another process; the worker also polls
    wait_for(lambda: bool(simulator.relation_tags("alice", scan.external_userid)))
    wait_for(lambda: _all_done(live))
    assert dead() == []


def test_transient_failures_retry_with_backoff(live: LiveServer, simulator: Simulator) -> None:
    state = store_channel(live)
    # More busy answers than the adapter's own retries: the inbox retries later.
    simulator.inject_fault("externalcontact/get", errcode=-1, count=5)
    scan = simulator.scan(state)
    wait_for(lambda: bool(simulator.relation_tags("alice", scan.external_userid)), timeout=30)
    wait_for(lambda: _all_done(live))
    with live.runtime.db.read() as session:
        event = session.scalars(select(InboxEvent)).one()
    assert event.status == "done"
    assert event.attempts == 2
