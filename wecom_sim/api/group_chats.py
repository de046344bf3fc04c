"""Customer groups (客户群): groupchat/list, groupchat/get and the 加入群聊 join ways.

See docs/wecom-groups.md (official pages 92120, 92122, 92229); the error codes marked
assumed there are the simulator's choice.
"""

from __future__ import annotations

from typing import Any

from wecom_sim.api.contact_ways import (
    INVALID_CONFIG_ID,
    INVALID_SCENE,
    MISSING_CONFIG_ID,
    MISSING_SCENE,
)
from wecom_sim.api.params import INVALID, MISSING, Call, check_length, offset_page
from wecom_sim.api.registry import route
from wecom_sim.crypto import random_id
from wecom_sim.models import GroupChat, JoinWay
from wecom_sim.state import ApiError, SimState

UNKNOWN_CHAT = 40050  # chatid不存在
DISMISSED_CHAT = 49008  # 群已经解散
TOO_MANY_CHATS = 41091  # 配置客户群进群方式最多只能关联5个群
TOO_MANY_TO_LIST = 81017  # 请求个数超过限制: no owner_filter over a visible range > 1000
MAX_JOIN_WAY_CHATS = 5
MAX_OWNERS = 100
MAX_LIST_LIMIT = 1000
MAX_UNFILTERED_STAFF = 1000
JOIN_WAY_STATE_MAX = 30
JOIN_WAY_REMARK_MAX = 30  # longer remarks are cut, not refused
ROOM_BASE_NAME_MAX = 40


def _follow_status(state: SimState, chat: GroupChat) -> int:
    """Return 0 when the owner is active, 1 when they left (handovers are not simulated)."""
    owner = state.staff.get(chat.owner)
    return 0 if owner is not None and owner.active else 1


def _owners(call: Call) -> list[str] | None:
    owner_filter = call.body.get("owner_filter")
    if owner_filter is None:
        return None
    if not isinstance(owner_filter, dict):
        raise ApiError(INVALID, "invalid parameter: owner_filter must be an object")
    owners = owner_filter.get("userid_list", [])
    if not isinstance(owners, list) or not all(isinstance(u, str) for u in owners):
        raise ApiError(INVALID, "invalid parameter: owner_filter.userid_list")
    if len(owners) > MAX_OWNERS:
        raise ApiError(INVALID, f"owner_filter.userid_list holds more than {MAX_OWNERS}")
    return owners


@route("externalcontact/groupchat/list", "POST")
def groupchat_list(state: SimState, call: Call) -> dict[str, Any]:
    """List the live groups' ids and follow status, by owner and status, paged."""
    status_filter = call.integer("status_filter", 0)
    if status_filter not in (0, 1, 2, 3):
        raise ApiError(INVALID, "invalid parameter: status_filter must be 0..3")
    limit = call.integer("limit")  # required by the doc
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ApiError(INVALID, f"invalid parameter: limit must be 1..{MAX_LIST_LIMIT}")
    owners = _owners(call)
    if owners is None and len(state.staff) > MAX_UNFILTERED_STAFF:
        raise ApiError(TOO_MANY_TO_LIST, "too many owners: set owner_filter")
    rows = [
        {"chat_id": chat.chat_id, "status": _follow_status(state, chat)}
        for chat in state.group_chats.values()
        if not chat.dismissed and (not owners or chat.owner in owners)
    ]
    rows = [r for r in rows if status_filter in (0, r["status"])]
    page, next_cursor = offset_page(rows, call.text("cursor"), limit)
    return {"group_chat_list": page, "next_cursor": next_cursor}


def _member_api(state: SimState, chat: GroupChat, userid: str, need_name: bool) -> dict[str, Any]:
    m = chat.members[userid]
    row: dict[str, Any] = {"userid": m.userid, "type": m.type}
    customer = state.customers.get(m.userid) if m.type == 2 else None
    if customer is not None and customer.type == 1 and state.unionid_bound:
        row["unionid"] = customer.unionid
    row |= {"join_time": m.join_time, "join_scene": m.join_scene}
    if m.invitor:
        row["invitor"] = {"userid": m.invitor}
    row["group_nickname"] = m.group_nickname
    if need_name:
        staff = state.staff.get(m.userid)
        row["name"] = staff.name if staff is not None else customer.name if customer else ""
    if m.state:
        row["state"] = m.state
    return row


@route("externalcontact/groupchat/get", "POST")
def groupchat_get(state: SimState, call: Call) -> dict[str, Any]:
    """Return one group: owner, notice, members with join time, scene and state, admins."""
    chat_id = call.text("chat_id", required=True)
    need_name = call.integer("need_name", 0)
    if need_name not in (0, 1):
        raise ApiError(INVALID, "invalid parameter: need_name must be 0 or 1")
    chat = state.group_chats.get(chat_id)
    if chat is None:
        raise ApiError(UNKNOWN_CHAT, f"chatid not found: {chat_id}")
    if chat.dismissed:
        raise ApiError(DISMISSED_CHAT, f"chat dismissed: {chat_id}")
    return {
        "group_chat": {
            "chat_id": chat.chat_id,
            "name": chat.name,
            "owner": chat.owner,
            "create_time": chat.create_time,
            "notice": chat.notice,
            "member_list": [_member_api(state, chat, u, bool(need_name)) for u in chat.members],
            "admin_list": [{"userid": a} for a in chat.admins],
            "member_version": chat.member_version,
        }
    }


def _join_way_fields(state: SimState, way: JoinWay, call: Call) -> None:
    """Validate every field of an add or (overwriting) update, then set them on `way`."""
    scene = call.integer("scene", missing=MISSING_SCENE)
    if scene not in (1, 2):
        raise ApiError(INVALID_SCENE, "invalid scene")
    if "chat_id_list" not in call.body:
        raise ApiError(MISSING, "missing parameter: chat_id_list")
    chat_ids = call.strings("chat_id_list")
    if not chat_ids:
        raise ApiError(MISSING, "missing parameter: chat_id_list")
    if len(chat_ids) > MAX_JOIN_WAY_CHATS:
        raise ApiError(TOO_MANY_CHATS, f"a join way takes at most {MAX_JOIN_WAY_CHATS} groups")
    for chat_id in chat_ids:
        if state.live_chat(chat_id) is None:
            raise ApiError(UNKNOWN_CHAT, f"chatid not found: {chat_id}")
    state_text = call.text("state")
    check_length("state", state_text, JOIN_WAY_STATE_MAX)
    auto_create_room = call.integer("auto_create_room", 1)
    if auto_create_room not in (0, 1):
        raise ApiError(INVALID, "invalid parameter: auto_create_room must be 0 or 1")
    room_base_name = call.text("room_base_name")
    check_length("room_base_name", room_base_name, ROOM_BASE_NAME_MAX)
    room_base_id = call.integer("room_base_id", 0)
    if room_base_id < 0:
        raise ApiError(INVALID, "invalid parameter: room_base_id")
    way.scene = scene
    way.chat_id_list = list(dict.fromkeys(chat_ids))
    way.state = state_text
    way.remark = call.text("remark")[:JOIN_WAY_REMARK_MAX]  # the doc: cut past 30
    way.auto_create_room = auto_create_room
    way.room_base_name = room_base_name
    way.room_base_id = room_base_id
    way.qr_code = f"{state.public_url}/qr/{way.config_id}.png" if scene == 2 else ""


def _existing(state: SimState, call: Call) -> JoinWay:
    config_id = call.text("config_id", required=True, missing=MISSING_CONFIG_ID)
    way = state.join_ways.get(config_id)
    if way is None:
        raise ApiError(INVALID_CONFIG_ID, f"invalid config_id: {config_id}")
    return way


@route("externalcontact/groupchat/add_join_way", "POST")
def add_join_way(state: SimState, call: Call) -> dict[str, Any]:
    """Create a join way; it answers only the config_id (the QR comes from get)."""
    way = JoinWay(random_id("", 32, "0123456789abcdef"), 0, state.now_int())
    _join_way_fields(state, way, call)
    state.join_ways[way.config_id] = way
    return {"config_id": way.config_id}


@route("externalcontact/groupchat/get_join_way", "POST")
def get_join_way(state: SimState, call: Call) -> dict[str, Any]:
    """Return one join way's configuration."""
    return {"join_way": _existing(state, call).to_api()}


@route("externalcontact/groupchat/update_join_way", "POST")
def update_join_way(state: SimState, call: Call) -> dict[str, Any]:
    """Overwrite a join way: fields left out take their defaults, as WeCom's update does."""
    way = _existing(state, call)
    draft = JoinWay(way.config_id, 0, way.created_at, rooms_created=way.rooms_created)
    _join_way_fields(state, draft, call)  # on a refusal the stored join way stays untouched
    state.join_ways[way.config_id] = draft
    return {}


@route("externalcontact/groupchat/del_join_way", "POST")
def del_join_way(state: SimState, call: Call) -> dict[str, Any]:
    """Delete a join way."""
    del state.join_ways[_existing(state, call).config_id]
    return {}
