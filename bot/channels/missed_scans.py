"""Scans whose add callback never arrived: apply their channel when a sync finds them.

While the bot is down (or its callback URL is wrong) customers still scan live codes;
WeCom records the relation with the code's `state` in its follow info, and the next
`tagbot sync` reads it. A relation with a known channel's state whose channel was never
applied (`channel_applied_at` NULL) gets what its scan would have given: the channel's
missing tags through the outbox (coalesced per relation, sent under the shared budget),
the scan counted on the channel, the customer touched for the next re-tier (first
channel, 潜在客户). Not the welcome: its code died 20 s after the scan.

A relation whose add event is still waiting in the inbox is left to that event, and one
whose callback was processed carries `channel_applied_at`: neither is tagged twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import touched
from bot.channels.live_codes import record_scan
from bot.channels.lookup import tag_paths_by_channel
from bot.db import Database
from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InboxEvent,
    RelationTag,
    Staff,
)
from bot.db.types import utcnow
from bot.errors import TagbotError
from bot.states import InboxStatus
from bot.tags import catalogue, outbox
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)

ADD_EVENT = "add_external_contact"
WAITING = (InboxStatus.PENDING, InboxStatus.PROCESSING)  # the callback path will apply it
CHUNK = 500  # relations per write transaction
# Nobody waits for these (unlike a scan's own tags): the bulk lane, ahead of tier pushes.
PRIORITY = outbox.INTERACTIVE - 1


@dataclass
class MissedScans:
    """What applying the channels of missed scans did."""

    relations: int = 0
    customers: int = 0
    operations: int = 0  # mark_tag operations queued (or merged into pending ones)
    by_channel: dict[str, int] = field(default_factory=dict)


def _candidates(*, session: Session) -> list[tuple[int, int, int, str, str]]:
    """Return (relation, customer, channel, userid, external_userid) still to apply."""
    rows = session.execute(
        select(
            FollowRelation.id,
            FollowRelation.customer_id,
            Channel.id,
            Staff.userid,
            Customer.external_userid,
        )
        .join(Channel, Channel.id == FollowRelation.channel_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .where(
            FollowRelation.status == "active",
            FollowRelation.channel_applied_at.is_(None),
            FollowRelation.state == Channel.state,
        )
        .order_by(FollowRelation.id)
    ).all()
    if not rows:
        return []
    waiting = set(
        session.scalars(
            select(InboxEvent.relation_key).where(
                InboxEvent.status.in_(WAITING),
                InboxEvent.change_type == ADD_EVENT,
                InboxEvent.relation_key.is_not(None),
            )
        )
    )
    return [
        (rid, cid, chid, userid, ext)
        for rid, cid, chid, userid, ext in rows
        if f"{userid}|{ext}" not in waiting
    ]


def apply_missed(*, db: Database, wecom: WeComClient) -> MissedScans:
    """Apply the channel of every relation a scan made whose callback never arrived."""
    report = MissedScans()
    with db.read() as session:
        found = _candidates(session=session)
        if not found:
            return report
        channel_ids = sorted({chid for _, _, chid, _, _ in found})
        paths = tag_paths_by_channel(channel_ids, session=session)
        names = dict(
            session.execute(
                select(Channel.id, Channel.name).where(Channel.id.in_(channel_ids))
            ).all()
        )
    # A channel tag deleted in WeCom is created again, as a scan would (outside a write).
    tag_ids: dict[int, list[int]] = {}
    for channel_id, channel_paths in paths.items():
        try:
            tag_ids[channel_id] = catalogue.ensure(db=db, wecom=wecom, paths=channel_paths)
        except TagbotError as exc:  # WeCom refused or is away: the next sync tries again
            log.warning(
                "channel %s: tags not ensured, left for the next sync: %s",
                names.get(channel_id),
                exc,
            )
    found = [row for row in found if row[2] in tag_ids]
    customers: set[int] = set()
    for start in range(0, len(found), CHUNK):
        with db.write() as session:
            _apply_chunk(
                found[start : start + CHUNK], tag_ids, names, report, customers, session=session
            )
    report.customers = len(customers)
    if report.relations:
        log.info(
            "channel applied to %d relations (%d customers) whose add callback never arrived; "
            "%d tag operations queued",
            report.relations,
            report.customers,
            report.operations,
        )
    return report


def _apply_chunk(
    rows: Sequence[tuple[int, int, int, str, str]],
    tag_ids: dict[int, list[int]],
    names: dict[int, str],
    report: MissedScans,
    customers: set[int],
    *,
    session: Session,
) -> None:
    ids = [rid for rid, *_ in rows]
    # Read again under the write: a callback may have applied one since.
    still = set(
        session.scalars(
            select(FollowRelation.id).where(
                FollowRelation.id.in_(ids),
                FollowRelation.status == "active",
                FollowRelation.channel_applied_at.is_(None),
            )
        )
    )
    have: dict[int, set[int]] = {}
    for relation_id, tag_id in session.execute(
        select(RelationTag.relation_id, RelationTag.tag_id).where(RelationTag.relation_id.in_(ids))
    ):
        have.setdefault(relation_id, set()).add(tag_id)
    applied: list[int] = []
    applied_customers: list[int] = []
    for relation_id, customer_id, channel_id, userid, ext in rows:
        if relation_id not in still:
            continue
        missing = [t for t in tag_ids[channel_id] if t not in have.get(relation_id, set())]
        op = outbox.enqueue_tag_ids(
            session=session,
            staff_userid=userid,
            external_userid=ext,
            add=missing,
            priority=PRIORITY,
        )
        report.operations += op is not None
        record_scan(channel_id, session=session)
        applied.append(relation_id)
        applied_customers.append(customer_id)
        name = names.get(channel_id, str(channel_id))
        report.by_channel[name] = report.by_channel.get(name, 0) + 1
    if applied:
        session.execute(
            update(FollowRelation)
            .where(FollowRelation.id.in_(applied))
            .values(channel_applied_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        # First channel, 潜在客户…: the touched re-tier takes them, as after a scan.
        touched.touch(applied_customers, session=session)
        customers.update(applied_customers)
    report.relations += len(applied)
    session.flush()
