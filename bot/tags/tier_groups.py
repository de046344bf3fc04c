"""Tier groups in the catalogue: which dimension each serves, and which no dimension keeps.

`TagGroup.tier_dimension` is set when the bot creates or adopts a group for a dimension
(`bot.tags.tier_tags`); a group recorded for a dimension that no configured dimension keeps
is cleaned up, or renamed when only its dimension's `tag_group` changed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import ChannelTag, Tag, TagGroup, TierAssignment
from bot.tags.catalogue import TagPath


@dataclass(frozen=True)
class Rename:
    """A dimension's group renamed in config: the old group, wholly the bot's, takes the name."""

    group_id: int
    wecom_group_id: str
    old: str
    new: str


@dataclass(frozen=True)
class DroppedGroup:
    """A group no configured dimension keeps any more, and the bot's tier tags in it.

    `group_id` is None for a dimension removed from config that has no group recorded
    (never pushed, or already gone): only its assignments are left to forget.
    """

    dimension: str
    group: str
    group_id: int | None
    wecom_group_id: str | None  # set when the whole group is ours: one call deletes it
    tags: list[tuple[int, str | None, TagPath]]  # the bot's tags in it (our id, WeCom id, path)


def live_tags(session: Session, group: str) -> list[Tag]:
    """Return the live tags of a live group that have a WeCom id."""
    return list(
        session.scalars(
            select(Tag)
            .join(TagGroup, TagGroup.id == Tag.group_id)
            .where(
                TagGroup.name == group,
                TagGroup.deleted.is_(False),
                Tag.deleted.is_(False),
                Tag.wecom_tag_id.is_not(None),
            )
        )
    )


def live_group(session: Session, name: str) -> TagGroup | None:
    """Return the live group with this name, if any."""
    return session.scalars(
        select(TagGroup).where(TagGroup.name == name, TagGroup.deleted.is_(False))
    ).one_or_none()


def recorded_groups(session: Session) -> list[TagGroup]:
    """Return the live groups recorded as serving a tier dimension, oldest first."""
    return list(
        session.scalars(
            select(TagGroup)
            .where(TagGroup.tier_dimension.is_not(None), TagGroup.deleted.is_(False))
            .order_by(TagGroup.id)
        )
    )


def _channel_tags(session: Session) -> set[tuple[str, str]]:
    return {(g, n) for g, n in session.execute(select(ChannelTag.group_name, ChannelTag.tag_name))}


def find_renames(
    session: Session, serves: Mapping[str, str], missing: Collection[str]
) -> list[Rename]:
    """Find groups to rename: a dimension's new group name is free, its old group all ours.

    Renaming is one call and keeps every tag on every customer; a new group would need
    every customer's tags marked again. A group with tags the bot did not make (or a
    channel's) is not renamed: it is cleaned up as dropped and a new group made.
    """
    channel_groups = {g for g, _ in _channel_tags(session)}
    moves = []
    for name, dimension in serves.items():
        if name not in missing or live_group(session, name) is not None:
            continue
        for group in recorded_groups(session):
            if group.tier_dimension != dimension or group.name in serves:
                continue
            live = live_tags(session, group.name)
            whole = live and all(t.managed for t in live) and group.name not in channel_groups
            if group.managed and group.wecom_group_id and whole:
                moves.append(Rename(group.id, group.wecom_group_id, group.name, name))
                break
    return moves


def find_dropped(
    session: Session, serves: Mapping[str, str], renamed: Collection[int]
) -> list[DroppedGroup]:
    """Find the groups recorded for a tier dimension that no configured dimension keeps.

    That is a dimension removed from config, or one whose group was renamed in config
    when the old group could not simply be renamed. Groups of configured dimensions are
    never taken; of a taken group, only the bot's tags that no channel tags with go. A
    dimension removed from config with no group recorded has only assignments to forget.
    """
    configured = set(serves.values())
    channel = _channel_tags(session)
    dropped = []
    for group in recorded_groups(session):
        if group.name in serves or group.id in renamed or group.tier_dimension is None:
            continue
        live = live_tags(session, group.name)
        ours = [
            (t.id, t.wecom_tag_id, TagPath(group.name, t.name))
            for t in live
            if t.managed and (group.name, t.name) not in channel
        ]
        whole = group.wecom_group_id if group.managed and ours and len(ours) == len(live) else None
        dropped.append(DroppedGroup(group.tier_dimension, group.name, group.id, whole, ours))
    orphans = set(session.scalars(select(TierAssignment.dimension).distinct())) - configured
    for dimension in sorted(orphans - {d.dimension for d in dropped}):
        dropped.append(DroppedGroup(dimension, "", None, None, []))
    return dropped
