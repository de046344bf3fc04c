"""Reads of a task's customers: who they are, as WeCom and the staff member know them."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from bot.db.models import CampaignDelivery, Customer, FollowRelation, Staff
from bot.states import DeliveryStatus


def external_userids(session: Session, task_id: int) -> list[str]:
    """Return the external_userids of a task's queued deliveries, in customer order."""
    return list(
        session.scalars(
            select(Customer.external_userid)
            .join(CampaignDelivery, CampaignDelivery.customer_id == Customer.id)
            .where(
                CampaignDelivery.task_id == task_id,
                CampaignDelivery.status == DeliveryStatus.QUEUED,
            )
            .order_by(Customer.id)
        )
    )


def shown_names(session: Session, task_id: int, sender: str, limit: int) -> list[str]:
    """Return up to `limit` names a member knows a task's customers by: remark, else name."""
    relation = and_(
        FollowRelation.customer_id == Customer.id,
        FollowRelation.staff_id == select(Staff.id).where(Staff.userid == sender).scalar_subquery(),
    )
    rows = session.execute(
        select(FollowRelation.remark, Customer.name, Customer.external_userid)
        .join(CampaignDelivery, CampaignDelivery.customer_id == Customer.id)
        .outerjoin(FollowRelation, relation)
        .where(CampaignDelivery.task_id == task_id)
        .order_by(Customer.id)
        .limit(limit)
    )
    return [remark or name or ext for remark, name, ext in rows]


def tier_label(session: Session, task_id: int) -> str:
    """Return the tiers of a task's customers at selection, as one label (高价值、潜力)."""
    tiers = session.scalars(
        select(CampaignDelivery.tier)
        .where(CampaignDelivery.task_id == task_id, CampaignDelivery.tier.is_not(None))
        .group_by(CampaignDelivery.tier)
        .order_by(CampaignDelivery.tier)
    )
    return "、".join(t for t in tiers if t)


def customers_word(tier: str) -> str:
    """Return 「高价值客户」 for a tier, 「沉睡客户」 (not 沉睡客户客户), or 「客户」."""
    return tier if tier.endswith("客户") else f"{tier}客户"
