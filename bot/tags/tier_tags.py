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

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bot.config import TieringSettings
from bot.db import Database
from bot.db.models import RelationTag, Tag, TagGroup, TierAssignment
from bot.errors import WeComError
from bot.tags import catalogue
from bot.tags.catalogue import TagPath
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TierDimension:
    """A dimension as the push sees it: its tag group and its tags in tier order.

    For a `tag_from` dimension the tags are the values its customers hold, which come
    and go; such tags are created as they appear and never deleted by the push.
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

    @property
    def empty(self) -> bool:
        return not (self.missing or self.reorder or self.stale)


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


def _plan(session: Session, dims: Sequence[TierDimension]) -> _Plan:
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
        if dim.tag_from is None:
            for name, tag in live.items():
                if tag.managed and name not in dim.tiers and tag.wecom_tag_id:
                    stale.append((tag.id, tag.wecom_tag_id, TagPath(dim.group, name)))
    return _Plan(missing, reorder, stale)


@dataclass
class TierTagReport:
    """What `sync_tier_tags` changed in WeCom, and how many calls it cost."""

    created: list[TagPath] = field(default_factory=list)
    reordered: int = 0
    deleted: list[TagPath] = field(default_factory=list)
    calls: int = 0


def sync_tier_tags(
    *, db: Database, wecom: WeComClient, dims: Sequence[TierDimension], refresh: bool = False
) -> TierTagReport:
    """Make WeCom hold every tier tag in tier order and none the config dropped.

    Missing tags (never made, or deleted in the console) are created by the bot in their
    dimension's group; managed tags out of order are reordered; managed tags of a dropped
    tier are deleted, which takes them off every customer in WeCom without a mark_tag.
    Tags the bot did not create are never edited or deleted. With `refresh`, the
    catalogue is re-read from WeCom first.
    """
    report = TierTagReport()
    with db.read() as session:
        plan = _plan(session, dims)
    if refresh or plan.missing:
        # Someone may have made (or removed) these tags meanwhile: look before creating.
        groups = wecom.get_corp_tag_list()
        report.calls += 1
        with db.write() as session:
            catalogue.apply_groups(session, groups, complete=True)
            plan = _plan(session, dims)
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
        _delete_stale(db, wecom, plan.stale, report)
    return report


def _delete_stale(
    db: Database, wecom: WeComClient, stale: list[tuple[int, str, TagPath]], report: TierTagReport
) -> None:
    for tag_id, wecom_id, path in stale:
        # One call per tag: a refusal (a tag someone else owns, one already gone) must
        # not keep the others.
        report.calls += 1
        try:
            wecom.del_corp_tag(tag_ids=[wecom_id])
        except WeComError as exc:
            if exc.errcode != catalogue.INVALID_TAG_ID:
                log.warning("cannot delete dropped tier tag %s: %s", path, exc)
                continue
        with db.write() as session:
            session.execute(update(Tag).where(Tag.id == tag_id).values(deleted=True))
            session.execute(delete(RelationTag).where(RelationTag.tag_id == tag_id))
            _drop_empty_group(session, path.group)
        report.deleted.append(path)


def _drop_empty_group(session: Session, group: str) -> None:
    """WeCom deletes a group with its last tag; mirror that so the name can be reused."""
    if not _live_tags(session, group):
        session.execute(update(TagGroup).where(TagGroup.name == group).values(deleted=True))
