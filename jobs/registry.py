"""The catalogue of background work: continuous workers and scheduled jobs.

Feature modules declare their jobs in jobs/<area>.py and are listed here by import, so
`tagbot serve`, `tagbot worker` and `tagbot scheduler` all find them in one place and a
missing module fails at start-up.
"""

from __future__ import annotations

from bot.config import Settings
from jobs.campaigns import campaign_jobs
from jobs.channels import CHANNEL_UPKEEP
from jobs.heartbeat import HEARTBEAT
from jobs.inbox import INBOX_WORKER
from jobs.inbox_listener import INBOX_LISTENER
from jobs.outbox import OUTBOX_WORKER
from jobs.outreach import OUTREACH_WORKER
from jobs.outreach_results import OUTREACH_RESULTS
from jobs.reports import CHANNEL_STATS_JOB
from jobs.specs import ScheduledSpec, WorkerSpec
from jobs.staff_alerts import STAFF_ALERTS
from jobs.sync import SYNC_JOB
from jobs.tiering import POPULATION_JOB, RETIER_JOB, TOUCHED_WORKER
from jobs.welcome import WELCOME_LANE

WORKERS: tuple[WorkerSpec, ...] = (
    HEARTBEAT,  # first: the workers record this process as owner of what they take
    INBOX_WORKER,
    OUTBOX_WORKER,
    CHANNEL_UPKEEP,
    WELCOME_LANE,
    INBOX_LISTENER,
    STAFF_ALERTS,
    TOUCHED_WORKER,
    OUTREACH_RESULTS,
    OUTREACH_WORKER,
)
SCHEDULED: tuple[ScheduledSpec, ...] = (SYNC_JOB, RETIER_JOB, POPULATION_JOB, CHANNEL_STATS_JOB)


def workers() -> list[WorkerSpec]:
    """Return the continuous workers."""
    return list(WORKERS)


def scheduled(settings: Settings | None = None) -> list[ScheduledSpec]:
    """Return the scheduled jobs; with settings, also each scheduled campaign's run.

    With settings, a job whose cron is "" (turned off) is left out.
    """
    if settings is None:
        return list(SCHEDULED)
    return [s for s in SCHEDULED if s.cron(settings)] + campaign_jobs(settings)
