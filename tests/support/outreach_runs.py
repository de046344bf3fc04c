"""Campaign runs built by inserting rows, as the planner records them, and a settable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.config import Settings, settings_from_mapping
from bot.db.models import CampaignDelivery, CampaignTask, Customer
from bot.runtime import Runtime
from tests.support.corp import base_config
from tests.support.deliveries import Delivery, add_deliveries, campaign_run
from tests.support.tiers import VALUE


class WallClock:
    """An aware UTC clock that tests move by hand (backoff without sleeping)."""

    def __init__(self, start: datetime | None = None) -> None:
        # By default a minute ahead, so rows the test made before are due by this clock.
        self.at = start or datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=60)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)

    def move_to(self, when: datetime) -> None:
        self.at = max(self.at, when)


def webhook_config(
    db_url: str, url: str, *, secret: str | None, name: str = "短信唤醒", text: str = ""
) -> dict[str, Any]:
    """A config with one webhook campaign on the value dimension's 高价值 tier."""
    campaign: dict[str, Any] = {
        "name": name,
        "action": "webhook",
        "dimension": VALUE["name"],
        "tiers": ["高价值"],
        "webhook_url": url,
        "text": text,
    }
    if secret is not None:
        campaign["webhook_secret"] = secret
    return {
        **base_config(db_url),
        "tiering": {"dimensions": [VALUE]},
        "outreach": {"quiet_hours": "", "campaigns": [campaign]},
    }


def webhook_settings(db_url: str, url: str, **kw: Any) -> Settings:
    return settings_from_mapping(webhook_config(db_url, url, **kw), environ={})


def planned_run(
    rt: Runtime, campaign: str, *, treatment: int, holdout: int = 0, prefix: str = "wm"
) -> int:
    """Record a planned run as the planner does: customers, the run, one delivery each.

    Treatment and holdout customers are interleaved, so batching must pick the arm.
    Returns the run id.
    """
    with rt.db.write() as session:
        run = campaign_run(
            session,
            campaign,
            action="webhook",
            dimension=str(VALUE["name"]),
            status="planned",
            audience=treatment + holdout,
            treatment=treatment,
            holdout=holdout,
        )
        order = _interleave(treatment, holdout)
        customers = [
            Customer(
                external_userid=f"{prefix}{run.id}_{i:05d}",
                unionid=f"u{prefix}{run.id}_{i:05d}" if i % 3 else None,
                name=f"客户{i}",
            )
            for i in range(len(order))
        ]
        session.add_all(customers)
        session.flush()
        add_deliveries(
            session,
            run.id,
            (
                Delivery(customer.id, "planned", tier="高价值", staff_userid=f"staff{i % 4}")
                if arm == "treatment"
                else Delivery(customer.id, "holdout", "holdout", tier="高价值")
                for i, (customer, arm) in enumerate(zip(customers, order, strict=True))
            ),
        )
        return run.id


def _interleave(treatment: int, holdout: int) -> list[str]:
    """Arms in insertion order: every 7th a holdout while both last."""
    out: list[str] = []
    t, h = treatment, holdout
    i = 0
    while t or h:
        if h and (i % 7 == 0 or not t):
            out.append("holdout")
            h -= 1
        else:
            out.append("treatment")
            t -= 1
        i += 1
    return out


def run_tasks(rt: Runtime, run_id: int) -> list[CampaignTask]:
    """The run's tasks by batch."""
    with rt.db.read() as session:
        return list(
            session.scalars(
                select(CampaignTask)
                .where(CampaignTask.run_id == run_id)
                .order_by(CampaignTask.batch)
            )
        )


def deliveries(rt: Runtime, run_id: int) -> list[tuple[str, str, str, int | None, Any]]:
    """(external_userid, arm, status, task_id, sent_at) per delivery, by delivery id."""
    with rt.db.read() as session:
        rows = session.execute(
            select(
                Customer.external_userid,
                CampaignDelivery.arm,
                CampaignDelivery.status,
                CampaignDelivery.task_id,
                CampaignDelivery.sent_at,
            )
            .join(Customer, Customer.id == CampaignDelivery.customer_id)
            .where(CampaignDelivery.run_id == run_id)
            .order_by(CampaignDelivery.id)
        ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]
