"""最新添加: the relations added last, newest first, for the 概览 page.

Walks the `follow_relations.added_at` index from its end: a few rows read whatever the
number of relations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import Channel, Customer, FollowRelation, Staff

LATEST_ADDS = 8


@dataclass(frozen=True)
class LatestAdd:
    """A recently added relation: who, through which channel, to which staff member."""

    customer_name: str
    external_userid: str
    staff_name: str
    channel_name: str
    added_at: datetime


def latest_adds(
    *, session: Session, staff_names: Mapping[str, str] | None = None, limit: int = LATEST_ADDS
) -> tuple[LatestAdd, ...]:
    """Return the `limit` latest adds; staff by their `[staff]` name (by lower-case userid)."""
    names = staff_names or {}
    rows = session.execute(
        select(
            Customer.name,
            Customer.external_userid,
            Staff.name,
            Staff.userid,
            Channel.name,
            FollowRelation.added_at,
        )
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .outerjoin(Channel, Channel.id == FollowRelation.channel_id)
        .where(FollowRelation.added_at.is_not(None))
        .order_by(FollowRelation.added_at.desc(), FollowRelation.id.desc())
        .limit(limit)
    ).all()
    return tuple(
        LatestAdd(
            customer_name=name,
            external_userid=ext,
            staff_name=names.get(userid.lower()) or staff_name or userid,
            channel_name=channel or "",
            added_at=added_at,
        )
        for name, ext, staff_name, userid, channel, added_at in rows
        if added_at is not None  # the query excludes them; this tells mypy
    )
