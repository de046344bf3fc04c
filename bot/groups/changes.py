"""Read a change_external_chat callback (doc 92130) into what the bot acts on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.db.types import utcnow
from bot.wecom.events import CallbackEvent

CHAT_EVENT = "change_external_chat"
ADD_MEMBER, DEL_MEMBER = "add_member", "del_member"
# What groupchat/get may answer for a group that is gone (unknown, dismissed, not a
# customer group, an invalid id): never retryable, the group is simply not there.
GROUP_GONE = frozenset({40050, 49008, 90501, 86001})


@dataclass(frozen=True)
class ChatChange:
    """One group change: its kind, the members it names, the versions and its time."""

    chat_id: str
    change_type: str  # create | update | dismiss
    detail: str  # UpdateDetail of an update
    members: tuple[str, ...]  # MemChangeList of add_member / del_member
    quit_scene: int | None  # del_member's QuitScene: 0 left, 1 removed
    current_version: str  # CurMemVer: the membership version after this change
    at: datetime  # CreateTime

    @property
    def member_change(self) -> bool:
        return self.change_type == "update" and self.detail in (ADD_MEMBER, DEL_MEMBER)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def chat_change(ev: CallbackEvent) -> ChatChange:
    """Return the change an event describes; member fields only on member changes.

    MemChangeList comes as <Item> elements (read comma-joined) or, in older payloads, as
    one comma-separated text: both split the same.
    """
    member_change = ev.change_type == "update" and ev.update_detail in (ADD_MEMBER, DEL_MEMBER)
    fields = ev.fields if member_change else {}
    members = tuple(m.strip() for m in fields.get("MemChangeList", "").split(",") if m.strip())
    at = datetime.fromtimestamp(ev.create_time, UTC) if ev.create_time > 0 else utcnow()
    return ChatChange(
        chat_id=ev.chat_id,
        change_type=ev.change_type,
        detail=ev.update_detail if ev.change_type == "update" else "",
        members=members,
        quit_scene=_int(fields.get("QuitScene", "")) if ev.update_detail == DEL_MEMBER else None,
        current_version=fields.get("CurMemVer", ""),
        at=at,
    )
