"""Run a configured campaign by name: plan it, then hand a recorded run to the executor."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import func, select

from bot.config import CampaignSettings, Settings
from bot.db import Database
from bot.db.models import Campaign, CampaignRun
from bot.errors import NotFoundError
from bot.outreach.execute import dispatch_run
from bot.outreach.plan import RunPlan, Trigger, plan_run
from bot.wecom.client import WeComClient


def get_campaign(settings: Settings, name: str) -> CampaignSettings:
    """Return the configured campaign `name`; NotFoundError lists the configured names."""
    for campaign in settings.outreach.campaigns:
        if campaign.name == name:
            return campaign
    names = "、".join(c.name for c in settings.outreach.campaigns) or "（无）"
    raise NotFoundError(f"没有名为 {name!r} 的触达活动 / no campaign {name!r}; 已配置：{names}")


def run_campaign(
    name: str,
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    stopping: threading.Event,
    alerts_wakeup: threading.Event,
    trigger: Trigger = "manual",
    dry_run: bool = False,
    as_of: datetime | None = None,
) -> RunPlan:
    """Plan the campaign `name` now (or as of `as_of`); unless dry, dispatch the run."""
    campaign = get_campaign(settings, name)
    plan = plan_run(
        campaign,
        db=db,
        settings=settings,
        as_of=as_of or datetime.now(UTC),
        trigger=trigger,
        dry_run=dry_run,
    )
    if plan.run_id is not None:
        plan.status = dispatch_run(
            plan.run_id,
            db=db,
            wecom=wecom,
            settings=settings,
            stopping=stopping,
            alerts_wakeup=alerts_wakeup,
        )
    return plan


def last_runs(db: Database) -> dict[str, CampaignRun]:
    """Return each campaign's latest run by campaign name."""
    latest = select(func.max(CampaignRun.id)).group_by(CampaignRun.campaign_id)
    with db.read() as session:
        rows = session.execute(
            select(Campaign.name, CampaignRun)
            .join(CampaignRun, CampaignRun.campaign_id == Campaign.id)
            .where(CampaignRun.id.in_(latest))
        ).all()
    return {str(name): run for name, run in rows}
