"""Group memberships kept to groupchat/get's detail, one row per stay (docs/wecom-groups.md).

The detail is the truth: a member it lists has an open stay joined at its `join_time`, a
member it does not list has none. Callbacks say when to look, and may come twice, late
or out of order; they add what the detail cannot tell: when a member left and whether
they were removed (del_member's time and QuitScene), and when a group was dismissed.

- A listed member without a stay at that join time gets one (scene, invitor, `state`, and
  the channel whose `state` it is); an open stay of theirs from an earlier join is
  closed at the new join time (they left in between; its own del_member refines it).
- A detail listing a member with an earlier join time than their open stay predates what
  we know (groupchat/get may lag the event): that member is left alone.
- An open stay whose member is no longer listed is closed at the change's time.
- A del_member event gives the stay it ended (the member's latest joined by then) its
  time and QuitScene, whenever it is processed.

Applying the same detail twice changes nothing (`Applied.changed` counts what did).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from bot.db.models import Channel, Customer, GroupChat, GroupMember
from bot.db.types import utcnow
from bot.groups.changes import DEL_MEMBER, ChatChange
from bot.wecom.types import GroupChat as GroupDetail

EXTERNAL = 2  # groupchat/get's member type of an external contact
NAME_MAX = 128
STATE_MAX = 30

_GROUP = select(GroupChat).where(GroupChat.chat_id == bindparam("chat_id"))


@dataclass
class Applied:
    """What applying a detail or an event changed."""

    groups_added: int = 0
    groups_updated: int = 0  # name, owner, notice, version
    joined: int = 0  # stays opened (or reopened)
    left: int = 0  # stays closed
    stays_updated: int = 0  # scene, state, channel or customer filled in; a leave refined
    dismissed: int = 0
    # external members with a stay whose channel's tags are not applied yet
    due: set[str] = field(default_factory=set)

    @property
    def changed(self) -> int:
        return (
            self.groups_added
            + self.groups_updated
            + self.joined
            + self.left
            + self.stays_updated
            + self.dismissed
        )

    def add(self, other: Applied) -> None:
        self.groups_added += other.groups_added
        self.groups_updated += other.groups_updated
        self.joined += other.joined
        self.left += other.left
        self.stays_updated += other.stays_updated
        self.dismissed += other.dismissed
        self.due |= other.due


def _epoch(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def _set(row: Any, wanted: dict[str, Any]) -> bool:
    """Set the attributes that differ; return whether any did."""
    changed = False
    for attr, value in wanted.items():
        if getattr(row, attr) != value:
            setattr(row, attr, value)
            changed = True
    return changed


def find_group(chat_id: str, *, session: Session) -> GroupChat | None:
    """Return the stored group with this chat_id, or None."""
    return session.scalars(_GROUP, {"chat_id": chat_id}).one_or_none()


def _stays(group: GroupChat, *, session: Session) -> list[GroupMember]:
    return list(
        session.scalars(
            select(GroupMember)
            .where(GroupMember.group_chat_id == group.id)
            .order_by(GroupMember.joined_at, GroupMember.id)
        )
    )


def _channels(states: Iterable[str], *, session: Session) -> dict[str, int]:
    wanted = sorted(set(states))
    if not wanted:
        return {}
    query = select(Channel.state, Channel.id).where(Channel.state.in_(wanted))
    return dict(session.execute(query).all())


def apply_detail(
    detail: GroupDetail,
    *,
    session: Session,
    at: datetime,
    change: ChatChange | None = None,
    dry_run: bool = False,
) -> Applied:
    """Make the stored group and its stays what the detail says, as of `at`.

    `change`: the event that made us look (a del_member names who left, and how).
    `dry_run`: only tell what would change (in a read session: nothing is flushed).
    """
    applied = Applied()
    group = find_group(detail.chat_id, session=session)
    if group is None:
        applied.groups_added = 1
        if dry_run:
            return applied
        group = GroupChat(chat_id=detail.chat_id)
        session.add(group)
        session.flush()
    with session.no_autoflush:
        wanted_group = {
            "name": detail.name[:NAME_MAX],
            "owner_userid": detail.owner,
            "notice": detail.notice,
            "member_version": detail.member_version,
            "group_created_at": _epoch(detail.create_time),
            "dismissed_at": None,  # groupchat/get answers a dismissed group with 49008
        }
        if _set(group, wanted_group) and not applied.groups_added:
            applied.groups_updated = 1
        stays = _stays(group, session=session)
        _members(detail, group, stays, at, change, applied, session=session)
        if change is not None and change.detail == DEL_MEMBER:
            _refine_leaves(change, stays, applied)
        if applied.changed and not dry_run:
            group.synced_at = utcnow()
    if not dry_run:
        session.flush()
    return applied


def _members(
    detail: GroupDetail,
    group: GroupChat,
    stays: list[GroupMember],
    at: datetime,
    change: ChatChange | None,
    applied: Applied,
    *,
    session: Session,
) -> None:
    by_member: dict[str, list[GroupMember]] = {}
    for row in stays:
        by_member.setdefault(row.member_userid, []).append(row)
    channels = _channels((m.state for m in detail.members if m.state), session=session)
    listed: set[str] = set()
    new: list[GroupMember] = []
    for m in detail.members:
        listed.add(m.userid)
        joined = _epoch(m.join_time) or at
        mine = by_member.setdefault(m.userid, [])
        open_ones = [s for s in mine if s.left_at is None]
        if any(s.joined_at > joined for s in open_ones):
            continue  # this detail predates a join we already know
        stay = next((s for s in mine if s.joined_at == joined), None)
        for s in open_ones:
            if s is not stay:  # an earlier stay: they left before joining again
                s.left_at = joined
                applied.left += 1
        wanted: dict[str, Any] = {
            "member_type": m.type,
            "join_scene": m.join_scene,
            "invitor_userid": m.invitor,
            "state": m.state[:STATE_MAX],
            "left_at": None,
            "quit_scene": None,
            "dismissed": False,
        }
        if m.state in channels:
            wanted["channel_id"] = channels[m.state]
        if stay is None:
            stay = GroupMember(member_userid=m.userid, joined_at=joined, **wanted)
            stay.group_chat_id = group.id
            session.add(stay)
            mine.append(stay)
            new.append(stay)
            applied.joined += 1
        else:
            reopened = stay.left_at is not None
            if _set(stay, wanted):
                if reopened:
                    applied.joined += 1
                else:
                    applied.stays_updated += 1
        if m.type == EXTERNAL and stay.channel_id is not None and stay.channel_applied_at is None:
            applied.due.add(m.userid)
    _link_customers(
        [s for s in (*stays, *new) if s.member_userid in listed], new, applied, session=session
    )
    leaving = set(change.members) if change is not None and change.detail == DEL_MEMBER else set()
    for row in stays:
        if row.left_at is None and row.member_userid not in listed:
            row.left_at = max(at, row.joined_at)
            if row.member_userid in leaving and change is not None:
                row.quit_scene = change.quit_scene
            applied.left += 1


def _link_customers(
    stays: list[GroupMember], new: list[GroupMember], applied: Applied, *, session: Session
) -> None:
    """Name the customer of external stays the bot knows (one look-up for the group)."""
    missing = [s for s in stays if s.member_type == EXTERNAL and s.customer_id is None]
    if not missing:
        return
    exts = sorted({s.member_userid for s in missing})
    ids = dict(
        session.execute(
            select(Customer.external_userid, Customer.id).where(Customer.external_userid.in_(exts))
        ).all()
    )
    fresh = {id(s) for s in new}
    for stay in missing:
        customer_id = ids.get(stay.member_userid)
        if customer_id is not None:
            stay.customer_id = customer_id
            if id(stay) not in fresh:
                applied.stays_updated += 1


def _refine_leaves(change: ChatChange, stays: list[GroupMember], applied: Applied) -> None:
    """Give the stays a del_member ended its time and QuitScene, if a later look closed them."""
    for member in change.members:
        ended = [s for s in stays if s.member_userid == member and s.joined_at <= change.at]
        if not ended:
            continue
        stay = max(ended, key=lambda s: (s.joined_at, s.id or 0))
        if stay.left_at is None or stay.dismissed or stay.quit_scene is not None:
            continue  # still in the group (the detail says so), or already told
        wanted: dict[str, Any] = {"left_at": min(stay.left_at, change.at)}
        if change.quit_scene is not None:
            wanted["quit_scene"] = change.quit_scene
        if _set(stay, wanted):
            applied.stays_updated += 1


def refine_leaves(change: ChatChange, *, session: Session) -> Applied:
    """Apply a del_member's time and QuitScene without reading the group (version known)."""
    applied = Applied()
    group = find_group(change.chat_id, session=session)
    if group is not None:
        _refine_leaves(change, _stays(group, session=session), applied)
        session.flush()
    return applied


def dismiss(chat_id: str, at: datetime, *, session: Session) -> Applied:
    """Mark a group dismissed at `at` and close every stay still open in it."""
    applied = Applied()
    group = find_group(chat_id, session=session)
    if group is None:
        return applied  # never seen: nothing to close
    if group.dismissed_at is None:
        group.dismissed_at = at
        applied.dismissed = 1
    for stay in _stays(group, session=session):
        if stay.left_at is None:
            stay.left_at = max(at, stay.joined_at)
            stay.dismissed = True
            applied.left += 1
    session.flush()
    return applied
