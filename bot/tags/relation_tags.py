"""The corp tags WeCom has on each relation, as the bot last saw them (relation_tags).

Kept with the tags, not the customers: the outbox records what a push changed here, and the
customers' contact events read and replace them; neither package needs the other for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from bot.db.models import Customer, FollowRelation, RelationTag, Staff
from bot.db.types import utcnow

RELATION_TAGS = cast(Table, RelationTag.__table__)
TAG_IDS_OF = select(RELATION_TAGS.c.tag_id).where(
    RELATION_TAGS.c.relation_id == bindparam("relation_id")
)
DROP_TAGS = delete(RELATION_TAGS).where(
    RELATION_TAGS.c.relation_id == bindparam("relation_id"),
    RELATION_TAGS.c.tag_id.in_(bindparam("tag_ids", expanding=True)),
)


def relation_id(*, session: Session, staff_userid: str, external_userid: str) -> int | None:
    """Return the id of the (staff, customer) relation, None when we never knew it."""
    return session.scalars(
        select(FollowRelation.id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .where(Staff.userid == staff_userid, Customer.external_userid == external_userid)
    ).first()


def record_tag_change(
    *,
    session: Session,
    staff_userid: str,
    external_userid: str,
    add: Iterable[int],
    remove: Iterable[int],
) -> None:
    """Record tags (our ids) WeCom just added to and removed from a relation we know."""
    found = relation_id(session=session, staff_userid=staff_userid, external_userid=external_userid)
    if found is None:
        return
    remove = list(remove)
    if remove:
        session.execute(DROP_TAGS, {"relation_id": found, "tag_ids": remove})
    add = list(add)
    if add:
        have = set(session.scalars(TAG_IDS_OF, {"relation_id": found}))
        now = utcnow()
        added = [
            {"relation_id": found, "tag_id": t, "synced_at": now} for t in add if t not in have
        ]
        if added:
            session.execute(insert(RELATION_TAGS), added)
    session.flush()
