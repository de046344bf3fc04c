"""Hand-built campaign deliveries for the reach metrics' tests, through the real models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import Campaign, CampaignDelivery, CampaignRun, Customer


def _run(session: Session, action: str) -> CampaignRun:
    name = f"测试{action}"
    campaign = session.scalars(select(Campaign).where(Campaign.name == name)).first()
    if campaign is None:
        campaign = Campaign(name=name, action=action, dimension="value")
        session.add(campaign)
        session.flush()
    run = CampaignRun(campaign_id=campaign.id, action=action, status="done")
    session.add(run)
    session.flush()
    return run


def delivery(
    session: Session,
    c: Customer,
    status: str,
    created: datetime,
    *,
    sent: datetime | None = None,
    arm: str = "treatment",
    action: str = "group_message",
) -> None:
    """Add a delivery of `c` in a run of its own (one customer per run and campaign)."""
    run = _run(session, action)
    session.add(
        CampaignDelivery(
            run_id=run.id,
            campaign_id=run.campaign_id,
            customer_id=c.id,
            arm=arm,
            status=status,
            send_status={"sent": 1, "not_friend": 2, "over_quota": 3}.get(status),
            created_at=created,
            sent_at=sent,
        )
    )
