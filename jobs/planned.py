"""When each scheduled job runs next, from the same cron expressions the scheduler uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from apscheduler.triggers.cron import CronTrigger

from bot.config import Settings
from jobs import registry

# What each scheduled job does, in the operator's words (campaign runs are named apart).
JOB_LABELS = {
    "sync": "全量对账（成员、标签库、客户关系）",
    "retier": "全量分层",
    "day-population": "当天客户总体（解释的排名基准）",
    "channel-stats": "渠道与客户统计汇总",
}
CAMPAIGN_PREFIX = "outreach:"


@dataclass(frozen=True)
class Planned:
    """One scheduled job: its id, what it does, its cron expression and its next run."""

    id: str
    label: str
    cron: str
    next_at: datetime | None


def label(job_id: str) -> str:
    """Return what a job does, in Chinese."""
    if job_id.startswith(CAMPAIGN_PREFIX):
        return f"触达活动「{job_id.removeprefix(CAMPAIGN_PREFIX)}」定时运行"
    return JOB_LABELS.get(job_id, job_id)


def planned(settings: Settings, *, now: datetime) -> list[Planned]:
    """Return every scheduled job with its next run after `now` (in the configured zone)."""
    out = []
    for spec in registry.scheduled(settings):
        cron = spec.cron(settings)
        trigger = CronTrigger.from_crontab(cron, timezone=settings.tz)
        out.append(Planned(spec.id, label(spec.id), cron, trigger.get_next_fire_time(None, now)))
    return out
