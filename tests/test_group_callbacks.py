"""change_external_chat callbacks end to end: the simulator posts them over HTTP to the bot.

Joins through a channel's group code are recorded with the channel and tag the member's
relations; a member who is nobody's customer is tagged once they become one; late,
reordered and repeated callbacks end in the membership WeCom has; a dismissal closes
every stay.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.callbacks.inbox import relation_key
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import GroupChat, InboxEvent, OutboxOperation
from bot.groups.changes import chat_change
from bot.wecom.events import parse_event
from tests.support.channels import store_channel
from tests.support.corp import base_config
from tests.support.groups import (
    Stay,
    current,
    group_code,
    inbox_settled,
    stays,
    wecom_tag_id,
)
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator

MINUTE = 60.0


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    settings = settings_from_mapping(base_config(db_url, api_base=simulator.api_base), environ={})
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    simulator.add_staff("alice", "Alice")
    yield server
    server.stop()


def _joined(sim: Simulator, chat_id: str, member: str) -> datetime:
    return datetime.fromtimestamp(sim.group_chats[chat_id].members[member].join_time, UTC)


def _settled(db: Database) -> None:
    wait_for(lambda: inbox_settled(db), what="every callback processed")


def _customer(live: LiveServer, sim: Simulator) -> str:
    """Make a customer of alice's through the 门店 live code; return their external_userid."""
    ext = sim.scan(store_channel(live, "门店", ("来源/门店",)), name="王小明").external_userid
    _settled(live.runtime.db)
    return ext


def test_a_customer_joining_through_a_channels_group_code_is_recorded_and_tagged(
    live: LiveServer, simulator: Simulator
) -> None:
    db = live.runtime.db
    ext = _customer(live, simulator)
    community = store_channel(live, "社群", ("来源/社群",))
    chat = simulator.create_group_chat("alice", "VIP会员群").chat_id
    group_code(live.runtime.wecom, chat, community)
    simulator.advance_time(MINUTE)
    simulator.join_group_by_qr(community, external_userid=ext)

    tag = wecom_tag_id(db, "来源", "社群")
    wait_for(lambda: tag in simulator.relation_tags("alice", ext), what="the channel's tag")
    _settled(db)
    assert stays(db, chat, ext) == [
        Stay(
            ext, _joined(simulator, chat, ext), 3, community, "社群", True, True, None, None, False
        )
    ]
    assert current(db, chat) == sorted(["alice", ext])
    with db.read() as session:
        group = session.scalars(select(GroupChat).where(GroupChat.chat_id == chat)).one()
        assert (group.name, group.owner_userid) == ("VIP会员群", "alice")
        assert group.member_version == simulator.group_chats[chat].member_version


def test_a_member_who_is_nobodys_customer_is_tagged_once_they_become_one(
    live: LiveServer, simulator: Simulator
) -> None:
    db = live.runtime.db
    community = store_channel(live, "社群", ("来源/社群",))
    shop = store_channel(live, "门店", ("来源/门店",))
    chat = simulator.create_group_chat("alice", "新人群").chat_id
    group_code(live.runtime.wecom, chat, community)
    simulator.advance_time(MINUTE)
    ext = simulator.join_group_by_qr(community, name="李雷").members[0]
    wait_for(lambda: bool(stays(db, chat, ext)), what="the join recorded")
    _settled(db)
    joined = _joined(simulator, chat, ext)
    # Recorded with its channel; nothing to tag yet: nobody's customer.
    assert stays(db, chat, ext) == [
        Stay(ext, joined, 3, community, "社群", False, False, None, None, False)
    ]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(OutboxOperation)) == 0

    simulator.scan(shop, external_userid=ext)  # now alice's customer, through another code
    tags = {wecom_tag_id(db, "来源", "门店"), wecom_tag_id(db, "来源", "社群")}
    wait_for(lambda: simulator.relation_tags("alice", ext) == tags, what="both channels' tags")
    _settled(db)
    assert stays(db, chat, ext) == [
        Stay(ext, joined, 3, community, "社群", True, True, None, None, False)
    ]


def test_late_reordered_and_repeated_callbacks_end_in_wecoms_membership(
    live: LiveServer, simulator: Simulator
) -> None:
    db = live.runtime.db
    ext = _customer(live, simulator)
    community = store_channel(live, "社群", ("来源/社群",))
    made = simulator.create_group_chat("alice", "VIP会员群", duplicate=True)
    chat = made.chat_id
    group_code(live.runtime.wecom, chat, community)
    simulator.advance_time(MINUTE)
    simulator.join_group_by_qr(community, external_userid=ext, duplicate=True)
    _settled(db)
    first = _joined(simulator, chat, ext)
    # Held back: the customer leaves and comes back through the code; WeCom posts the two
    # changes, which arrive in the wrong order, each twice.
    simulator.advance_time(MINUTE)
    left = simulator.leave_group(chat, ext, deliver=False).xml
    simulator.advance_time(MINUTE)
    back = simulator.join_group_by_qr(community, external_userid=ext, deliver=False).xml
    second = _joined(simulator, chat, ext)
    for xml in (*back, *left, *back, *left):
        simulator.post_callback(xml)
    _settled(db)

    left_at = datetime.fromtimestamp(int(_create_time(left[0])), UTC)
    assert stays(db, chat, ext) == [
        Stay(ext, first, 3, community, "社群", True, True, left_at, 0, False),
        Stay(ext, second, 3, community, "社群", True, True, None, None, False),
    ]
    assert current(db, chat) == sorted(["alice", ext])
    with db.read() as session:
        rows = session.execute(
            select(InboxEvent.change_type, InboxEvent.duplicates, InboxEvent.status).where(
                InboxEvent.event == "change_external_chat"
            )
        ).all()
    # create, join, leave, join again: each stored once, its second delivery counted
    assert len(rows) == 4
    assert all(duplicates == 1 and status == "done" for _, duplicates, status in rows)
    # The channel's tag was queued once: the second stay found the relation tagged.
    tag = wecom_tag_id(db, "来源", "社群")
    assert tag in simulator.relation_tags("alice", ext)
    assert simulator.calls.get("externalcontact/mark_tag", 0) == 2  # the scan's, the join's


def _create_time(xml: str) -> str:
    return xml.split("<CreateTime>", 1)[1].split("</CreateTime>", 1)[0]


def test_a_dismissed_group_closes_every_stay_and_late_events_change_nothing(
    live: LiveServer, simulator: Simulator
) -> None:
    db = live.runtime.db
    ext = _customer(live, simulator)
    simulator.add_staff("bob", "Bob")
    chat = simulator.create_group_chat("alice", "活动群", ["bob", ext]).chat_id
    _settled(db)
    assert current(db, chat) == sorted(["alice", "bob", ext])
    simulator.advance_time(MINUTE)
    renamed = simulator.rename_group(chat, "活动群（已结束）", deliver=False).xml
    simulator.advance_time(MINUTE)
    dismissed = simulator.dismiss_group(chat).xml
    _settled(db)
    for xml in renamed:  # WeCom's retry of an earlier change, after the dismissal
        simulator.post_callback(xml)
    _settled(db)
    at = datetime.fromtimestamp(int(_create_time(dismissed[0])), UTC)
    found = stays(db, chat)
    assert len(found) == 3
    assert {(s.member, s.left_at, s.dismissed) for s in found} == {
        (member, at, True) for member in ("alice", "bob", ext)
    }
    assert current(db, chat) == []
    with db.read() as session:
        group = session.scalars(select(GroupChat).where(GroupChat.chat_id == chat)).one()
        assert (group.name, group.dismissed_at) == ("活动群", at)


@pytest.mark.parametrize(
    "members",
    [
        "<MemChangeList><Item><![CDATA[wm_a]]></Item><Item><![CDATA[wm_b]]></Item></MemChangeList>",
        "<MemChangeList><![CDATA[wm_a,wm_b]]></MemChangeList>",  # the older, one-text form
    ],
)
def test_a_member_change_names_its_members_in_either_form_and_is_ordered_by_group(
    members: str,
) -> None:
    xml = (
        "<xml><ToUserName><![CDATA[corp]]></ToUserName><FromUserName><![CDATA[sys]]>"
        "</FromUserName><CreateTime>1796560000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event><ChangeType><![CDATA[update]]>"
        "</ChangeType><ChatId><![CDATA[wr_vip]]></ChatId><UpdateDetail><![CDATA[del_member]]>"
        f"</UpdateDetail><QuitScene>1</QuitScene><MemChangeCnt>2</MemChangeCnt>{members}"
        "<LastMemVer><![CDATA[v1]]></LastMemVer><CurMemVer><![CDATA[v2]]></CurMemVer></xml>"
    )
    ev = parse_event(xml)
    change = chat_change(ev)
    assert (change.chat_id, change.detail, change.members) == (
        "wr_vip",
        "del_member",
        ("wm_a", "wm_b"),
    )
    assert (change.quit_scene, change.current_version) == (1, "v2")
    assert change.at == datetime.fromtimestamp(1796560000, UTC)
    assert relation_key(ev) == "chat#wr_vip"
