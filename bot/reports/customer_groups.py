"""A customer's customer groups (客户群) for the console's page and the sidebar.

Read by the member's index (`ix_group_members_member`): one customer's stays, newest
first, at most MAX_STAYS, each with its group, how they joined, the group code (channel)
that brought them, and whether they are still in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import Channel, GroupChat, GroupMember
from bot.groups.stays import EXTERNAL

MAX_STAYS = 50

# groupchat/get's join_scene (doc 92122).
JOIN_SCENES = {1: "由群成员邀请入群", 2: "通过邀请链接入群", 3: "扫描群二维码入群"}
# del_member's QuitScene (doc 92130); a stay closed by a sync alone has none.
QUIT_SCENES = {0: "主动退群", 1: "被移出群聊"}


@dataclass(frozen=True)
class GroupStay:
    """One stay of the customer in a customer group."""

    chat_id: str
    name: str  # the group's name, or its chat id before a sync named it
    joined_at: datetime
    how: str  # Chinese: the join scene
    channel: str  # the group code's channel name ("" when not through one)
    left_at: datetime | None  # None while still in
    left_how: str  # Chinese: 主动退群 / 被移出群聊 / 群已解散 / 已退群 ("" while in)

    @property
    def current(self) -> bool:
        """Whether the customer is in the group now."""
        return self.left_at is None


def _left_how(quit_scene: int | None, dismissed: bool) -> str:
    if dismissed:
        return "群已解散"
    return QUIT_SCENES.get(quit_scene if quit_scene is not None else -1, "已退群")


def customer_groups(external_userid: str, *, session: Session) -> tuple[GroupStay, ...]:
    """Return the customer's group stays: the ones still in first, each newest first."""
    rows = session.execute(
        select(
            GroupChat.chat_id,
            GroupChat.name,
            GroupChat.dismissed_at,
            GroupMember.joined_at,
            GroupMember.join_scene,
            GroupMember.left_at,
            GroupMember.quit_scene,
            GroupMember.dismissed,
            Channel.name,
        )
        .join(GroupChat, GroupChat.id == GroupMember.group_chat_id)
        .outerjoin(Channel, Channel.id == GroupMember.channel_id)
        .where(GroupMember.member_userid == external_userid, GroupMember.member_type == EXTERNAL)
        .order_by(GroupMember.joined_at.desc(), GroupMember.id.desc())
        .limit(MAX_STAYS)
    ).all()
    stays = []
    for chat_id, name, gone, joined, scene, left, quit_scene, dismissed, channel in rows:
        if left is None and gone is not None:  # dismissed before its stays were closed
            left, dismissed = gone, True
        stays.append(
            GroupStay(
                chat_id=chat_id,
                name=name or chat_id,
                joined_at=joined,
                how=JOIN_SCENES.get(scene, "入群"),
                channel=channel or "",
                left_at=left,
                left_how="" if left is None else _left_how(quit_scene, dismissed),
            )
        )
    stays.sort(key=lambda s: not s.current)  # stable: newest first within each part
    return tuple(stays)
