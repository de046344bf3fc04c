"""The daily reconcile: a full sync from WeCom, run by the one scheduler."""

from __future__ import annotations

from bot.customers.sync import SyncReport, run_sync
from bot.runtime import Runtime
from jobs.specs import ScheduledSpec


def _run(rt: Runtime) -> SyncReport:
    return run_sync(db=rt.db, wecom=rt.wecom)


SYNC_JOB = ScheduledSpec(id="sync", run=_run, cron=lambda s: s.jobs.sync_schedule)
