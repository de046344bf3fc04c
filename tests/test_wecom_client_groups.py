"""WeComClient's customer-group calls against the simulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bot.db import Database
from bot.errors import WeComError
from bot.wecom.types import GroupChatMember, JoinWaySpec
from tests.support.wecom_clients import make_client
from wecom_sim import Simulator

LIST = "externalcontact/groupchat/list"


@pytest.fixture
def corp(simulator: Simulator) -> Simulator:
    """The simulator with two members and a customer of the first."""
    simulator.add_staff("u1", "张三")
    simulator.add_staff("u2", "李四")
    simulator.add_relation("u1", "wm_friend", name="王小明")
    return simulator


def test_groups_are_listed_by_owner_in_batches_of_100_and_read_whole(
    db: Database, corp: Simulator
) -> None:
    client = make_client(db, corp)
    mine = [corp.create_group_chat("u1", f"群{i}", ["wm_friend"]).chat_id for i in range(3)]
    theirs = corp.create_group_chat("u2", "李四的群").chat_id
    assert [g.chat_id for g in client.list_group_chats(["u1"], limit=2)] == mine
    assert corp.calls[LIST] == 2  # two pages of at most two
    owners = ["u2", *(f"nobody{i}" for i in range(150)), "u1"]
    listed = client.list_group_chats(owners)
    assert sorted(g.chat_id for g in listed) == sorted([*mine, theirs])
    assert corp.calls[LIST] == 2 + 2  # 152 owners: two calls of at most 100
    assert {g.status for g in listed} == {0}
    group = client.get_group_chat(mine[0], need_name=True)
    assert (group.name, group.owner, group.admins) == ("群0", "u1", ())
    assert group.members[1] == GroupChatMember(
        userid="wm_friend",
        type=2,
        join_time=group.members[1].join_time,
        join_scene=1,
        invitor="u1",
        name="王小明",
        unionid=corp.state.customers["wm_friend"].unionid,
    )
    assert group.member_version == corp.group_chats[mine[0]].member_version
    with pytest.raises(ValueError, match="status_filter"):
        client.list_group_chats(["u1"], status_filter=9)
    client.close()


def test_a_join_way_round_trip_and_the_state_of_who_came_through_it(
    db: Database, corp: Simulator
) -> None:
    client = make_client(db, corp)
    chats = [corp.create_group_chat("u1", f"VIP群{i}").chat_id for i in range(2)]
    spec = JoinWaySpec(chat_ids=chats, state="vip_qr", remark="会员群", room_base_name="VIP群")
    config_id = client.add_join_way(spec)
    way = client.get_join_way(config_id)
    assert (way.scene, way.chat_ids, way.state, way.remark, way.auto_create_room) == (
        2,
        tuple(chats),
        "vip_qr",
        "会员群",
        1,
    )
    assert way.qr_code.endswith(f"/qr/{config_id}.png")
    joined = corp.join_group_by_qr("vip_qr", external_userid="wm_friend")
    member = client.get_group_chat(joined.chat_id).members[-1]
    assert (member.userid, member.join_scene, member.state) == ("wm_friend", 3, "vip_qr")
    assert way.spec() == spec  # what was sent comes back
    client.update_join_way(config_id, JoinWaySpec(chat_ids=chats[1:], auto_create_room=False))
    way = client.get_join_way(config_id)
    assert (way.chat_ids, way.state, way.remark, way.auto_create_room) == (
        (chats[1],),
        "",  # an update replaces everything: the state and remark not sent are gone
        "",
        0,
    )
    changed = way.spec().model_copy(update={"state": "vip_qr2"})
    client.update_join_way(config_id, changed)
    assert client.get_join_way(config_id).spec() == changed
    client.del_join_way(config_id)
    with pytest.raises(WeComError) as gone:
        client.get_join_way(config_id)
    assert (gone.value.errcode, gone.value.retryable) == (41044, False)
    client.close()


def test_bad_join_ways_are_refused_before_sending_and_wecom_errors_keep_their_code(
    db: Database, corp: Simulator
) -> None:
    client = make_client(db, corp)
    chat = corp.create_group_chat("u1", "群").chat_id
    for bad, field in (
        ({"chat_ids": []}, "chat_ids"),
        ({"chat_ids": [chat] * 6}, "chat_ids"),
        ({"chat_ids": [chat], "scene": 3}, "scene"),
        ({"chat_ids": [chat], "state": "s" * 31}, "state"),
        ({"chat_ids": [chat], "remark": "备" * 31}, "remark"),  # WeCom would cut it silently
        ({"chat_ids": [chat], "room_base_name": "群" * 41}, "room_base_name"),
        ({"chat_ids": [chat], "room_base_id": -1}, "room_base_id"),
    ):
        with pytest.raises(ValueError, match=field):
            JoinWaySpec.model_validate(bad)
    assert corp.calls.get("externalcontact/groupchat/add_join_way", 0) == 0
    with pytest.raises(WeComError) as unknown:
        client.add_join_way(JoinWaySpec(chat_ids=["wr_nope"]))
    assert (unknown.value.errcode, unknown.value.retryable) == (40050, False)
    corp.dismiss_group(chat)
    with pytest.raises(WeComError) as dismissed:
        client.get_group_chat(chat)
    assert dismissed.value.errcode == 49008
    corp.inject_fault(LIST, errcode=-1, count=1)  # transient: retried with backoff
    assert client.list_group_chats(["u1"]) == []
    assert corp.calls[(LIST, -1)] == 1
    client.close()
