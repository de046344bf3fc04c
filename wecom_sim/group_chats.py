"""What people do in customer groups (客户群): create, invite, join by QR, leave, rename, dismiss.

Each action changes the state and returns the change_external_chat event WeCom would post
(docs/wecom-groups.md), or None when nothing changed (a member joining twice).
"""

from __future__ import annotations

from dataclasses import dataclass

from wecom_sim.crypto import random_id
from wecom_sim.events import change_external_chat_xml
from wecom_sim.models import ChatMember, GroupChat, JoinWay
from wecom_sim.state import SimState

INVITED, INVITED_BY_LINK, SCANNED_QR = 1, 2, 3  # groupchat/get's join_scene
EVENT_INVITED, EVENT_SCANNED_QR = 0, 3  # the callback's JoinScene
QUIT_SELF, QUIT_REMOVED = 0, 1


@dataclass(frozen=True)
class GroupChange:
    """A group action's outcome: the group, the members it concerned and its event."""

    chat_id: str
    members: tuple[str, ...]
    xml: str | None


def _version() -> str:
    return random_id("", 32, "0123456789abcdef")


def _chat(state: SimState, chat_id: str) -> GroupChat:
    chat = state.live_chat(chat_id)
    if chat is None:
        raise LookupError(f"no customer group {chat_id!r} (unknown or dismissed)")
    return chat


def _member_type(state: SimState, member: str) -> int:
    if member in state.staff:
        return 1
    if member in state.customers:
        return 2
    raise LookupError(f"{member!r} is neither a member nor a known customer")


def _owner(state: SimState, userid: str) -> None:
    staff = state.staff.get(userid)
    if staff is None:
        raise LookupError(f"unknown staff {userid!r}")
    if not staff.active:
        raise ValueError(f"staff {userid!r} is not active")


def _members_changed(
    state: SimState,
    chat: GroupChat,
    detail: str,
    members: list[str],
    *,
    join_scene: int | None = None,
    quit_scene: int | None = None,
) -> str:
    last, chat.member_version = chat.member_version, _version()
    return change_external_chat_xml(
        state.corp_id,
        "update",
        chat.chat_id,
        update_detail=detail,
        join_scene=join_scene,
        quit_scene=quit_scene,
        members=members,
        last_version=last,
        current_version=chat.member_version,
        create_time=state.now_int(),
    )


def create(
    state: SimState,
    owner: str,
    name: str,
    members: list[str],
    *,
    chat_id: str | None = None,
    notice: str = "",
) -> GroupChange:
    """The owner creates a group with `members` (their invitees); post create."""
    _owner(state, owner)
    if chat_id is not None and chat_id in state.group_chats:
        raise ValueError(f"chat_id {chat_id!r} exists")
    kinds = {m: _member_type(state, m) for m in members if m != owner}
    now = state.now_int()
    chat = GroupChat(chat_id or random_id("wr", 30), name, owner, now, notice)
    chat.members[owner] = ChatMember(owner, 1, now, INVITED)
    for member, kind in kinds.items():
        chat.members[member] = ChatMember(member, kind, now, INVITED, invitor=owner)
    chat.member_version = _version()
    state.group_chats[chat.chat_id] = chat
    xml = change_external_chat_xml(state.corp_id, "create", chat.chat_id, create_time=now)
    return GroupChange(chat.chat_id, tuple(chat.members), xml)


def invite(
    state: SimState, chat_id: str, members: list[str], invitor: str, *, by_link: bool = False
) -> GroupChange:
    """A corp member invites people (directly or by link); post add_member (JoinScene 0)."""
    chat = _chat(state, chat_id)
    if invitor not in chat.members or invitor not in state.staff:
        raise ValueError(f"invitor {invitor!r} is not a corp member in the group")
    kinds = {m: _member_type(state, m) for m in members if m not in chat.members}
    if not kinds:
        return GroupChange(chat_id, (), None)
    if len(chat.members) + len(kinds) > state.group_capacity:
        raise ValueError(f"group {chat_id!r} would exceed {state.group_capacity} members")
    now = state.now_int()
    scene = INVITED_BY_LINK if by_link else INVITED
    for member, kind in kinds.items():
        chat.members[member] = ChatMember(member, kind, now, scene, invitor=invitor)
    xml = _members_changed(state, chat, "add_member", list(kinds), join_scene=EVENT_INVITED)
    return GroupChange(chat_id, tuple(kinds), xml)


def _room_for(state: SimState, way: JoinWay) -> GroupChat:
    """Return the first of the join way's groups with room, opening one when allowed."""
    for chat_id in way.chat_id_list:
        chat = state.live_chat(chat_id)
        if chat is not None and len(chat.members) < state.group_capacity:
            return chat
    first = next((state.group_chats[c] for c in way.chat_id_list if c in state.group_chats), None)
    if not way.auto_create_room or first is None:
        raise ValueError(f"every group of join way {way.config_id} is full or dismissed")
    number = way.room_base_id + way.rooms_created
    way.rooms_created += 1
    name = f"{way.room_base_name or first.name}{number}"
    made = create(state, first.owner, name, [])
    way.chat_id_list.append(made.chat_id)
    return state.group_chats[made.chat_id]


def join_by_qr(
    state: SimState,
    state_param: str,
    *,
    external_userid: str | None = None,
    name: str | None = None,
    unionid: str | None = None,
) -> tuple[GroupChange, list[str]]:
    """A customer scans the QR of the join way with this state and joins one of its groups.

    Returns the add_member change (no event when already in that group) and the events of
    any group the join way opened because the others were full.
    """
    way = state.join_way_by_state(state_param)
    if way is None:
        raise LookupError(f"no join way with state {state_param!r}")
    if way.scene != 2:
        raise ValueError(f"join way {way.config_id} is a mini-program button, not a QR code")
    before = set(state.group_chats)
    chat = _room_for(state, way)
    opened = [
        change_external_chat_xml(state.corp_id, "create", c, create_time=state.now_int())
        for c in state.group_chats
        if c not in before
    ]
    customer = state.new_customer(external_userid, name, unionid)
    ext = customer.external_userid
    if ext in chat.members:
        return GroupChange(chat.chat_id, (ext,), None), opened
    chat.members[ext] = ChatMember(ext, 2, state.now_int(), SCANNED_QR, state=way.state)
    xml = _members_changed(state, chat, "add_member", [ext], join_scene=EVENT_SCANNED_QR)
    return GroupChange(chat.chat_id, (ext,), xml), opened


def leave(state: SimState, chat_id: str, member: str, *, removed: bool = False) -> GroupChange:
    """A member leaves, or is removed by the owner; post del_member with its QuitScene."""
    chat = _chat(state, chat_id)
    if member not in chat.members:
        raise LookupError(f"{member!r} is not in group {chat_id!r}")
    if member == chat.owner:
        raise ValueError("the owner cannot leave; change the owner or dismiss the group")
    del chat.members[member]
    if member in chat.admins:
        chat.admins.remove(member)
    quit_scene = QUIT_REMOVED if removed else QUIT_SELF
    xml = _members_changed(state, chat, "del_member", [member], quit_scene=quit_scene)
    return GroupChange(chat_id, (member,), xml)


def rename(state: SimState, chat_id: str, name: str) -> GroupChange:
    """Rename the group; post change_name."""
    chat = _chat(state, chat_id)
    chat.name = name
    xml = change_external_chat_xml(
        state.corp_id, "update", chat_id, update_detail="change_name", create_time=state.now_int()
    )
    return GroupChange(chat_id, (), xml)


def change_notice(state: SimState, chat_id: str, notice: str) -> GroupChange:
    """Change the group's notice; post change_notice."""
    chat = _chat(state, chat_id)
    chat.notice = notice
    xml = change_external_chat_xml(
        state.corp_id, "update", chat_id, update_detail="change_notice", create_time=state.now_int()
    )
    return GroupChange(chat_id, (), xml)


def change_owner(state: SimState, chat_id: str, userid: str) -> GroupChange:
    """Hand the group to another corp member already in it; post change_owner."""
    chat = _chat(state, chat_id)
    _owner(state, userid)
    if userid not in chat.members:
        raise ValueError(f"{userid!r} is not in group {chat_id!r}")
    chat.owner = userid
    if userid in chat.admins:
        chat.admins.remove(userid)
    xml = change_external_chat_xml(
        state.corp_id, "update", chat_id, update_detail="change_owner", create_time=state.now_int()
    )
    return GroupChange(chat_id, (userid,), xml)


def dismiss(state: SimState, chat_id: str) -> GroupChange:
    """The owner dismisses the group; post dismiss."""
    chat = _chat(state, chat_id)
    chat.dismissed = True
    return GroupChange(
        chat_id,
        (),
        change_external_chat_xml(state.corp_id, "dismiss", chat_id, create_time=state.now_int()),
    )
