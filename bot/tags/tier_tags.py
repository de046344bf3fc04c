"""Tier tags in WeCom: each dimension's group and its tier tags, created and kept by the bot.

Tags are resolved by (group name, tag name) through the catalogue, never by remembered
ids. Work runs as plan (read) → call WeCom → apply (a short write transaction), so no
write transaction is open while WeCom answers. A run whose catalogue already matches the
config makes no WeCom call: console edits reach the catalogue through the tag callback,
the nightly sync and the push's invalid-tag handling. Each group records the dimension it
serves (`TagGroup.tier_dimension`), so a dimension gone from config is cleaned up by that
record, not by guessing from the tags its customers carry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bot.config import TieringSettings
from bot.db import Database
from bot.db.models import (
    RelationTag,
    Tag,
    TagGroup,
    TierAssignment,
)
from bot.errors import WeComError
from bot.tags import catalogue
from bot.tags.catalogue import TagPath
from bot.tags.tier_groups import (
    DroppedGroup,
    Rename,
    find_dropped,
    find_renames,
    live_group,
    live_tags,
)
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
    claims: list[tuple[int, str]] = field(default_factory=list)  # (our group id, dimension)
    renames: list[Rename] = field(default_factory=list)
    dropped: list[DroppedGroup] = field(default_factory=list)


def _plan(
    session: Session, dims: Sequence[TierDimension], *, dropped: bool, renames: bool
) -> _Plan:
    missing: dict[str, list[tuple[str, int]]] = {}
    reorder: list[tuple[int, str, int]] = []
    stale: list[tuple[int, str, TagPath]] = []
    claims: list[tuple[int, str]] = []
    for dim in dims:
        group = live_group(session, dim.group)
        if group is not None and group.tier_dimension != dim.name:
            claims.append((group.id, dim.name))  # adopted, or its dimension renamed
        live = {t.name: t for t in live_tags(session, dim.group)}
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
    serves = {d.group: d.name for d in dims}
    moves = find_renames(session, serves, missing) if renames else []
    gone = find_dropped(session, serves, {m.group_id for m in moves}) if dropped else []
    return _Plan(missing, reorder, stale, claims, moves, gone)


@dataclass
class TierTagReport:
    """What `sync_tier_tags` changed in WeCom, and how many calls it cost."""

    created: list[TagPath] = field(default_factory=list)
    reordered: int = 0
    deleted: list[TagPath] = field(default_factory=list)
    deleted_groups: list[str] = field(default_factory=list)  # no configured dimension keeps
    renamed_groups: list[tuple[str, str]] = field(default_factory=list)  # (old, new) in config
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
    off every customer in WeCom without a mark_tag. Each group records the dimension it
    serves (`TagGroup.tier_dimension`); a group whose dimension left the config loses the
    bot's tags, and goes with them when all its tags were the bot's. A dimension whose
    group was renamed in config renames its old group when that is wholly the bot's and
    the new name is free (one call; customers keep their tags), else the old group is
    cleaned up the same way. Tags the bot did not create are never edited or deleted.
    With `refresh`, the catalogue is re-read from WeCom first. Without `dropped`, groups
    no dimension keeps are left for the full run (a touched re-tier skips the scan of
    every assignment that finds dimensions gone from config).
    """
    report = TierTagReport()
    with db.read() as session:
        plan = _plan(session, dims, dropped=dropped, renames=True)
    if refresh or plan.missing:
        # Someone may have made (or removed) these tags meanwhile: look before creating.
        groups = wecom.get_corp_tag_list()
        report.calls += 1
        with db.write() as session:
            catalogue.apply_groups(session, groups, complete=True)
            plan = _plan(session, dims, dropped=dropped, renames=True)
    if plan.renames:
        for move in plan.renames:
            _rename_group(db, wecom, move, report)
        with db.read() as session:
            # A refused rename leaves the old group to be cleaned up, the new one to make.
            plan = _plan(session, dims, dropped=dropped, renames=False)
    serves = {d.group: d.name for d in dims}
    for group, wanted in plan.missing.items():
        created = wecom.add_corp_tag(
            [name for name, _ in wanted], group_name=group, orders=[o for _, o in wanted]
        )
        report.calls += 1
        with db.write() as session:
            catalogue.apply_groups(session, [created], complete=False, managed=True)
            _claim(session, group, serves[group])
        report.created += [TagPath(group, name) for name, _ in wanted]
    if plan.claims:
        with db.write() as session:
            for group_id, dimension in plan.claims:
                session.execute(
                    update(TagGroup).where(TagGroup.id == group_id).values(tier_dimension=dimension)
                )
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
    configured = {d.name for d in dims}
    for dimension, ok in gone.items():
        if ok and dimension not in configured:
            # A dimension added back starts afresh.
            with db.write() as session:
                session.execute(delete(TierAssignment).where(TierAssignment.dimension == dimension))
    return report


def _claim(session: Session, group: str, dimension: str) -> None:
    """Record that the live group `group` serves `dimension` (what dropping it goes by)."""
    session.execute(
        update(TagGroup)
        .where(TagGroup.name == group, TagGroup.deleted.is_(False))
        .values(tier_dimension=dimension)
    )


def _rename_group(db: Database, wecom: WeComClient, move: Rename, report: TierTagReport) -> None:
    report.calls += 1
    try:
        wecom.edit_corp_tag(move.wecom_group_id, name=move.new)
    except WeComError as exc:
        log.info("renaming group %s to %s refused (%s)", move.old, move.new, exc)
        return
    with db.write() as session:
        group = session.get(TagGroup, move.group_id)
        if group is not None:
            catalogue.rename_group(session, group, move.new)
    report.renamed_groups.append((move.old, move.new))


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
    db: Database, wecom: WeComClient, dropped: DroppedGroup, report: TierTagReport
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
            if not live_tags(session, dropped.group):
                report.deleted_groups.append(dropped.group)
    if done and dropped.group_id is not None:
        # What is left (tags the bot did not make) serves no dimension now.
        with db.write() as session:
            session.execute(
                update(TagGroup).where(TagGroup.id == dropped.group_id).values(tier_dimension=None)
            )
    return done


def _drop_empty_group(session: Session, group: str) -> None:
    """WeCom deletes a group with its last tag; mirror that so the name can be reused."""
    if not live_tags(session, group):
        session.execute(update(TagGroup).where(TagGroup.name == group).values(deleted=True))
