"""Lost relations, hand edits, tag library changes and dead letters, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.channels import lookup
from bot.config import settings_from_mapping
from bot.db.models import (
    Customer,
    FollowRelation,
    InboxEvent,
    RelationTag,
    Tag,
    TagGroup,
    TierAssignment,
)
from tagbot.cli import main
from tests.conftest import LiveServer, base_config
from tests.support.channels import store_channel
from tests.support.configs import toml_text
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
