"""The customer card: everything we know about one customer, for operators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.customers.contacts import get_customer
from bot.customers.staff import shown_name
from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InteractionEvent,
    Order,
    ProfileAttribute,
    RelationTag,
    Staff,
    Tag,
    TagGroup,
)
from bot.errors import NotFoundError


@dataclass(frozen=True)
class RelationView:
    """One relation as shown to an operator."""

    staff_userid: str
    staff_name: str  # as operators see it: the `[staff]` display name, else WeCom's, else userid
    channel: str | None
    state: str
    status: str
    remark: str
    add_way: int
    added_at: datetime | None
    lost_at: datetime | None
    lost_reason: str | None
    tags: tuple[str, ...]  # "组名/标签名"


@dataclass(frozen=True)
class OrderTotals:
    """Order counts and sums of one customer (paid orders only count toward the amount)."""

    paid_count: int = 0
    paid_amount: Decimal = Decimal("0.00")
    refunded_count: int = 0
    refunded_amount: Decimal = Decimal("0.00")
    first_paid_at: datetime | None = None
    last_paid_at: datetime | None = None


@dataclass(frozen=True)
class CustomerCard:
    """Everything we know about one customer."""

    external_userid: str
    unionid: str | None
    name: str
    type: int
    gender: int
    corp_name: str
    created_at: datetime
    relations: tuple[RelationView, ...]
    orders: OrderTotals
    interactions: int
    last_interaction_at: datetime | None
    attributes: dict[str, str] = field(default_factory=dict)


def customer_card(
    external_userid: str, *, session: Session, display_names: Mapping[str, str]
) -> CustomerCard:
    """Gather a customer's relations, tags, order totals and attributes.

    `display_names` are the config's `[staff]` names, which staff names show first.
    """
    customer = get_customer(external_userid, session=session)
    if customer is None:
        raise NotFoundError(f"客户不存在 / no customer with external_userid {external_userid!r}")
    rows = session.execute(
        select(FollowRelation, Staff, Channel.name)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .outerjoin(Channel, Channel.id == FollowRelation.channel_id)
        .where(FollowRelation.customer_id == customer.id)
        .order_by(FollowRelation.added_at, FollowRelation.id)
    ).all()
    tag_rows = session.execute(
        select(RelationTag.relation_id, TagGroup.name, Tag.name)
        .join(Tag, Tag.id == RelationTag.tag_id)
        .join(TagGroup, TagGroup.id == Tag.group_id)
        .join(FollowRelation, FollowRelation.id == RelationTag.relation_id)
        .where(FollowRelation.customer_id == customer.id)
        .order_by(TagGroup.name, Tag.name)
    ).all()
    tags: dict[int, list[str]] = {}
    for relation_id, group_name, tag_name in tag_rows:
        tags.setdefault(relation_id, []).append(f"{group_name}/{tag_name}")
    relations = tuple(
        RelationView(
            staff_userid=staff.userid,
            staff_name=shown_name(staff.userid, staff.name, display_names),
            channel=channel_name,
            state=rel.state,
            status=rel.status,
            remark=rel.remark,
            add_way=rel.add_way,
            added_at=rel.added_at,
            lost_at=rel.lost_at,
            lost_reason=rel.lost_reason,
            tags=tuple(tags.get(rel.id, ())),
        )
        for rel, staff, channel_name in rows
    )
    return CustomerCard(
        external_userid=customer.external_userid,
        unionid=customer.unionid,
        name=customer.name,
        type=customer.type,
        gender=customer.gender,
        corp_name=customer.corp_name,
        created_at=customer.created_at,
        relations=relations,
        orders=_order_totals(customer.id, session=session),
        interactions=session.scalar(
            select(func.count()).where(InteractionEvent.customer_id == customer.id)
        )
        or 0,
        last_interaction_at=session.scalar(
            select(func.max(InteractionEvent.occurred_at)).where(
                InteractionEvent.customer_id == customer.id
            )
        ),
        attributes=_attributes(customer, session=session),
    )


def _order_totals(customer_id: int, *, session: Session) -> OrderTotals:
    rows = session.execute(
        select(
            Order.status,
            func.count(),
            func.coalesce(func.sum(Order.amount), 0),
            func.min(Order.paid_at),
            func.max(Order.paid_at),
        )
        .where(Order.customer_id == customer_id)
        .group_by(Order.status)
    ).all()
    by_status = {status: (n, total, first, last) for status, n, total, first, last in rows}
    paid = by_status.get("paid", (0, Decimal(0), None, None))
    refunded = by_status.get("refunded", (0, Decimal(0), None, None))
    return OrderTotals(
        paid_count=paid[0],
        paid_amount=Decimal(paid[1]).quantize(Decimal("0.01")),
        refunded_count=refunded[0],
        refunded_amount=Decimal(refunded[1]).quantize(Decimal("0.01")),
        first_paid_at=paid[2],
        last_paid_at=paid[3],
    )


def _attributes(customer: Customer, *, session: Session) -> dict[str, str]:
    # A row keyed by external_userid wins over one kept under the unionid before the
    # customer was known: it is the more specific statement about this customer.
    rows = session.execute(
        select(ProfileAttribute.name, ProfileAttribute.value, ProfileAttribute.subject)
        .where(ProfileAttribute.customer_id == customer.id)
        .order_by(ProfileAttribute.updated_at)
    ).all()
    attrs: dict[str, str] = {}
    exact: set[str] = set()
    for name, value, subject in rows:
        if subject == customer.external_userid:
            attrs[name] = value
            exact.add(name)
        elif name not in exact:
            attrs[name] = value
    return dict(sorted(attrs.items()))
