"""Customer groups in the simulator over real HTTP: list, detail, join ways, group events."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from defusedxml import ElementTree

from tests.support.sim_http import Api, Receiver, receiving
from wecom_sim import Simulator


@pytest.fixture
def api(simulator: Simulator) -> Api:
    """A client with a token for the simulator, whose corp has two members."""
    simulator.add_staff("u1", "张三")
    simulator.add_staff("u2", "李四")
    return Api(simulator)


@pytest.fixture
def receiver(simulator: Simulator) -> Iterator[Receiver]:
    """A callback receiver wired as the simulator's callback_url."""
    with receiving(simulator) as rec:
        yield rec


def event_fields(xml: str) -> dict[str, Any]:
    """Parse a plaintext event: text fields, and MemChangeList as its <Item> list."""
    root = ElementTree.fromstring(xml)
    fields: dict[str, Any] = {child.tag: child.text or "" for child in root}
    items = root.find("MemChangeList")
    if items is not None:
        fields["MemChangeList"] = [item.text for item in items]
    return fields


def join_way(api: Api, chat_ids: list[str], state: str = "vip_qr", **extra: Any) -> str:
    answer = api.post(
        "externalcontact/groupchat/add_join_way",
        {"scene": 2, "chat_id_list": chat_ids, "state": state, **extra},
    )
    assert answer["errcode"] == 0, answer
    assert set(answer) == {"errcode", "errmsg", "config_id"}  # the QR comes from get
    config_id: str = answer["config_id"]
    return config_id


def test_groups_are_listed_by_owner_and_status_and_paged(simulator: Simulator, api: Api) -> None:
    made = [simulator.create_group_chat("u1", f"群{i}").chat_id for i in range(3)]
    theirs = simulator.create_group_chat("u2", "李四的群").chat_id
    listed = api.post("externalcontact/groupchat/list", {"limit": 2})
    assert [g["chat_id"] for g in listed["group_chat_list"]] == made[:2]
    rest = api.post("externalcontact/groupchat/list", {"limit": 2, "cursor": listed["next_cursor"]})
    assert [g["chat_id"] for g in rest["group_chat_list"]] == [made[2], theirs]
    assert rest["next_cursor"] == ""
    by_owner = api.post(
        "externalcontact/groupchat/list", {"limit": 1000, "owner_filter": {"userid_list": ["u2"]}}
    )
    assert by_owner["group_chat_list"] == [{"chat_id": theirs, "status": 0}]
    simulator.add_staff("u2", active=False)  # the owner left: follow status 1
    resigned = api.post("externalcontact/groupchat/list", {"limit": 10, "status_filter": 1})
    assert resigned["group_chat_list"] == [{"chat_id": theirs, "status": 1}]
    simulator.dismiss_group(made[0])
    listed = api.post("externalcontact/groupchat/list", {"limit": 10})
    assert made[0] not in [g["chat_id"] for g in listed["group_chat_list"]]
    # limit is required and at most 1000; at most 100 owners; status 0..3; a JSON cursor
    assert api.post("externalcontact/groupchat/list", {})["errcode"] == 40063
    assert api.post("externalcontact/groupchat/list", {"limit": 1001})["errcode"] == 40058
    assert api.post("externalcontact/groupchat/list", {"limit": "10"})["errcode"] == 40058
    owners = {"userid_list": [f"x{i}" for i in range(101)]}
    answer = api.post("externalcontact/groupchat/list", {"limit": 10, "owner_filter": owners})
    assert answer["errcode"] == 40058
    answer = api.post("externalcontact/groupchat/list", {"limit": 10, "status_filter": 4})
    assert answer["errcode"] == 40058
    answer = api.post("externalcontact/groupchat/list", {"limit": 10, "cursor": "!!"})
    assert answer["errcode"] == 50100


def test_listing_every_owner_of_a_large_corp_is_refused(simulator: Simulator, api: Api) -> None:
    simulator.seed(1001, 0)
    answer = api.post("externalcontact/groupchat/list", {"limit": 10})
    assert answer["errcode"] == 81017
    by_owner = {"limit": 10, "owner_filter": {"userid_list": ["u1"]}}
    assert api.post("externalcontact/groupchat/list", by_owner)["errcode"] == 0


def test_group_detail_members_names_unionid_and_errors(simulator: Simulator, api: Api) -> None:
    friend = simulator.add_relation("u1", name="王小明")
    chat = simulator.create_group_chat("u1", "VIP会员群", [friend, "u2"], notice="欢迎").chat_id
    answer = api.post("externalcontact/groupchat/get", {"chat_id": chat})
    group = answer["group_chat"]
    assert (group["name"], group["owner"], group["notice"]) == ("VIP会员群", "u1", "欢迎")
    assert group["member_version"]
    owner, customer, colleague = group["member_list"]
    assert owner == {
        "userid": "u1",
        "type": 1,
        "join_time": owner["join_time"],
        "join_scene": 1,
        "group_nickname": "",
    }
    assert customer["type"] == 2
    assert customer["invitor"] == {"userid": "u1"}
    assert customer["unionid"]  # a WeChat user, and the corp bound a developer account
    assert "name" not in customer
    assert "state" not in customer
    assert colleague["userid"] == "u2"
    assert "unionid" not in colleague
    named = api.post("externalcontact/groupchat/get", {"chat_id": chat, "need_name": 1})
    assert [m["name"] for m in named["group_chat"]["member_list"]] == ["张三", "王小明", "李四"]
    simulator.unionid_bound = False
    plain = api.post("externalcontact/groupchat/get", {"chat_id": chat})
    assert all("unionid" not in m for m in plain["group_chat"]["member_list"])
    assert api.post("externalcontact/groupchat/get", {})["errcode"] == 40063
    assert api.post("externalcontact/groupchat/get", {"chat_id": "wr_nope"})["errcode"] == 40050
    bad_flag = {"chat_id": chat, "need_name": 2}
    assert api.post("externalcontact/groupchat/get", bad_flag)["errcode"] == 40058
    simulator.dismiss_group(chat)
    assert api.post("externalcontact/groupchat/get", {"chat_id": chat})["errcode"] == 49008


def test_join_way_checks_and_overwriting_update(simulator: Simulator, api: Api) -> None:
    chats = [simulator.create_group_chat("u1", f"群{i}").chat_id for i in range(6)]
    post = api.post
    base = {"scene": 2, "chat_id_list": chats[:1]}
    assert post("externalcontact/groupchat/add_join_way", {**base, "scene": 3})["errcode"] == 41040
    assert (
        post("externalcontact/groupchat/add_join_way", {"chat_id_list": chats[:1]})["errcode"]
        == 41039
    )
    assert post("externalcontact/groupchat/add_join_way", {"scene": 2})["errcode"] == 40063
    too_many = {**base, "chat_id_list": chats}
    assert post("externalcontact/groupchat/add_join_way", too_many)["errcode"] == 41091
    unknown = {**base, "chat_id_list": ["wr_nope"]}
    assert post("externalcontact/groupchat/add_join_way", unknown)["errcode"] == 40050
    long_state = {**base, "state": "s" * 31}
    assert post("externalcontact/groupchat/add_join_way", long_state)["errcode"] == 40058
    long_base = {**base, "room_base_name": "群" * 41}
    assert post("externalcontact/groupchat/add_join_way", long_base)["errcode"] == 40058
    assert simulator.join_ways == {}  # nothing half-made
    config_id = join_way(
        api, chats[:5], state="s" * 30, remark="备" * 35, room_base_name="VIP群", room_base_id=7
    )
    way = post("externalcontact/groupchat/get_join_way", {"config_id": config_id})["join_way"]
    assert (
        way
        == {
            "config_id": config_id,
            "scene": 2,
            "remark": "备" * 30,  # cut at 30, not refused
            "auto_create_room": 1,
            "room_base_name": "VIP群",
            "room_base_id": 7,
            "chat_id_list": chats[:5],
            "state": "s" * 30,
            "qr_code": f"{simulator.url}/qr/{config_id}.png",
        }
    )
    assert requests.get(way["qr_code"], timeout=5).status_code == 200
    # update overwrites: what is left out goes back to its default
    update = {"config_id": config_id, "scene": 1, "chat_id_list": chats[1:2]}
    assert post("externalcontact/groupchat/update_join_way", update)["errcode"] == 0
    way = post("externalcontact/groupchat/get_join_way", {"config_id": config_id})["join_way"]
    assert (way["scene"], way["chat_id_list"], way["state"], way["remark"]) == (
        1,
        chats[1:2],
        "",
        "",
    )
    assert "qr_code" not in way  # a mini-program button has no QR
    refused = {**update, "chat_id_list": chats}
    assert post("externalcontact/groupchat/update_join_way", refused)["errcode"] == 41091
    way = post("externalcontact/groupchat/get_join_way", {"config_id": config_id})["join_way"]
    assert way["chat_id_list"] == chats[1:2]  # the refused update changed nothing
    assert post("externalcontact/groupchat/get_join_way", {})["errcode"] == 41043
    assert post("externalcontact/groupchat/del_join_way", {"config_id": config_id})["errcode"] == 0
    gone = post("externalcontact/groupchat/get_join_way", {"config_id": config_id})
    assert gone["errcode"] == 41044


def test_a_customer_joins_by_qr_and_the_state_shows_in_the_detail(
    simulator: Simulator, api: Api, receiver: Receiver
) -> None:
    created = simulator.create_group_chat("u1", "VIP会员群", ["u2"])
    chat = created.chat_id
    before = api.post("externalcontact/groupchat/get", {"chat_id": chat})["group_chat"]
    join_way(api, [chat], state="vip_qr")
    joined = simulator.join_group_by_qr("vip_qr", name="王小明", duplicate=True)
    ext = joined.members[0]
    assert [d.status for d in joined.deliveries] == [200, 200]  # delivered twice, as a retry
    detail = api.post("externalcontact/groupchat/get", {"chat_id": chat})["group_chat"]
    member = detail["member_list"][-1]
    assert (member["userid"], member["type"], member["join_scene"], member["state"]) == (
        ext,
        2,
        3,
        "vip_qr",
    )
    assert "invitor" not in member
    events = receiver.events()  # decrypted and signature-checked
    assert [(e["ChangeType"], e.get("UpdateDetail", "")) for e in events] == [
        ("create", ""),
        ("update", "add_member"),
        ("update", "add_member"),
    ]
    add = event_fields(joined.xml[0])
    assert add == {
        "ToUserName": simulator.corp_id,
        "FromUserName": "sys",
        "CreateTime": add["CreateTime"],
        "MsgType": "event",
        "Event": "change_external_chat",
        "ChangeType": "update",
        "ChatId": chat,
        "UpdateDetail": "add_member",
        "JoinScene": "3",
        "MemChangeCnt": "1",
        "MemChangeList": [ext],
        "LastMemVer": before["member_version"],
        "CurMemVer": detail["member_version"],
    }
    again = simulator.join_group_by_qr("vip_qr", external_userid=ext)
    assert (again.xml, again.deliveries) == ((), ())  # already in: nothing happens


def test_a_full_group_moves_joins_on_and_opens_a_numbered_one(
    simulator: Simulator, api: Api
) -> None:
    simulator.state.group_capacity = 2
    first = simulator.create_group_chat("u1", "VIP群", ["u2"]).chat_id
    config_id = join_way(api, [first], room_base_name="VIP群", room_base_id=10)
    joined = simulator.join_group_by_qr("vip_qr")
    assert joined.chat_id != first
    assert [event_fields(x)["ChangeType"] for x in joined.xml] == ["create", "update"]
    assert simulator.group_chats[joined.chat_id].name == "VIP群10"
    way = api.post("externalcontact/groupchat/get_join_way", {"config_id": config_id})
    assert way["join_way"]["chat_id_list"] == [first, joined.chat_id]
    no_new_rooms = {"config_id": config_id, "scene": 2, "chat_id_list": [first]}
    no_new_rooms |= {"auto_create_room": 0, "state": "vip_qr"}
    assert api.post("externalcontact/groupchat/update_join_way", no_new_rooms)["errcode"] == 0
    with pytest.raises(ValueError, match="full"):
        simulator.join_group_by_qr("vip_qr")


def test_leave_rename_owner_notice_and_dismiss_post_their_events(
    simulator: Simulator, api: Api, receiver: Receiver
) -> None:
    friend = simulator.add_relation("u1")
    chat = simulator.create_group_chat("u1", "群", ["u2"]).chat_id
    invited = simulator.invite_to_group(chat, [friend], "u2", by_link=True)
    simulator.leave_group(chat, friend, removed=True)
    simulator.rename_group(chat, "新群名")
    simulator.change_group_notice(chat, "新公告")
    simulator.change_group_owner(chat, "u2")
    simulator.leave_group(chat, "u1")
    simulator.dismiss_group(chat)
    fields = [event_fields(d.xml) for d in simulator.deliveries]
    assert [
        (f["ChangeType"], f.get("UpdateDetail"), f.get("JoinScene"), f.get("QuitScene"))
        for f in fields
    ] == [
        ("create", None, None, None),
        ("update", "add_member", "0", None),  # invited by link: the event says 0
        ("update", "del_member", None, "1"),
        ("update", "change_name", None, None),
        ("update", "change_notice", None, None),
        ("update", "change_owner", None, None),
        ("update", "del_member", None, "0"),
        ("dismiss", None, None, None),
    ]
    assert {f["ChatId"] for f in fields} == {chat}
    # each membership change chains on the previous version
    versions = [(f["LastMemVer"], f["CurMemVer"]) for f in fields if "CurMemVer" in f]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(versions))
    assert invited.members == (friend,)
    assert len(receiver.events()) == 8
    kept = simulator.group_chats[chat]
    assert (kept.name, kept.owner, kept.notice, kept.dismissed) == ("新群名", "u2", "新公告", True)
    assert list(kept.members) == ["u2"]


def test_held_back_events_can_be_posted_later_in_any_order(
    simulator: Simulator, api: Api, receiver: Receiver
) -> None:
    chat = simulator.create_group_chat("u1", "群", deliver=False)
    join_way(api, [chat.chat_id])
    joined = simulator.join_group_by_qr("vip_qr", deliver=False)
    assert receiver.requests == []
    assert joined.deliveries == ()
    control = simulator.url + "/control/callbacks"
    for xml in (*joined.xml, *chat.xml):  # the join before the group's creation
        answer = requests.post(control, json={"xml": xml, "times": 2}, timeout=5).json()
        assert [d["status"] for d in answer["deliveries"]] == [200, 200]
    assert [e["ChangeType"] for e in receiver.events()] == ["update", "update", "create", "create"]


def test_group_actions_refuse_what_wecom_would_not_allow(simulator: Simulator) -> None:
    simulator.add_staff("u1")
    simulator.add_staff("u2")
    with pytest.raises(LookupError):
        simulator.create_group_chat("nobody", "群")
    with pytest.raises(LookupError):
        simulator.create_group_chat("u1", "群", ["wm_unknown"])
    chat = simulator.create_group_chat("u1", "群", ["u2"], chat_id="wr_fixed").chat_id
    with pytest.raises(ValueError, match="exists"):
        simulator.create_group_chat("u1", "群", chat_id="wr_fixed")
    with pytest.raises(ValueError, match="owner cannot leave"):
        simulator.leave_group(chat, "u1")
    with pytest.raises(LookupError):
        simulator.join_group_by_qr("no_such_state")
    simulator.add_staff("u3")
    with pytest.raises(ValueError, match="not in group"):
        simulator.change_group_owner(chat, "u3")
    simulator.dismiss_group(chat)
    with pytest.raises(LookupError, match="dismissed"):
        simulator.rename_group(chat, "x")


def test_control_api_drives_groups(simulator: Simulator, api: Api, receiver: Receiver) -> None:
    control = simulator.url + "/control"

    def post(path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(control + path, json=body, timeout=5)

    friend = simulator.add_relation("u1")
    made = post("/group_chats", {"owner": "u1", "name": "VIP会员群", "members": [friend]})
    chat = made.json()["chat_id"]
    assert made.json()["deliveries"][0]["status"] == 200
    join_way(api, [chat], state="ctl")
    joined = post("/group_chats/join", {"state": "ctl", "external_userid": "wm_ctl_1"}).json()
    assert (joined["chat_id"], joined["members"]) == (chat, ["wm_ctl_1"])
    left = post(f"/group_chats/{chat}/leave", {"member": "wm_ctl_1", "deliver": False}).json()
    assert left["deliveries"] == []
    assert "del_member" in left["xml"][0]
    assert post(f"/group_chats/{chat}/rename", {"name": "新名"}).status_code == 200
    assert (
        post(f"/group_chats/{chat}/invite", {"members": "u2", "invitor": "u1"}).status_code == 400
    )
    assert post(f"/group_chats/{chat}/leave", {}).status_code == 400
    assert post("/group_chats/wr_nope/dismiss", {}).status_code == 404
    assert post("/group_chats/join", {"state": "nope"}).status_code == 404
    groups = requests.get(control + "/group_chats", timeout=5).json()["group_chats"]
    assert [(g["chat_id"], g["name"], list(g["members"])) for g in groups] == [
        (chat, "新名", ["u1", friend])
    ]
    ways = requests.get(control + "/join_ways", timeout=5).json()["join_ways"]
    assert [w["state"] for w in ways] == ["ctl"]
