"""The one builder of campaign runs and their deliveries in tests, through the real models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from bot.db.models import Campaign, CampaignDelivery, CampaignRun, Customer
from bot.db.types import utcnow

_BATCH = 2000


@dataclass(frozen=True)
class Delivery:
    """A customer's place in a run: one campaign_deliveries row."""

    customer_id: int
    status: str = "planned"
    arm: str = "treatment"
    tier: str | None = None
    staff_userid: str | None = None
    task_id: int | None = None
    send_status: int | None = None
    created_at: datetime | None = None  # None: when they are added
    sent_at: datetime | None = None


def campaign_run(
    session: Session,
    campaign: str,
    *,
    action: str = "group_message",
    dimension: str = "value",
    **fields: Any,
) -> CampaignRun:
    """Add a run (with `fields`) of the campaign named `campaign`, created on first use."""
    row = session.scalars(select(Campaign).where(Campaign.name == campaign)).first()
    if row is None:
        row = Campaign(name=campaign, action=action, dimension=dimension)
        session.add(row)
        session.flush()
    run = CampaignRun(campaign_id=row.id, action=action, **fields)
    session.add(run)
    session.flush()
    return run


def add_deliveries(session: Session, run_id: int, deliveries: Iterable[Delivery]) -> None:
    """Insert the run's deliveries in the order given (ids follow it), in batches."""
    campaign_id = session.scalar(select(CampaignRun.campaign_id).where(CampaignRun.id == run_id))
    now = utcnow()
    rows = [
        {
            "run_id": run_id,
            "campaign_id": campaign_id,
            "customer_id": d.customer_id,
            "arm": d.arm,
            "tier": d.tier,
            "staff_userid": d.staff_userid,
            "task_id": d.task_id,
            "status": d.status,
            "send_status": d.send_status,
            "created_at": d.created_at or now,
            "sent_at": d.sent_at,
        }
        for d in deliveries
    ]
    for start in range(0, len(rows), _BATCH):
        session.execute(insert(CampaignDelivery), rows[start : start + _BATCH])


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
    run = campaign_run(session, f"测试{action}", action=action, status="done")
    send_status = {"sent": 1, "not_friend": 2, "over_quota": 3}.get(status)
    add_deliveries(
        session,
        run.id,
        [Delivery(c.id, status, arm, send_status=send_status, created_at=created, sent_at=sent)],
    )
