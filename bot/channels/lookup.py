"""Reading channels: by name or state, their members, today's adds and the operator's view."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bot.db.models import Channel, ChannelStaff, ChannelTag, FollowRelation, Staff
from bot.db.types import utcnow
from bot.errors import NotFoundError
from bot.tags.catalogue import TagPath

PRIMARY = "primary"
BACKUP = "backup"


@dataclass(frozen=True)
class ChannelView:
    """A channel as shown to operators, with its funnel counts."""

    name: str
    state: str
    config_id: str | None
    qr_code: str
    staff: tuple[str, ...]
    backup: tuple[str, ...]
    tags: tuple[str, ...]
    welcome: str
    attachments: tuple[dict[str, Any], ...]
    daily_cap: int | None
    skip_verify: bool
    source: str
    scans: int = 0
    adds: int = 0
    lost: int = 0
    paused: tuple[str, ...] = ()
    today: dict[str, int] = field(default_factory=dict)
    kind: str = "staff"  # staff: 联系我 live code; group: 加入群聊 group code
    groups: tuple[str, ...] = ()  # a group code's chat ids
    auto_create_room: bool = False
    room_base_name: str = ""
    room_base_id: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return the view as a JSON-ready dict."""
        return {
            "name": self.name,
            "state": self.state,
            "config_id": self.config_id,
            "qr_code": self.qr_code,
            "staff": list(self.staff),
            "backup": list(self.backup),
            "tags": list(self.tags),
            "welcome": self.welcome,
            "attachments": list(self.attachments),
            "daily_cap": self.daily_cap,
            "skip_verify": self.skip_verify,
            "source": self.source,
            "scans": self.scans,
            "adds": self.adds,
            "lost": self.lost,
            "paused": list(self.paused),
            "today": dict(self.today),
            "kind": self.kind,
            "groups": list(self.groups),
            "auto_create_room": self.auto_create_room,
            "room_base_name": self.room_base_name,
            "room_base_id": self.room_base_id,
        }


def get(name: str, *, session: Session) -> Channel:
    """Return the channel with this name; raise NotFoundError."""
    channel = session.scalars(select(Channel).where(Channel.name == name)).one_or_none()
    if channel is None:
        raise NotFoundError(f"渠道不存在 / no channel named {name!r}")
    return channel


def get_by_state(state: str, *, session: Session) -> Channel | None:
    """Return the channel whose live code carries this state, if any."""
    if not state:
        return None
    return session.scalars(select(Channel).where(Channel.state == state)).one_or_none()


def list_all(*, session: Session) -> list[Channel]:
    """Return every channel, by name."""
    return list(session.scalars(select(Channel).order_by(Channel.name)))


def members(channel: Channel, role: str) -> list[ChannelStaff]:
    return [m for m in channel.staff if m.role == role]


def tag_paths(channel: Channel) -> list[TagPath]:
    return sorted(TagPath(t.group_name, t.tag_name) for t in channel.tags)


def day_start(today: date, tz: ZoneInfo) -> datetime:
    """Return the UTC instant at which `today` began in the operators' time zone."""
    return datetime.combine(today, time.min, tzinfo=tz)


def today_in(tz: ZoneInfo) -> date:
    """Return today's date in the operators' time zone."""
    return utcnow().astimezone(tz).date()


def adds_today(channel: Channel, *, session: Session, tz: ZoneInfo) -> dict[str, int]:
    """Count today's new relations per staff userid on this channel."""
    start = day_start(today_in(tz), tz)
    rows = session.execute(
        select(Staff.userid, func.count())
        .join(FollowRelation, FollowRelation.staff_id == Staff.id)
        .where(FollowRelation.channel_id == channel.id, FollowRelation.added_at >= start)
        .group_by(Staff.userid)
    ).all()
    return {userid: int(n) for userid, n in rows}


def view(channel: Channel, *, session: Session, tz: ZoneInfo) -> ChannelView:
    """Return the channel with its scan, add and lost counts."""
    adds, lost = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((FollowRelation.status == "lost", 1), else_=0)), 0),
        ).where(FollowRelation.channel_id == channel.id)
    ).one()
    return ChannelView(
        name=channel.name,
        state=channel.state,
        config_id=channel.config_id,
        qr_code=channel.qr_code,
        staff=tuple(m.staff.userid for m in members(channel, PRIMARY)),
        backup=tuple(m.staff.userid for m in members(channel, BACKUP)),
        tags=tuple(str(p) for p in tag_paths(channel)),
        welcome=channel.welcome_text,
        attachments=tuple(channel.welcome_attachments or ()),
        daily_cap=channel.daily_cap,
        skip_verify=channel.skip_verify,
        source=channel.source,
        scans=channel.scans,
        adds=int(adds),
        lost=int(lost),
        paused=tuple(m.staff.userid for m in channel.staff if m.paused_on is not None),
        today=adds_today(channel, session=session, tz=tz),
        kind=channel.kind,
        groups=tuple(channel.chat_ids or ()),
        auto_create_room=channel.kind == "group" and channel.auto_create_room,
        room_base_name=channel.room_base_name,
        room_base_id=channel.room_base_id,
    )


def generate_state(*, session: Session) -> str:
    """Return a fresh state no channel uses (`ch_` and 12 hex digits)."""
    while True:
        state = f"ch_{secrets.token_hex(6)}"
        if get_by_state(state, session=session) is None:
            return state


def tag_paths_by_channel(
    channel_ids: Sequence[int], *, session: Session
) -> dict[int, list[TagPath]]:
    """Each channel's tags as paths, in a stable order (every id present, maybe empty)."""
    paths: dict[int, list[TagPath]] = {c: [] for c in channel_ids}
    for channel_id, group, name in session.execute(
        select(ChannelTag.channel_id, ChannelTag.group_name, ChannelTag.tag_name)
        .where(ChannelTag.channel_id.in_(channel_ids))
        .order_by(ChannelTag.channel_id, ChannelTag.group_name, ChannelTag.tag_name)
    ):
        paths[channel_id].append(TagPath(group, name))
    return paths
