"""The console's daily channel counts, recounted every few minutes by the one scheduler."""

from __future__ import annotations

from bot.reports.channel_stats import ROLLUP_MINUTES, RollupReport, rollup
from bot.runtime import Runtime
from jobs.specs import ScheduledSpec


def _run(rt: Runtime) -> RollupReport:
    return rollup(rt.db, tz=rt.settings.tz)


CHANNEL_STATS_JOB = ScheduledSpec(
    id="channel-stats", run=_run, cron=lambda s: f"*/{ROLLUP_MINUTES} * * * *"
)
