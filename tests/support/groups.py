"""Customer groups in tests: a channel's group code, the stays the bot recorded, its tags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bot.db import Database
from bot.db.models import Channel, GroupChat, GroupMember, InboxEvent, Tag, TagGroup
from bot.wecom.client import WeComClient
from bot.wecom.types import JoinWaySpec


@dataclass(frozen=True)
class Stay:
    """One stored stay, as the tests compare them."""

    member: str
    joined_at: datetime
    join_scene: int
    state: str
    channel: str | None
    customer: bool
    applied: bool
    left_at: datetime | None = None
    quit_scene: int | None = None
    dismissed: bool = False


def group_code(wecom: WeComClient, chat_id: str, state: str) -> str:
    """Create a 加入群聊 QR code to this group with a channel's state; return its config_id.

    What `channel create --group` will do; until then the tests make the join way here.
    """
    return wecom.add_join_way(JoinWaySpec(chat_ids=(chat_id,), state=state))


def stays(db: Database, chat_id: str, member: str | None = None) -> list[Stay]:
    """Return a group's stored stays (or one member's), in joining order."""
    with db.read() as session:
        query = (
            select(GroupMember, Channel.name)
            .join(GroupChat, GroupChat.id == GroupMember.group_chat_id)
            .outerjoin(Channel, Channel.id == GroupMember.channel_id)
            .where(GroupChat.chat_id == chat_id)
            .order_by(GroupMember.joined_at, GroupMember.id)
        )
        if member is not None:
            query = query.where(GroupMember.member_userid == member)
        return [
            Stay(
                s.member_userid,
                s.joined_at,
                s.join_scene,
                s.state,
                channel,
                s.customer_id is not None,
                s.channel_applied_at is not None,
                s.left_at,
                s.quit_scene,
                s.dismissed,
            )
            for s, channel in session.execute(query)
        ]


def current(db: Database, chat_id: str) -> list[str]:
    """Return who is in the group now, by the stored stays."""
    return sorted(s.member for s in stays(db, chat_id) if s.left_at is None)


def wecom_tag_id(db: Database, group: str, name: str) -> str:
    """Return WeCom's id of the tag group/name in the catalogue."""
    with db.read() as session:
        found = session.scalars(
            select(Tag.wecom_tag_id)
            .join(TagGroup, TagGroup.id == Tag.group_id)
            .where(TagGroup.name == group, Tag.name == name)
        ).one()
    assert found is not None
    return found


def inbox_settled(db: Database) -> bool:
    """Tell whether every stored callback is processed (done or ignored)."""
    with db.read() as session:
        statuses = set(session.scalars(select(InboxEvent.status)))
    return bool(statuses) and statuses <= {"done", "ignored"}
