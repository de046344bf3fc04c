"""The corp tag catalogue: (group, name) ↔ WeCom tag ids, refreshed from get_corp_tag_list.

Tags are keyed by (group name, tag name) because WeCom ids change when someone
re-creates a tag in the console; ids are looked up here whenever they are needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import RelationTag, Tag, TagGroup
from bot.errors import ValidationError
from bot.wecom.client import WeComClient
from bot.wecom.types import FollowUserTag, TagGroupInfo
from bot.wecom_limits import TAG_NAME_MAX

INVALID_TAG_ID = 40068  # WeCom: invalid tag or group id (deleted or re-created in the console)


@dataclass(frozen=True, order=True)
class TagPath:
    """A tag named the way operators write it: 组名/标签名."""

    group: str
    name: str

    @classmethod
    def parse(cls, text: str) -> TagPath:
        group, sep, name = text.strip().partition("/")
        group, name = group.strip(), name.strip()
        if not sep or not group or not name:
            raise ValidationError(f"标签 {text!r} 应写作 组名/标签名 / tag must be GROUP/NAME")
        if len(group) > TAG_NAME_MAX or len(name) > TAG_NAME_MAX:
            raise ValidationError(
                f"标签 {text!r} 的组名或标签名超过 {TAG_NAME_MAX} 字 / over {TAG_NAME_MAX} characters"
            )
        return cls(group, name)

    def __str__(self) -> str:
        return f"{self.group}/{self.name}"


def _group_by_name(session: Session, name: str) -> TagGroup | None:
    return session.scalars(select(TagGroup).where(TagGroup.name == name)).one_or_none()


def _forget_on_customers(session: Session, tag_id: int) -> None:
    """Drop what we believed customers carry of a tag that now has a new WeCom id.

    A tag re-created (by the console or by us) is a new, empty one: WeCom took the old
    one off every customer when it was deleted.
    """
    session.execute(delete(RelationTag).where(RelationTag.tag_id == tag_id))


def _free_tag_id(session: Session, wecom_tag_id: str, keep: Tag) -> None:
    """Detach a WeCom id from any other row so the unique constraint holds after a move."""
    session.execute(
        update(Tag)
        .where(Tag.wecom_tag_id == wecom_tag_id, Tag.id != keep.id)
        .values(wecom_tag_id=None, deleted=True)
        .execution_options(synchronize_session="fetch")
    )


def _free_group_id(session: Session, wecom_group_id: str, keep: TagGroup) -> None:
    session.execute(
        update(TagGroup)
        .where(TagGroup.wecom_group_id == wecom_group_id, TagGroup.id != keep.id)
        .values(wecom_group_id=None, deleted=True)
        .execution_options(synchronize_session="fetch")
    )


def rename_group(session: Session, group: TagGroup, name: str) -> None:
    """Rename a group's row; the name must be free first (a stale row may hold it)."""
    other = _group_by_name(session, name)
    if other is not None and other is not group:
        other.name = f"~{other.id}~{other.name}"[:TAG_NAME_MAX]
        other.deleted = True
        session.flush()
    group.name = name
    session.flush()


def _upsert_group(session: Session, info: TagGroupInfo, *, managed: bool | None) -> TagGroup:
    group = session.scalars(
        select(TagGroup).where(TagGroup.wecom_group_id == info.group_id)
    ).one_or_none()
    if group is None:
        group = _group_by_name(session, info.group_name)
    if group is None:
        group = TagGroup(name=info.group_name, managed=bool(managed))
        session.add(group)
    elif group.name != info.group_name:
        rename_group(session, group, info.group_name)
    if group.wecom_group_id != info.group_id:
        session.flush()
        _free_group_id(session, info.group_id, group)
        group.wecom_group_id = info.group_id
    group.order = info.order
    group.deleted = info.deleted
    if managed:
        group.managed = True
    session.flush()
    return group


def _upsert_tag(
    session: Session, group: TagGroup, tag_id: str, name: str, order: int, *, managed: bool | None
) -> Tag:
    tag = session.scalars(select(Tag).where(Tag.wecom_tag_id == tag_id)).one_or_none()
    if tag is None:
        tag = session.scalars(
            select(Tag).where(Tag.group_id == group.id, Tag.name == name)
        ).one_or_none()
    if tag is None:
        tag = Tag(group_id=group.id, name=name, managed=bool(managed))
        session.add(tag)
    elif (tag.group_id, tag.name) != (group.id, name):
        other = session.scalars(
            select(Tag).where(Tag.group_id == group.id, Tag.name == name)
        ).one_or_none()
        if other is not None and other is not tag:
            other.name = f"~{other.id}~{other.name}"[:TAG_NAME_MAX]
            other.deleted = True
            session.flush()
        tag.group_id, tag.name = group.id, name
    if tag.wecom_tag_id != tag_id:
        session.flush()
        if tag.id is not None and (tag.wecom_tag_id is not None or tag.deleted):
            _forget_on_customers(session, tag.id)
        _free_tag_id(session, tag_id, tag)
        tag.wecom_tag_id = tag_id
    tag.order = order
    tag.deleted = False
    if managed:
        tag.managed = True
    session.flush()
    return tag


def apply_groups(
    session: Session, groups: Iterable[TagGroupInfo], *, complete: bool, managed: bool | None = None
) -> int:
    """Store groups as WeCom reports them; with `complete`, absent ones are marked deleted."""
    seen_groups: set[int] = set()
    seen_tags: set[int] = set()
    for info in groups:
        group = _upsert_group(session, info, managed=managed)
        seen_groups.add(group.id)
        for t in info.tags:
            if t.deleted:
                continue
            tag = _upsert_tag(session, group, t.id, t.name, t.order, managed=managed)
            seen_tags.add(tag.id)
    if complete:
        for group in session.scalars(select(TagGroup).where(TagGroup.deleted.is_(False))):
            if group.id not in seen_groups:
                group.deleted = True
        for tag in session.scalars(select(Tag).where(Tag.deleted.is_(False))):
            if tag.id not in seen_tags:
                tag.deleted = True
        session.flush()
    return len(seen_tags)


def find(session: Session, path: TagPath) -> Tag | None:
    """Return the live tag with this (group, name) and a known WeCom id, if any."""
    return session.scalars(
        select(Tag)
        .join(TagGroup, TagGroup.id == Tag.group_id)
        .where(
            TagGroup.name == path.group,
            Tag.name == path.name,
            Tag.deleted.is_(False),
            Tag.wecom_tag_id.is_not(None),
        )
    ).one_or_none()


def ensure(*, db: Database, wecom: WeComClient, paths: Sequence[TagPath]) -> list[int]:
    """Return our ids of the tags for `paths`, creating missing ones in WeCom (our app owns them).

    Never holds a write transaction while WeCom is being called: on SQLite one blocks
    every callback's acknowledgement, and WeCom may take seconds to answer. So each call
    runs first and its result is stored after, in a short transaction of its own.
    """
    with db.read() as session:
        found = [find(session, p) for p in paths]
    if all(t is not None for t in found):
        return [t.id for t in found if t is not None]
    groups = wecom.get_corp_tag_list()  # someone may have created them meanwhile
    with db.write() as session:
        apply_groups(session, groups, complete=True)
        missing = [p for p in paths if find(session, p) is None]
    by_group: dict[str, list[str]] = {}
    for p in missing:
        names = by_group.setdefault(p.group, [])
        if p.name not in names:
            names.append(p.name)
    for group_name, names in by_group.items():
        created = wecom.add_corp_tag(names, group_name=group_name)
        with db.write() as session:
            apply_groups(session, [created], complete=False, managed=True)
    with db.read() as session:
        tags = [(p, find(session, p)) for p in paths]
    for p, tag in tags:
        if tag is None:
            raise ValidationError(f"标签 {p} 未能在企业微信创建 / tag was not created in WeCom")
    return [tag.id for _, tag in tags if tag is not None]


_BY_WECOM_IDS = select(Tag).where(Tag.wecom_tag_id.in_(bindparam("ids", expanding=True)))


def record_seen(session: Session, tags: Iterable[FollowUserTag]) -> list[Tag]:
    """Return catalogue rows for corp tags seen on a customer, learning unknown ones."""
    # Personal and rule-group tags are not in the corp catalogue.
    corp = [t for t in tags if t.type in (0, 1) and t.tag_id]
    ids = sorted({t.tag_id for t in corp})

    def by_id() -> dict[str | None, Tag]:
        # One query for all of them: a scan is on the hot path of every callback.
        return {tag.wecom_tag_id: tag for tag in session.scalars(_BY_WECOM_IDS, {"ids": ids})}

    known = by_id() if ids else {}
    rows = []
    for t in corp:
        tag = known.get(t.tag_id)
        if tag is None and t.group_name and t.tag_name:
            group = _group_by_name(session, t.group_name)
            if group is None:
                group = TagGroup(name=t.group_name)
                session.add(group)
                session.flush()
            tag = _upsert_tag(session, group, t.tag_id, t.tag_name, 0, managed=None)
            known = by_id()  # learning a tag can take its WeCom id from another row
        if tag is not None:
            rows.append(tag)
    return rows
