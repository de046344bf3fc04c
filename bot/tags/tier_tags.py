"""Tier tags in WeCom: each dimension's group and its tier tags, created and kept by the bot.

Tags are resolved by (group name, tag name) through the catalogue, never by remembered
ids. Work runs as plan (read) → call WeCom → apply (a short write transaction), so no
write transaction is open while WeCom answers. A run whose catalogue already matches the
config makes no WeCom call: console edits reach the catalogue through the tag callback,
the nightly sync and the push's invalid-tag handling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session

from bot.config import TieringSettings
from bot.db import Database
from bot.db.models import (
    ChannelTag,
    FollowRelation,
    RelationTag,
    Tag,
    TagGroup,
    TierAssignment,
)
from bot.errors import WeComError
from bot.tags import catalogue
from bot.tags.catalogue import TagPath
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TierDimension:
    """A dimension as the push sees it: its tag group and its tags in tier order.

    For a `tag_from` dimension the tags are the values its customers hold, which come
    and go: a tag is created when its value appears and, if the bot made it, deleted
    once no customer holds the value any more.
    """

    name: str
    group: str
    tiers: tuple[str, ...]
    tag_from: str | None = None

    def order_of(self, tier: str) -> int:
        """Return the WeCom `order` for a tier: larger sorts first, so the first tier leads."""
        return len(self.tiers) - self.tiers.index(tier)

    def paths(self) -> list[TagPath]:
        return [TagPath(self.group, t) for t in self.tiers]


def dimensions(tiering: TieringSettings, *, session: Session) -> list[TierDimension]:
    """Return the configured dimensions; `tag_from` ones take their tags from tier_assignments."""
    dims = []
    for dim in tiering.dimensions:
        tag_from: str | None = getattr(dim, "tag_from", None)
        if tag_from:
            values = session.scalars(
                select(TierAssignment.tier)
                .where(TierAssignment.dimension == dim.name)
                .distinct()
                .order_by(TierAssignment.tier)
            )
            tiers = tuple(values)
        else:
            tiers = tuple(dict.fromkeys(t.tag for t in dim.tiers))
        dims.append(TierDimension(dim.name, dim.tag_group, tiers, tag_from))
    return dims


@dataclass(frozen=True)
class _Plan:
    missing: dict[str, list[tuple[str, int]]]  # group -> [(tag name, order)]
    reorder: list[tuple[int, str, int]]  # (our tag id, WeCom id, order)
    stale: list[tuple[int, str, TagPath]]  # (our tag id, WeCom id, path)
    dropped: list[_DroppedDimension] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.missing or self.reorder or self.stale or self.dropped)


@dataclass(frozen=True)
class _DroppedDimension:
    """A dimension gone from config: the group its tags were pushed in, and those tags."""

    dimension: str
    group: str
    wecom_group_id: str | None  # set when the whole group is ours: one call deletes it
    tags: list[tuple[int, str | None, TagPath]]  # the bot's tags in it (our id, WeCom id, path)


def _live_tags(session: Session, group: str) -> list[Tag]:
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


def _plan(session: Session, dims: Sequence[TierDimension], *, dropped: bool) -> _Plan:
    missing: dict[str, list[tuple[str, int]]] = {}
    reorder: list[tuple[int, str, int]] = []
    stale: list[tuple[int, str, TagPath]] = []
    for dim in dims:
        live = {t.name: t for t in _live_tags(session, dim.group)}
        for tier in dim.tiers:
            tag = live.get(tier)
            order = dim.order_of(tier)
            if tag is None:
                missing.setdefault(dim.group, []).append((tier, order))
            elif tag.managed and tag.order != order and tag.wecom_tag_id:
                reorder.append((tag.id, tag.wecom_tag_id, order))
        # A tier dropped from config, or a tag_from value nobody holds any more.
        for name, tag in live.items():
            if tag.managed and name not in dim.tiers and tag.wecom_tag_id:
                stale.append((tag.id, tag.wecom_tag_id, TagPath(dim.group, name)))
    return _Plan(missing, reorder, stale, _dropped_dimensions(session, dims) if dropped else [])


def _dropped_dimensions(session: Session, dims: Sequence[TierDimension]) -> list[_DroppedDimension]:
    """Find the groups of dimensions removed from config, with the bot's tags in them.

    The catalogue does not say which of the bot's groups were tier groups (channel tags
    are the bot's too), so a group counts only with evidence: a customer still assigned
    a tier of a dimension that is no longer configured carries the bot's tag of that
    name in it. Groups of configured dimensions and groups a channel tags with are never
    taken; tags the bot did not make are never deleted.
    """
    configured = {d.name for d in dims}
    kept_groups = {d.group for d in dims}
    orphans = [
        d
        for d in session.scalars(select(TierAssignment.dimension).distinct())
        if d not in configured
    ]
    if not orphans:
        return []
    channel_groups = set(session.scalars(select(ChannelTag.group_name).distinct()))
    found = session.execute(
        select(TierAssignment.dimension, TagGroup.id)
        .join(FollowRelation, FollowRelation.customer_id == TierAssignment.customer_id)
        .join(RelationTag, RelationTag.relation_id == FollowRelation.id)
        .join(Tag, and_(Tag.id == RelationTag.tag_id, Tag.name == TierAssignment.tier))
        .join(TagGroup, TagGroup.id == Tag.group_id)
        .where(
            TierAssignment.dimension.in_(orphans),
            Tag.managed.is_(True),
            Tag.deleted.is_(False),
            TagGroup.managed.is_(True),
            TagGroup.deleted.is_(False),
        )
        .distinct()
    ).all()
    dropped = []
    for dimension in orphans:
        groups = {gid for dim, gid in found if dim == dimension}
        for group in session.scalars(select(TagGroup).where(TagGroup.id.in_(groups))):
            if group.name in kept_groups or group.name in channel_groups:
                continue
            live = _live_tags(session, group.name)
            ours = [(t.id, t.wecom_tag_id, TagPath(group.name, t.name)) for t in live if t.managed]
            whole = group.wecom_group_id if len(ours) == len(live) else None
            dropped.append(_DroppedDimension(dimension, group.name, whole, ours))
        if not any(d.dimension == dimension for d in dropped):
            # Nothing of it left in WeCom (never pushed, or deleted): only forget it.
            dropped.append(_DroppedDimension(dimension, "", None, []))
    return dropped


@dataclass
class TierTagReport:
    """What `sync_tier_tags` changed in WeCom, and how many calls it cost."""

    created: list[TagPath] = field(default_factory=list)
    reordered: int = 0
    deleted: list[TagPath] = field(default_factory=list)
    deleted_groups: list[str] = field(default_factory=list)  # of dimensions removed from config
    calls: int = 0


def sync_tier_tags(
    *,
    db: Database,
    wecom: WeComClient,
    dims: Sequence[TierDimension],
    refresh: bool = False,
    dropped: bool = True,
) -> TierTagReport:
    """Make WeCom hold every tier tag in tier order and none the config dropped.

    Missing tags (never made, or deleted in the console) are created by the bot in their
    dimension's group; managed tags out of order are reordered; managed tags of a dropped
    tier (or of a `tag_from` value nobody holds any more) are deleted, which takes them
    off every customer in WeCom without a mark_tag. A dimension removed from config loses
    the bot's tags in its group, and the group with them when all its tags were the
    bot's. Tags the bot did not create are never edited or deleted. With `refresh`, the
    catalogue is re-read from WeCom first. Without `dropped`, removed dimensions are not
    looked for (a scan of every assignment: a touched re-tier leaves it to the full run).
    """
    report = TierTagReport()
    with db.read() as session:
        plan = _plan(session, dims, dropped=dropped)
    if refresh or plan.missing:
        # Someone may have made (or removed) these tags meanwhile: look before creating.
        groups = wecom.get_corp_tag_list()
        report.calls += 1
        with db.write() as session:
            catalogue.apply_groups(session, groups, complete=True)
            plan = _plan(session, dims, dropped=dropped)
    for group, wanted in plan.missing.items():
        created = wecom.add_corp_tag(
            [name for name, _ in wanted], group_name=group, orders=[o for _, o in wanted]
        )
        report.calls += 1
        with db.write() as session:
            catalogue.apply_groups(session, [created], complete=False, managed=True)
        report.created += [TagPath(group, name) for name, _ in wanted]
    for tag_id, wecom_id, order in plan.reorder:
        wecom.edit_corp_tag(wecom_id, order=order)
        report.calls += 1
        with db.write() as session:
            session.execute(update(Tag).where(Tag.id == tag_id).values(order=order))
        report.reordered += 1
    if plan.stale:
        _delete_tags(db, wecom, plan.stale, report)
    gone: dict[str, bool] = {}
    for entry in plan.dropped:
        ok = _delete_dropped(db, wecom, entry, report)
        gone[entry.dimension] = gone.get(entry.dimension, True) and ok
    for dimension, ok in gone.items():
        if ok:
            # Its assignments were its only trace; a dimension added back starts afresh.
            with db.write() as session:
                session.execute(delete(TierAssignment).where(TierAssignment.dimension == dimension))
    return report


def _forget_tags(db: Database, tags: Sequence[tuple[int, str | None, TagPath]]) -> None:
    with db.write() as session:
        for tag_id, _, path in tags:
            session.execute(update(Tag).where(Tag.id == tag_id).values(deleted=True))
            session.execute(delete(RelationTag).where(RelationTag.tag_id == tag_id))
            _drop_empty_group(session, path.group)


def _delete_tags(
    db: Database,
    wecom: WeComClient,
    tags: Sequence[tuple[int, str | None, TagPath]],
    report: TierTagReport,
) -> bool:
    """Delete tags in WeCom, all in one call; return whether every one is gone."""
    ids = [wecom_id for _, wecom_id, _ in tags if wecom_id]
    if not ids:
        return True
    report.calls += 1
    try:
        wecom.del_corp_tag(tag_ids=ids)
    except WeComError as exc:
        if len(tags) == 1:
            return _refused_one(db, tags[0], exc, report)
        # WeCom refuses the whole call for one bad id (one already gone, one someone
        # else owns): then one call per tag, so one refusal does not keep the others.
        log.info("deleting %d tags at once refused (%s); one by one", len(ids), exc)
        results = [_delete_tags(db, wecom, [t], report) for t in tags]  # every one tried
        return all(results)
    _forget_tags(db, tags)
    report.deleted += [path for _, _, path in tags]
    return True


def _refused_one(
    db: Database, tag: tuple[int, str | None, TagPath], exc: WeComError, report: TierTagReport
) -> bool:
    if exc.errcode != catalogue.INVALID_TAG_ID:
        log.warning("cannot delete tier tag %s: %s", tag[2], exc)
        return False
    _forget_tags(db, [tag])  # already gone in WeCom
    report.deleted.append(tag[2])
    return True


def _delete_dropped(
    db: Database, wecom: WeComClient, dropped: _DroppedDimension, report: TierTagReport
) -> bool:
    """Delete a removed dimension's tags (and its group when all of it was the bot's)."""
    done = True
    if dropped.wecom_group_id is not None:
        report.calls += 1
        try:
            wecom.del_corp_tag(group_ids=[dropped.wecom_group_id])
        except WeComError as exc:
            log.info("deleting group %s refused (%s); tag by tag", dropped.group, exc)
            done = _delete_tags(db, wecom, dropped.tags, report)
        else:
            _forget_tags(db, dropped.tags)
            report.deleted += [path for _, _, path in dropped.tags]
            with db.write() as session:
                _drop_empty_group(session, dropped.group)
    elif dropped.tags:
        done = _delete_tags(db, wecom, dropped.tags, report)
    if dropped.group:
        with db.read() as session:
            if not _live_tags(session, dropped.group):
                report.deleted_groups.append(dropped.group)
    return done


def _drop_empty_group(session: Session, group: str) -> None:
    """WeCom deletes a group with its last tag; mirror that so the name can be reused."""
    if not _live_tags(session, group):
        session.execute(update(TagGroup).where(TagGroup.name == group).values(deleted=True))
