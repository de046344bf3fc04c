"""Customers and their relations with staff: upsert, link orphan data, look up.

Callers own the transaction: every function takes `session` keyword-only and flushes.
Orders, interactions and profile attributes that arrived before their customer was
known are kept with `customer_id` NULL; they are linked here, by external_userid or
unionid, as soon as the customer appears (or learns its unionid). So are the group stays
of someone who was nobody's customer when they joined (by external_userid): an add event
then knows, from the same probe, that a group join may still await its channel's tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Select,
    Table,
    Update,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session, make_transient_to_detached

from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    GroupMember,
    InteractionEvent,
    Order,
    ProfileAttribute,
    Staff,
    TierAssignment,
)
from bot.db.types import utcnow
from bot.ingest.linking import member_of
from bot.ingest.store import EVENTS, ORDERS, PROFILES
from bot.members import get_or_create_staff
from bot.tags.relation_tags import DROP_TAGS, RELATION_TAGS, TAG_IDS_OF, relation_id
from bot.touched import touch

_UNSET: object = object()
_Row = TypeVar("_Row", Customer, FollowRelation)

ORPHAN_TABLES = (Order, InteractionEvent, ProfileAttribute)
_STAYS = cast(Table, GroupMember.__table__)
EXTERNAL_MEMBER = 2


# Built once: a statement object memoizes its cache key, so the hot path of every scan
# skips re-building and re-hashing the SQL (most of its CPU cost was there, not in the DB).
_CUSTOMER_BY_EXT = select(Customer).where(Customer.external_userid == bindparam("ext"))
_STAFF_ID = select(Staff.__table__.c.id).where(Staff.__table__.c.userid == bindparam("userid"))
_RELATION = select(FollowRelation).where(
    FollowRelation.staff_id == bindparam("staff_id"),
    FollowRelation.customer_id == bindparam("customer_id"),
)
_CHANNEL_ID = select(Channel.__table__.c.id).where(Channel.__table__.c.state == bindparam("state"))


def _orphan_statements(unionid: bool) -> tuple[Select[*tuple[bool, ...]], list[Update]]:
    """Build the probe for a customer's orphan rows and one Core UPDATE per table."""
    conds = []
    for table in (ORDERS, EVENTS, PROFILES):
        by_id = table.c.external_userid == bindparam("ext")
        conds.append(
            and_(
                table.c.customer_id.is_(None),
                or_(by_id, table.c.unionid == bindparam("union")) if unionid else by_id,
            )
        )
    # Group stays keep no unionid: by external_userid only. Last, read apart by link_orphans.
    stays = and_(_STAYS.c.customer_id.is_(None), _STAYS.c.member_userid == bindparam("ext"))
    probe = select(*(exists().where(cond) for cond in (*conds, stays)))
    updates = [
        update(table).where(cond).values(customer_id=bindparam("cid"))
        for table, cond in zip((ORDERS, EVENTS, PROFILES, _STAYS), (*conds, stays), strict=True)
    ]
    return probe, updates


_ORPHANS = {unionid: _orphan_statements(unionid) for unionid in (False, True)}
_INSERTS = {
    model: insert(cast(Table, model.__table__)).returning(*model.__table__.c)
    for model in (Customer, FollowRelation)
}


def _insert(model: type[_Row], values: dict[str, Any], *, session: Session) -> _Row:
    """INSERT one row in Core and return it as a persistent ORM object.

    An ORM flush of one new object costs about twice the CPU of the INSERT itself.
    Column defaults still apply, and RETURNING gives back every stored value.
    """
    row = session.execute(_INSERTS[model], values).one()
    obj = model(**row._mapping)
    make_transient_to_detached(obj)  # the row exists: let the session track it, not add it
    session.add(obj)
    _news(session=session).add((model.__tablename__, row.id))
    return obj


# What this transaction inserted, and whose related rows it already looked up: a
# customer inserted here has no relation yet, nor a relation inserted here any tag, so
# a scan's new customer skips those two look-ups. Kept in the session's `info`, which
# lives as long as the transaction (`db.write()` opens a session per transaction).
_NEWS = "tagbot.contacts.inserted"


def _news(*, session: Session) -> set[tuple[str, int]]:
    news: set[tuple[str, int]] = session.info.setdefault(_NEWS, set())
    return news


def _first_look(parent: str, parent_id: int, children: str, *, session: Session) -> bool:
    """Tell whether `parent` was inserted here and its `children` were not looked up yet."""
    news = _news(session=session)
    first = (parent, parent_id) in news and (children, parent_id) not in news
    news.add((children, parent_id))  # from now on, look
    return first


def get_customer(external_userid: str, *, session: Session) -> Customer | None:
    """Return the customer with this external_userid, or None."""
    if "\x00" in external_userid:
        return None  # no id holds NUL, and PostgreSQL refuses it in a query parameter
    return session.scalars(_CUSTOMER_BY_EXT, {"ext": external_userid}).one_or_none()


def upsert_customer(
    *,
    session: Session,
    external_userid: str,
    unionid: str | None = None,
    name: str | None = None,
    type: int | None = None,  # WeCom's own field name
    gender: int | None = None,
    avatar: str | None = None,
    corp_name: str | None = None,
) -> Customer:
    """Create or update a customer and link any orphan rows that belong to it.

    Arguments left as None keep the stored value (a callback knows less than a sync).
    """
    given = {
        "unionid": unionid or None,
        "name": name,
        "type": type,
        "gender": gender,
        "avatar": avatar,
        "corp_name": corp_name,
    }
    changes = {attr: value for attr, value in given.items() if value is not None}
    customer = get_customer(external_userid, session=session)
    if customer is None:
        customer = _insert(
            Customer, {"external_userid": external_userid, **changes}, session=session
        )
        link_orphans(customer, session=session)
        return customer
    old_unionid = customer.unionid
    for attr, value in changes.items():
        if getattr(customer, attr) != value:
            setattr(customer, attr, value)
    session.flush()
    if customer.unionid != old_unionid:
        link_orphans(customer, session=session)
    return customer


def link_orphans(customer: Customer, *, session: Session) -> int:
    """Attach rows kept without a customer to this one, by external_userid or unionid.

    Returns the orders, interactions and profile rows linked; group stays linked are
    remembered for `group_joins_due`.
    """
    probe, updates = _ORPHANS[bool(customer.unionid)]
    params = {"ext": customer.external_userid, "union": customer.unionid, "cid": customer.id}
    # Orphans are rare: one cheap probe usually spares the four UPDATEs.
    *found, stays_found = session.execute(probe, params).one()
    linked = 0
    for stmt, any_rows in zip(updates[:-1], found, strict=True):
        if any_rows:
            linked += session.execute(stmt, params).rowcount  # type: ignore[attr-defined]
    if stays_found:
        session.execute(updates[-1], params)
        _news(session=session).add((_GROUP_STAYS, customer.id))
    if linked:  # orders that arrived before the customer scanned: tier them now
        touch([customer.id], session=session)
    return linked


_GROUP_STAYS = "group_stays_linked"
_REACTIVATED = "relation_reactivated"
_JOIN_DUE = (
    select(_STAYS.c.id)
    .where(
        _STAYS.c.member_userid == bindparam("ext"),
        _STAYS.c.member_type == EXTERNAL_MEMBER,
        _STAYS.c.channel_id.is_not(None),
        _STAYS.c.channel_applied_at.is_(None),
    )
    .limit(1)
)


def group_joins_due(customer: Customer, relation: FollowRelation, *, session: Session) -> bool:
    """Tell whether the customer may have group joins awaiting their channel's tags.

    Only when this add made them somebody's customer: a customer inserted here (the
    orphan probe, run anyway, told whether they had group stays: no statement), or a
    known one whose relation is new or back from lost (one indexed look-up).
    """
    news = _news(session=session)
    if ("customers", customer.id) in news:
        return (_GROUP_STAYS, customer.id) in news
    if ("follow_relations", relation.id) not in news and (_REACTIVATED, relation.id) not in news:
        return False
    return session.scalar(_JOIN_DUE, {"ext": customer.external_userid}) is not None


def link_all_orphans(*, session: Session) -> int:
    """Link every orphan row whose customer is now known, in one statement per table."""
    return _link(None, None, session=session)


def link_orphans_of(
    external_userids: Sequence[str], unionids: Sequence[str], *, session: Session
) -> int:
    """Link orphan rows carrying any of these ids: one statement per table for a batch."""
    if not external_userids and not unionids:
        return 0
    return _link(external_userids, unionids, session=session)


def _link(exts: Sequence[str] | None, unions: Sequence[str] | None, *, session: Session) -> int:
    linked = 0
    for model in ORPHAN_TABLES:
        scope = []
        if exts:
            scope.append(member_of(model.external_userid, exts, session=session))
        if unions:
            scope.append(member_of(model.unionid, unions, session=session))
        by_ext = (
            select(Customer.id)
            .where(Customer.external_userid == model.external_userid)
            .scalar_subquery()
        )
        by_union = (
            select(func.min(Customer.id)).where(Customer.unionid == model.unionid).scalar_subquery()
        )
        result = session.execute(
            update(model)
            .where(
                model.customer_id.is_(None),
                or_(*scope) if scope else true(),
                or_(
                    and_(model.external_userid.is_not(None), by_ext.is_not(None)),
                    and_(model.unionid.is_not(None), by_union.is_not(None)),
                ),
            )
            .values(customer_id=func.coalesce(by_ext, by_union))
            .execution_options(synchronize_session=False)
        )
        linked += result.rowcount or 0  # type: ignore[attr-defined]
    return linked


def upsert_relation(
    *,
    session: Session,
    staff_userid: str,
    customer: Customer,
    state: str | None = None,
    remark: str | None = None,
    add_way: int | None = None,
    added_at: datetime | None = None,
    channel_id: int | object | None = _UNSET,
    channel_applied_at: datetime | None = None,
) -> FollowRelation:
    """Create or refresh the (staff, customer) relation and mark it active.

    The channel is found from `state` when not given: a live code's state names it.
    `channel_applied_at`: the add event applied the channel (None keeps what was stored).
    """
    session.flush()  # the Core look-ups below would not autoflush a pending staff or channel
    staff_id = session.scalar(_STAFF_ID, {"userid": staff_userid})
    if staff_id is None:
        staff_id = get_or_create_staff(staff_userid, session=session).id
    if channel_id is _UNSET and state:
        channel_id = session.scalar(_CHANNEL_ID, {"state": state})
        if channel_id is None:
            channel_id = _UNSET  # a state we don't own: keep whatever was recorded
    given = {
        "state": state,
        "remark": remark,
        "add_way": add_way,
        "added_at": added_at,
        "channel_applied_at": channel_applied_at,
    }
    changes: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    if channel_id is not _UNSET:
        changes["channel_id"] = channel_id  # None too: the caller says "no channel"
    relation = (
        None
        if _first_look("customers", customer.id, "relations_of", session=session)
        else session.scalars(
            _RELATION, {"staff_id": staff_id, "customer_id": customer.id}
        ).one_or_none()
    )
    if relation is None:
        values = {"staff_id": staff_id, "customer_id": customer.id, "status": "active"}
        return _insert(FollowRelation, values | changes, session=session)
    for attr, value in changes.items():
        if getattr(relation, attr) != value:
            setattr(relation, attr, value)
    if relation.status != "active":
        _news(session=session).add((_REACTIVATED, relation.id))
        relation.status = "active"
        relation.lost_at = None
        relation.lost_reason = None
    session.flush()
    return relation


def mark_relation_lost(
    *,
    session: Session,
    staff_userid: str,
    external_userid: str,
    reason: str,
    at: datetime | None = None,
) -> FollowRelation | None:
    """Mark the relation lost (deleted by either side); None when we never knew it."""
    found = relation_id(session=session, staff_userid=staff_userid, external_userid=external_userid)
    relation = session.get(FollowRelation, found) if found is not None else None
    if relation is None:
        return None
    if relation.status != "lost":
        relation.status = "lost"
        relation.lost_at = at or utcnow()
        relation.lost_reason = reason
        session.flush()
    return relation


def record_transfer_fail(
    *, session: Session, staff_userid: str, external_userid: str, reason: str
) -> bool:
    """Record why a handover failed on the relation; False when we never knew it."""
    found = relation_id(session=session, staff_userid=staff_userid, external_userid=external_userid)
    if found is None:
        return False
    session.execute(
        update(FollowRelation)
        .where(FollowRelation.id == found)
        .values(transfer_fail_reason=reason[:32])
        .execution_options(synchronize_session=False)
    )
    return True


def set_relation_tags(relation_id: int, wanted: set[int], *, session: Session) -> None:
    """Record exactly these tags (our ids) as the ones WeCom has on the relation."""
    have: set[int] = (
        set()
        if _first_look("follow_relations", relation_id, "tags_of", session=session)
        else set(session.scalars(TAG_IDS_OF, {"relation_id": relation_id}))
    )
    gone = have - wanted
    if gone:
        session.execute(DROP_TAGS, {"relation_id": relation_id, "tag_ids": list(gone)})
    now = utcnow()
    added = [{"relation_id": relation_id, "tag_id": t, "synced_at": now} for t in wanted - have]
    if added:
        session.execute(insert(RELATION_TAGS), added)


def lost_notice(
    *,
    session: Session,
    relation: FollowRelation | None,
    external_userid: str,
    at: datetime,
    tz: ZoneInfo,
) -> str:
    """Write the 流失 alert for the staff member, in Chinese."""
    customer = session.scalars(
        select(Customer).where(Customer.external_userid == external_userid)
    ).first()
    name = (customer.name if customer else "") or external_userid
    channel_name = "无"
    if relation is not None and relation.channel_id is not None:
        channel_name = (
            session.scalars(select(Channel.name).where(Channel.id == relation.channel_id)).first()
            or "无"
        )
    tiers: list[str] = []
    if customer is not None:
        rows = session.execute(
            select(TierAssignment.dimension, TierAssignment.tier)
            .where(TierAssignment.customer_id == customer.id)
            .order_by(TierAssignment.dimension)
        ).all()
        tiers = [f"{dim}：{tier}" for dim, tier in rows]
    when = at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    return (
        f"客户 {name} 已将你删除\n"
        f"来源渠道：{channel_name}\n"
        f"客户分层：{'、'.join(tiers) if tiers else '暂无'}\n"
        f"时间：{when}"
    )
