"""Staff rotation (分流): take capped members off a channel's contact way until tomorrow.

With a daily cap, a staff member who reached today's cap is taken off the contact way's
`user` list until the next day; backups step in when every primary is capped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.lookup import BACKUP, PRIMARY, adds_today, members, today_in
from bot.db import Database
from bot.db.models import Channel, ChannelStaff
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)


def wanted_users(channel: Channel, capped: set[str]) -> list[str]:
    """Return who should answer the channel's code now (see `answering`)."""
    primaries = [m.staff.userid for m in members(channel, PRIMARY)]
    backups = [m.staff.userid for m in members(channel, BACKUP)]
    return answering(primaries, backups, capped)


def answering(primaries: Sequence[str], backups: Sequence[str], capped: set[str]) -> list[str]:
    """Return who should answer a code: uncapped primaries, else the backups."""
    free = [u for u in primaries if u not in capped]
    if free:
        return free
    # Everyone is capped: backups take over; with none, keep the primaries (a code with
    # nobody on it is refused by WeCom, and an over-cap answer beats a dead code).
    return list(backups or primaries)


def capped_members(channel: Channel, *, session: Session, tz: ZoneInfo) -> set[str]:
    if not channel.daily_cap:
        return set()
    counts = adds_today(channel, session=session, tz=tz)
    primaries = {m.staff.userid for m in members(channel, PRIMARY)}
    return {u for u, n in counts.items() if u in primaries and n >= channel.daily_cap}


def mark_paused(channel: Channel, capped: set[str], today: date) -> None:
    for m in channel.staff:
        m.paused_on = today if m.staff.userid in capped else None


@dataclass(frozen=True)
class _Rotation:
    config_id: str
    name: str
    users: list[str]
    capped: set[str]
    today: date


def _plan_rotation(channel_id: int, *, session: Session, tz: ZoneInfo) -> _Rotation | None:
    """Return the user list the contact way needs now, or None when it is already right."""
    channel = session.get(Channel, channel_id)
    if channel is None or not channel.config_id:
        return None
    today = today_in(tz)
    capped = capped_members(channel, session=session, tz=tz)
    recorded = {
        m.staff.userid
        for m in channel.staff
        if m.paused_on is not None and m.role == PRIMARY and m.paused_on == today
    }
    stale = any(m.paused_on is not None and m.paused_on != today for m in channel.staff)
    if capped == recorded and not stale:
        return None
    users = wanted_users(channel, capped)
    return _Rotation(channel.config_id, channel.name, users, capped, today)


def rotate(channel_id: int, *, db: Database, wecom: WeComClient, tz: ZoneInfo) -> bool:
    """Put the contact way's `user` list in line with today's caps; True when it changed.

    The WeCom call runs between two short transactions (never inside one: on SQLite that
    would hold up callbacks). A member's `paused_on` is written only after WeCom accepted
    the list, so a failed call is simply tried again by the next scan or the upkeep job.
    """
    with db.read() as session:
        plan = _plan_rotation(channel_id, session=session, tz=tz)
    if plan is None:
        return False
    wecom.update_contact_way(plan.config_id, user=plan.users)
    with db.write() as session:
        channel = session.get(Channel, channel_id)
        if channel is not None:
            mark_paused(channel, plan.capped, plan.today)
    log.info(
        "channel %s: contact way now answers %s (capped: %s)", plan.name, plan.users, plan.capped
    )
    return True


def channels_needing_rotation(*, session: Session, tz: ZoneInfo) -> list[int]:
    """Return channels with a cap whose paused members may be out of date."""
    today = today_in(tz)
    stale = (
        select(ChannelStaff.channel_id)
        .where(ChannelStaff.paused_on.is_not(None), ChannelStaff.paused_on != today)
        .distinct()
    )
    return [int(i) for i in session.scalars(stale)]
