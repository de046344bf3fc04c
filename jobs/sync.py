"""The daily reconcile: a full sync from WeCom, run by the one scheduler."""

from __future__ import annotations

from bot.runtime import Runtime
from bot.sync import SyncReport, run_sync
from jobs.specs import ScheduledSpec


def _run(rt: Runtime) -> SyncReport:
    report = run_sync(db=rt.db, wecom=rt.wecom)
    # channel tags of scans whose callback never came, and of group joins
    if report.missed_scan_operations or report.group_join_operations:
        rt.wakeups.outbox.set()
    return report


SYNC_JOB = ScheduledSpec(id="sync", run=_run, cron=lambda s: s.jobs.sync_schedule)
