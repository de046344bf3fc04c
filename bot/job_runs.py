"""A record of each scheduled job's runs (and of syncs run by hand): when, outcome, counts.

The job runner keeps only Prometheus counters, which a restart forgets; the 系统 page
needs the last run of each job and its outcome, so each run ends with one row here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import JobRun
from bot.db.types import utcnow

log = logging.getLogger(__name__)

OK = "ok"
ERROR = "error"
SCHEDULE = "schedule"
MANUAL = "manual"
ERROR_MAX = 2000
KEEP_PER_JOB = 500  # channel-stats runs every 10 minutes: about three days of it

T = TypeVar("T")


def summarize(result: object) -> dict[str, Any] | None:
    """Return a run result's counts as JSON: numbers kept, lists counted, dicts of numbers kept."""
    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        return None
    out: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[f.name] = round(value, 3) if isinstance(value, float) else value
        elif isinstance(value, list | tuple | set | frozenset):
            out[f.name] = len(value)
        elif isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
            out[f.name] = {str(k): v for k, v in value.items()}
    return out


def record(
    *,
    session: Session,
    job: str,
    trigger: str,
    started_at: datetime,
    finished_at: datetime,
    outcome: str,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
    keep: int = KEEP_PER_JOB,
) -> None:
    """Add one finished run, forgetting this job's runs older than its newest `keep`."""
    session.add(
        JobRun(
            job=job[:64],
            trigger=trigger,
            started_at=started_at,
            finished_at=finished_at,
            outcome=outcome,
            summary=summary,
            error=error[:ERROR_MAX] if error else None,
        )
    )
    session.flush()
    # Older runs of this job beyond the newest `keep` go (one index range).
    oldest_kept = session.scalar(
        select(JobRun.id)
        .where(JobRun.job == job[:64])
        .order_by(JobRun.id.desc())
        .offset(keep - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        session.execute(
            delete(JobRun)
            .where(JobRun.job == job[:64], JobRun.id < oldest_kept)
            .execution_options(synchronize_session=False)
        )


def run_recorded(db: Database, job: str, trigger: str, fn: Callable[[], T]) -> T:
    """Run `fn`, record its outcome and counts (a failure too), and return or re-raise."""
    started = utcnow()
    try:
        result = fn()
    except Exception as exc:
        _save(db, job, trigger, started, ERROR, None, f"{type(exc).__name__}: {exc}")
        raise
    _save(db, job, trigger, started, OK, summarize(result), None)
    return result


def _save(
    db: Database,
    job: str,
    trigger: str,
    started: datetime,
    outcome: str,
    summary: dict[str, Any] | None,
    error: str | None,
) -> None:
    try:
        with db.write() as session:
            record(
                session=session,
                job=job,
                trigger=trigger,
                started_at=started,
                finished_at=utcnow(),
                outcome=outcome,
                summary=summary,
                error=error,
            )
    except Exception:  # the run's own outcome matters more than its record
        log.exception("could not record the run of job %s", job)


@dataclass(frozen=True)
class Run:
    """One recorded run, for the 系统 page."""

    id: int
    job: str
    trigger: str
    started_at: datetime
    finished_at: datetime
    outcome: str
    error: str | None
    summary: dict[str, Any]

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def _run(row: JobRun) -> Run:
    return Run(
        row.id,
        row.job,
        row.trigger,
        row.started_at,
        row.finished_at,
        row.outcome,
        row.error,
        row.summary or {},
    )


def recent(*, session: Session, job: str, limit: int = 10) -> list[Run]:
    """Return a job's newest runs first."""
    rows = session.scalars(
        select(JobRun).where(JobRun.job == job).order_by(JobRun.id.desc()).limit(limit)
    )
    return [_run(r) for r in rows]


def latest(jobs: Sequence[str], *, session: Session) -> dict[str, Run]:
    """Return the newest run of each of these jobs (jobs never run are absent)."""
    if not jobs:
        return {}
    newest = (
        select(func.max(JobRun.id))
        .where(JobRun.job.in_(jobs))
        .group_by(JobRun.job)
        .scalar_subquery()
    )
    rows = session.scalars(select(JobRun).where(JobRun.id.in_(newest)))
    return {r.job: _run(r) for r in rows}
