"""The sidebar's customer view: who they are to us and what this member should do now.

Read-side only. The member is the one OAuth2 signed in; the customer id came from the
browser (JS-SDK), so it is a claim: `sidebar_view` answers a refusal, never data, unless
the member follows the customer (an active relation in our database).

The console's customer page services are reused: followers and tags
(bot.reports.customer_profile), the tier explanation (bot.tiering.why + customer_tiers).
The view shows the tiers the last run stored; their explanation (为什么) recomputes the
customer's metrics, which costs most of a request, so it is its own request, made when the
member taps a badge (`sidebar_why`): the page opens without waiting for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.config import TieringSettings
from bot.customers.contacts import get_customer
from bot.db import Database
from bot.db.models import (
    Campaign,
    CampaignDelivery,
    CampaignTask,
    Customer,
    FollowRelation,
    Order,
    Staff,
    TierAssignment,
)
from bot.outreach.report import WINDOWS
from bot.reports.customer_groups import GroupStay, customer_groups
from bot.reports.customer_profile import Event, Follower, TagSplit, followers_of, tag_split
from bot.reports.customer_profile import tier_events as profile_tier_events
from bot.reports.customer_tiers import TierReason, readable_tiers
from bot.rules import Dimension
from bot.states import DeliveryStatus
from bot.tiering.why import ExplainEngine, explain_customer

TIER_CHANGES = 5
RECENT_ORDERS = 5
# A holdout customer stays out of reach while the campaign's results are measured: the
# report's longest window after the run.
MEASURED_FOR = timedelta(days=max(WINDOWS))
OPEN_TASKS = 3

Refusal = Literal["unknown", "not_follower"]

TASK_STATES = {
    DeliveryStatus.QUEUED: "群发即将创建，稍后会出现在企业微信「客户群发」中",
    DeliveryStatus.CREATED: "群发已创建，请在企业微信「客户群发」中确认发送",
    DeliveryStatus.NOTIFIED: "请按建议跟进该客户",
}


@dataclass(frozen=True)
class TierCard:
    """One dimension: the badge (the tier the last run stored) and its talking point."""

    dimension: str
    tag_group: str
    tier: str | None
    since: datetime | None
    hint: str  # the tier's configured talking point ("" when none)


@dataclass(frozen=True)
class OpenTask:
    """A campaign delivery to this customer that this member still has to act on."""

    campaign: str
    action: str  # group_message | follow_up
    text: str
    state: str  # Chinese
    since: datetime


@dataclass(frozen=True)
class OrderLine:
    """One recent order."""

    order_id: str
    amount: Decimal
    paid_at: datetime
    refunded: bool
    category: str


@dataclass(frozen=True)
class SidebarView:
    """Everything the sidebar's customer fragment shows."""

    external_userid: str
    name: str
    type: int  # 1 WeChat, 2 WeCom user
    corp_name: str
    followers: tuple[Follower, ...]  # active only
    came_through: Follower | None
    tiers: tuple[TierCard, ...]
    tasks: tuple[OpenTask, ...]
    holdout: tuple[str, ...]  # campaigns whose holdout holds the customer now
    tier_changes: tuple[Event, ...]
    orders: tuple[OrderLine, ...]
    tags: TagSplit
    groups: tuple[GroupStay, ...] = ()  # 客户群: the ones still in first


def hints_of(tiering: TieringSettings) -> dict[tuple[str, str], str]:
    """Return each tier's talking point by (dimension, tier tag)."""
    return {(d.name, t.tag): t.hint for d in tiering.dimensions for t in d.tiers if t.hint}


def follows(customer_id: int, userid: str, *, session: Session) -> bool:
    """Tell whether the member follows the customer now (an active relation)."""
    found = session.scalar(
        select(FollowRelation.id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(
            FollowRelation.customer_id == customer_id,
            FollowRelation.status == "active",
            func.lower(Staff.userid) == userid.lower(),  # WeCom userids ignore case
        )
        .limit(1)
    )
    return found is not None


def check_access(external_userid: str, userid: str, *, session: Session) -> Customer | Refusal:
    """Return the customer when the member follows them, else why not."""
    customer = get_customer(external_userid, session=session)
    if customer is None:
        return "unknown"
    if not userid or not follows(customer.id, userid, session=session):
        return "not_follower"
    return customer


def open_tasks(
    customer_id: int, userid: str, *, session: Session, now: datetime
) -> tuple[OpenTask, ...]:
    """Return this member's recent campaign deliveries to the customer still to act on."""
    rows = session.execute(
        select(
            Campaign.name,
            Campaign.action,
            CampaignTask.text,
            CampaignDelivery.status,
            CampaignDelivery.created_at,
        )
        .join(Campaign, Campaign.id == CampaignDelivery.campaign_id)
        .outerjoin(CampaignTask, CampaignTask.id == CampaignDelivery.task_id)
        .where(
            CampaignDelivery.customer_id == customer_id,
            CampaignDelivery.created_at >= now - MEASURED_FOR,
            CampaignDelivery.arm == "treatment",
            CampaignDelivery.status.in_(list(TASK_STATES)),
            func.lower(CampaignDelivery.staff_userid) == userid.lower(),
        )
        .order_by(CampaignDelivery.created_at.desc(), CampaignDelivery.id.desc())
        .limit(OPEN_TASKS)
    ).all()
    return tuple(
        OpenTask(name, action, text or "", TASK_STATES[DeliveryStatus(status)], created_at)
        for name, action, text, status, created_at in rows
    )


def holdout_campaigns(customer_id: int, *, session: Session, now: datetime) -> tuple[str, ...]:
    """Return the campaigns whose holdout holds the customer while their results are measured."""
    names = session.scalars(
        select(Campaign.name)
        .join(CampaignDelivery, CampaignDelivery.campaign_id == Campaign.id)
        .where(
            CampaignDelivery.customer_id == customer_id,
            CampaignDelivery.created_at >= now - MEASURED_FOR,
            CampaignDelivery.arm == "holdout",
        )
        .order_by(Campaign.name)
    ).all()
    return tuple(dict.fromkeys(names))


def recent_orders(customer_id: int, *, session: Session) -> tuple[OrderLine, ...]:
    """Return the customer's newest orders."""
    rows = session.execute(
        select(Order.order_id, Order.amount, Order.paid_at, Order.status, Order.category)
        .where(Order.customer_id == customer_id)
        .order_by(Order.paid_at.desc(), Order.id.desc())
        .limit(RECENT_ORDERS)
    ).all()
    return tuple(
        OrderLine(order_id, Decimal(amount), paid_at, status == "refunded", category)
        for order_id, amount, paid_at, status, category in rows
    )


def tier_cards(
    customer_id: int,
    dims: Sequence[Dimension],
    hints: Mapping[tuple[str, str], str],
    *,
    session: Session,
) -> tuple[TierCard, ...]:
    """Return a card per configured dimension with the tier the last run stored."""
    held = {
        a.dimension: (a.tier, a.since)
        for a in session.scalars(
            select(TierAssignment).where(TierAssignment.customer_id == customer_id)
        )
    }
    cards = []
    for dim in dims:
        tier, since = held.get(dim.name, (None, None))
        hint = hints.get((dim.name, tier), "") if tier else ""
        cards.append(TierCard(dim.name, dim.tag_group, tier, since, hint))
    return tuple(cards)


def sidebar_view(
    external_userid: str,
    userid: str,
    *,
    db: Database,
    dims: Sequence[Dimension],
    hints: Mapping[tuple[str, str], str],
    display_names: Mapping[str, str],
    now: datetime,
) -> SidebarView | Refusal:
    """Return the customer's sidebar view for the member, or why it is refused."""
    with db.read() as session:
        found = check_access(external_userid, userid, session=session)
        if isinstance(found, str):
            return found
        customer = found
        followers, relation_staff, _ = followers_of(
            customer, session=session, display_names=display_names
        )
        dated = [f for f in followers if f.added_at is not None]
        return SidebarView(
            external_userid=customer.external_userid,
            name=customer.name,
            type=customer.type,
            corp_name=customer.corp_name,
            followers=tuple(f for f in followers if f.status == "active"),
            came_through=min(dated, key=lambda f: f.added_at or now) if dated else None,
            tiers=tier_cards(customer.id, dims, hints, session=session),
            tasks=open_tasks(customer.id, userid, session=session, now=now),
            holdout=holdout_campaigns(customer.id, session=session, now=now),
            tier_changes=tuple(
                profile_tier_events(
                    customer.id, {d.name: d for d in dims}, session=session, limit=TIER_CHANGES
                )
            ),
            orders=recent_orders(customer.id, session=session),
            tags=tag_split(customer.id, relation_staff, session=session),
            groups=customer_groups(customer.external_userid, session=session),
        )


def sidebar_why(
    external_userid: str,
    userid: str,
    *,
    db: Database,
    dims: Sequence[Dimension],
    tz: ZoneInfo,
    now: datetime,
    engine: ExplainEngine | None = None,
) -> tuple[TierReason, ...] | Refusal:
    """Explain each dimension for the member's customer as of `now`, or say why not."""
    with db.read() as session:
        found = check_access(external_userid, userid, session=session)
        if isinstance(found, str):
            return found
        customer_id = found.id
    views = explain_customer(db, dims, customer_id=customer_id, tz=tz.key, as_of=now, engine=engine)
    return tuple(readable_tiers(views, dims, now=now, tz=tz))
