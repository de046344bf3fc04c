"""A channel's tags for the customers who joined a group through its group code.

A stay whose `state` is a channel's gets that channel's tags on every active relation of
its member, through the outbox, once (`channel_applied_at`); a member coming back through
the same channel is not tagged again. A member who is nobody's
customer yet keeps the stay pending: the add event that makes them one applies it
(bot.customers.contact_events), and each sync sweeps whatever is left. The scan counter
and the welcome stay the live code's: a group join is not an add.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.channels.lookup import tag_paths_by_channel
from bot.db import Database
from bot.db.models import (
    Customer,
    FollowRelation,
    GroupMember,
    RelationTag,
    Staff,
)
from bot.db.types import utcnow
from bot.errors import TagbotError
from bot.groups.stays import EXTERNAL
from bot.tags import catalogue, outbox
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)

Stay = tuple[int, int, str]  # (stay id, channel id, external_userid)
Relation = tuple[int, str]  # (relation id, staff userid)


@dataclass
class Tagged:
    """What applying pending group joins' channels did."""

    stays: int = 0
    customers: int = 0
    operations: int = 0  # mark_tag operations queued (or merged into pending ones)


def _pending(exts: Sequence[str] | None, *, session: Session) -> list[Stay]:
    query = select(GroupMember.id, GroupMember.channel_id, GroupMember.member_userid).where(
        GroupMember.member_type == EXTERNAL,
        GroupMember.channel_id.is_not(None),
        GroupMember.channel_applied_at.is_(None),
    )
    if exts is not None:
        query = query.where(GroupMember.member_userid.in_(sorted(set(exts))))
    rows = session.execute(query.order_by(GroupMember.id)).all()
    return [(stay_id, channel_id, ext) for stay_id, channel_id, ext in rows if channel_id]


def _relations(exts: Sequence[str], *, session: Session) -> dict[str, list[Relation]]:
    """Return each member's active relations (the staff whose customer they are)."""
    found: dict[str, list[Relation]] = {}
    rows = session.execute(
        select(Customer.external_userid, FollowRelation.id, Staff.userid)
        .join(FollowRelation, FollowRelation.customer_id == Customer.id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(Customer.external_userid.in_(sorted(set(exts))), FollowRelation.status == "active")
        .order_by(FollowRelation.id)
    )
    for ext, relation_id, userid in rows:
        found.setdefault(ext, []).append((relation_id, userid))
    return found


def apply_pending(
    *,
    db: Database,
    wecom: WeComClient,
    external_userids: Sequence[str] | None = None,
    priority: int = outbox.INTERACTIVE,
) -> Tagged:
    """Queue the channel tags of pending group joins whose member is somebody's customer.

    `external_userids`: only these members' joins (a callback); None: every pending one
    (the sync). Plans in a read, creates deleted channel tags in WeCom outside any write,
    then queues and marks in one short write.
    """
    tagged = Tagged()
    with db.read() as session:
        stays = _pending(external_userids, session=session)
        if not stays:
            return tagged
        customers = _relations([ext for _, _, ext in stays], session=session)
        stays = [s for s in stays if s[2] in customers]
        if not stays:
            return tagged  # nobody's customer yet: their add event applies it
        paths = tag_paths_by_channel(
            sorted({channel_id for _, channel_id, _ in stays}), session=session
        )
    tag_ids: dict[int, list[int]] = {}
    for channel_id, channel_paths in paths.items():
        try:
            tag_ids[channel_id] = catalogue.ensure(db=db, wecom=wecom, paths=channel_paths)
        except TagbotError as exc:  # WeCom refused or is away: a later event or sync retries
            log.warning("channel %d: tags not ensured for group joins: %s", channel_id, exc)
    stays = [s for s in stays if s[1] in tag_ids]
    if stays:
        with db.write() as session:
            _apply(stays, tag_ids, tagged, priority=priority, session=session)
    return tagged


def _apply(
    stays: Sequence[Stay],
    tag_ids: dict[int, list[int]],
    tagged: Tagged,
    *,
    priority: int,
    session: Session,
) -> None:
    ids = [stay_id for stay_id, _, _ in stays]
    # Read again under the write: another event or the sync may have applied one since.
    still = set(
        session.scalars(
            select(GroupMember.id).where(
                GroupMember.id.in_(ids), GroupMember.channel_applied_at.is_(None)
            )
        )
    )
    relations = _relations([ext for _, _, ext in stays], session=session)
    have: dict[int, set[int]] = {}
    relation_ids = [rid for rels in relations.values() for rid, _ in rels]
    for relation_id, tag_id in session.execute(
        select(RelationTag.relation_id, RelationTag.tag_id).where(
            RelationTag.relation_id.in_(relation_ids)
        )
    ):
        have.setdefault(relation_id, set()).add(tag_id)
    # A member back through the same channel was tagged on their first join already.
    done: set[tuple[str, int | None]] = {
        (member, channel_id)
        for member, channel_id in session.execute(
            select(GroupMember.member_userid, GroupMember.channel_id).where(
                GroupMember.member_userid.in_(sorted(relations)),
                GroupMember.channel_applied_at.is_not(None),
            )
        )
    }
    applied: list[int] = []
    customers: set[str] = set()
    for stay_id, channel_id, ext in stays:
        if stay_id not in still or ext not in relations:
            continue
        if (ext, channel_id) in done:
            applied.append(stay_id)
            continue
        done.add((ext, channel_id))
        for relation_id, userid in relations[ext]:
            missing = [t for t in tag_ids[channel_id] if t not in have.get(relation_id, set())]
            op = outbox.enqueue_tag_ids(
                session=session,
                staff_userid=userid,
                external_userid=ext,
                add=missing,
                priority=priority,
            )
            tagged.operations += op is not None
            have.setdefault(relation_id, set()).update(missing)  # a second stay adds nothing
        applied.append(stay_id)
        customers.add(ext)
    if applied:
        session.execute(
            update(GroupMember)
            .where(GroupMember.id.in_(applied))
            .values(channel_applied_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    tagged.stays += len(applied)
    tagged.customers += len(customers)
    session.flush()
