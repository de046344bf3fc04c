"""Scheduled campaign runs: each campaign with a `schedule` is a job of the one scheduler."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.config import CampaignSettings, Settings
from bot.outreach.plan import RunPlan
from bot.outreach.service import run_campaign
from bot.runtime import Runtime
from jobs.specs import ScheduledSpec

log = logging.getLogger(__name__)


def _runner(name: str) -> Callable[[Runtime], RunPlan]:
    def run(rt: Runtime) -> RunPlan:
        plan = run_campaign(
            name,
            db=rt.db,
            wecom=rt.wecom,
            settings=rt.settings,
            stopping=rt.stopping,
            alerts_wakeup=rt.wakeups.alerts,
            trigger="schedule",
        )
        log.info(
            "campaign %s: run %s, %d treatment, %d holdout, %d capped, %d cooling",
            name,
            plan.run_id,
            len(plan.treatment),
            len(plan.holdout),
            len(plan.capped),
            len(plan.cooling),
        )
        return plan

    return run


def _spec(campaign: CampaignSettings) -> ScheduledSpec:
    schedule = campaign.schedule
    assert schedule is not None
    return ScheduledSpec(
        id=f"outreach:{campaign.name}",
        run=_runner(campaign.name),
        cron=lambda _settings: schedule,
    )


def campaign_jobs(settings: Settings) -> list[ScheduledSpec]:
    """Return one scheduled job per campaign that has a `schedule` (trigger "schedule")."""
    return [_spec(c) for c in settings.outreach.campaigns if c.schedule]
