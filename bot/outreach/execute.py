"""Perform a planned run exactly once: hold it in quiet hours, make its tasks, run them.

`dispatch_run` takes a `planned` or `held` run. In quiet hours it only marks the run
`held` (`release_held` dispatches it when they end). Otherwise it creates the run's
tasks from its treatment deliveries in one write, then performs them: every attempt is
recorded before its call (`claims`), so a crash, a retry or a rerun never sends twice.
A run is `done` when every task is final (`failed` when every task failed).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.config import CampaignSettings, Settings
from bot.customers.staff import staff_name
from bot.db import Database
from bot.db.models import Campaign, CampaignDelivery, CampaignRun, CampaignTask
from bot.db.types import utcnow
from bot.errors import ValidationError
from bot.outreach import claims, follow_up, group_broadcast, group_message, task_plan, webhook
from bot.outreach.claims import Claimed, Clock
from bot.outreach.quiet import quiet_hours
from bot.states import RunStatus, TaskStatus
from bot.wecom.client import WeComClient
from bot.wecom_limits import MSG_TEMPLATE_CHATS_MAX, MSG_TEMPLATE_CUSTOMERS_MAX

log = logging.getLogger(__name__)

STARTABLE = (RunStatus.PLANNED, RunStatus.HELD)
PLANNED_GRACE = timedelta(minutes=5)  # a run left planned this long lost its dispatcher


class Perform(Protocol):
    """Perform one claimed task of an action (group_message, group_invite, group_broadcast, …)."""

    def __call__(
        self,
        task: Claimed,
        campaign: CampaignSettings,
        clock: Clock,
        *,
        db: Database,
        wecom: WeComClient,
        alerts_wakeup: threading.Event,
    ) -> None: ...


@dataclass(frozen=True)
class Action:
    """How one campaign action makes its tasks and performs one."""

    batch_max: int | None  # customers per task; None: one task per staff member
    perform: Perform
    by_staff: bool = True  # False: batches of the whole treatment, sender "" (webhook)
    groups: bool = False  # True: its deliveries are customer groups (group_broadcast)


ACTIONS: dict[str, Action] = {
    claims.GROUP_MESSAGE: Action(MSG_TEMPLATE_CUSTOMERS_MAX, group_message.perform),
    claims.GROUP_INVITE: Action(MSG_TEMPLATE_CUSTOMERS_MAX, group_message.perform),
    claims.GROUP_BROADCAST: Action(MSG_TEMPLATE_CHATS_MAX, group_message.perform, groups=True),
    claims.FOLLOW_UP: Action(None, follow_up.perform),
    claims.WEBHOOK: Action(webhook.BATCH_SIZE, webhook.perform, by_staff=False),
}


def campaign_settings(settings: Settings, name: str) -> CampaignSettings | None:
    """Return the configured campaign of that name."""
    return next((c for c in settings.outreach.campaigns if c.name == name), None)


def _run_row(session: Session, run_id: int) -> tuple[CampaignRun, str]:
    row = session.execute(
        select(CampaignRun, Campaign.name)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .where(CampaignRun.id == run_id)
    ).first()
    if row is None:
        raise ValidationError(f"no campaign run {run_id}")
    return row[0], row[1]


def _senders(session: Session, run_id: int) -> list[str]:
    return [
        u
        for u in session.scalars(
            select(CampaignDelivery.staff_userid)
            .where(CampaignDelivery.run_id == run_id, CampaignDelivery.arm == "treatment")
            .group_by(CampaignDelivery.staff_userid)
        )
        if u
    ]


def _fail_run(run_id: int, error: str, now: datetime, *, db: Database) -> str:
    with db.write() as session:
        run = session.get(CampaignRun, run_id, with_for_update=True)
        if run is not None and run.status in STARTABLE:
            run.status, run.error, run.finished_at = RunStatus.FAILED, error, now
    log.warning("campaign run %d failed: %s", run_id, error)
    return RunStatus.FAILED


def prepare_run(run_id: int, *, db: Database, settings: Settings, clock: Clock = utcnow) -> str:
    """Create a planned or held run's tasks without performing them; return its status."""
    with db.read() as session:
        run, name = _run_row(session, run_id)
        status, action = run.status, run.action
    if status not in STARTABLE:
        return status
    return _start(run_id, name, action, clock(), db=db, settings=settings)


def _start(
    run_id: int, name: str, action: str, now: datetime, *, db: Database, settings: Settings
) -> str:
    """Create the run's tasks and queue its deliveries in one write; return its status."""
    campaign = campaign_settings(settings, name)
    if campaign is None:
        msg = f"campaign {name!r} is not in the config any more"
        return _fail_run(run_id, msg, now, db=db)
    kind = ACTIONS.get(action)
    if kind is None:
        return _fail_run(run_id, f"action {action!r} cannot be performed here", now, db=db)
    # Names read before the write: `{staff}` may need the staff table.
    with db.read() as session:
        senders = (
            group_broadcast.owners(session, run_id) if kind.groups else _senders(session, run_id)
        )
        names = (
            {u: staff_name(u, session=session, display_names=settings.staff) for u in senders}
            if "{staff}" in campaign.text
            else {}
        )
    with db.write() as session:
        run = session.get(CampaignRun, run_id, with_for_update=True)
        if run is None or run.status not in STARTABLE:
            return run.status if run is not None else RunStatus.FAILED  # another process started it
        text_for = task_plan.staff_texts(campaign.text, names)
        if kind.groups:
            made = group_broadcast.create_tasks(session, run, text_for=text_for, now=now)
        else:
            made = task_plan.create_tasks(
                session,
                run,
                text_for=text_for,
                batch_max=kind.batch_max,
                now=now,
                by_staff=kind.by_staff,
            )
        run.status = RunStatus.SENDING
        log.info("campaign %s run %d: %d tasks", name, run_id, made)
    return RunStatus.SENDING


def _perform(
    task: Claimed,
    clock: Clock,
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    alerts_wakeup: threading.Event,
) -> None:
    campaign = campaign_settings(settings, task.campaign)
    kind = ACTIONS.get(task.kind)
    if campaign is None or kind is None:
        with db.write() as session:
            claims.fail(
                task, f"campaign {task.campaign!r} cannot be performed", clock(), session=session
            )
        return
    kind.perform(task, campaign, clock, db=db, wecom=wecom, alerts_wakeup=alerts_wakeup)


def finish_runs(session: Session, now: datetime, run_ids: set[int] | None = None) -> int:
    """Mark `sending` runs whose every task is final as done (failed: all failed)."""
    query = select(CampaignRun).where(CampaignRun.status == RunStatus.SENDING)
    if run_ids is not None:
        query = query.where(CampaignRun.id.in_(run_ids))
    finished = 0
    for run in session.scalars(query.with_for_update(skip_locked=True)):
        counts = dict(
            session.execute(
                select(CampaignTask.status, func.count())
                .where(CampaignTask.run_id == run.id)
                .group_by(CampaignTask.status)
            ).all()
        )
        if counts.get(TaskStatus.PENDING) or counts.get(TaskStatus.CALLING):
            continue
        failed = counts.get(TaskStatus.FAILED, 0)
        total = sum(counts.values())
        run.status = RunStatus.FAILED if total and failed == total else RunStatus.DONE
        run.error = f"{failed} of {total} tasks failed" if failed else None
        run.finished_at = now
        finished += 1
    return finished


def perform_due(
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    stopping: threading.Event,
    alerts_wakeup: threading.Event,
    run_id: int | None = None,
    clock: Clock = utcnow,
    limit: int = 1000,
) -> int:
    """Perform (or resolve) due tasks, of one run or all; return how many were taken.

    In quiet hours nothing is created or sent: only tasks left `calling` are resolved.
    """
    taken = 0
    runs: set[int] = set()
    quiet = quiet_hours(settings)
    while taken < limit and not stopping.is_set():
        now = clock()
        resolve_only = quiet is not None and quiet.is_quiet(now)
        with db.write() as session:
            task = claims.claim(now, session=session, run_id=run_id, resolve_only=resolve_only)
        if task is None:
            break
        taken += 1
        runs.add(task.run_id)
        _perform(task, clock, db=db, wecom=wecom, settings=settings, alerts_wakeup=alerts_wakeup)
    if runs or run_id is not None:
        with db.write() as session:
            finish_runs(session, clock(), runs | ({run_id} if run_id is not None else set()))
    return taken


def dispatch_run(
    run_id: int,
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    stopping: threading.Event,
    alerts_wakeup: threading.Event,
    clock: Clock = utcnow,
) -> str:
    """Perform a planned or held run (or go on with a sending one); return its status after.

    In quiet hours the run is only marked `held`. A done or failed run is left as it is.
    """
    now = clock()
    with db.read() as session:
        run, name = _run_row(session, run_id)
        status, action = run.status, run.action
    if status in STARTABLE:
        quiet = quiet_hours(settings)
        if quiet is not None and quiet.is_quiet(now):
            with db.write() as session:
                row = session.get(CampaignRun, run_id, with_for_update=True)
                if row is not None and row.status == RunStatus.PLANNED:
                    row.status = RunStatus.HELD
            log.info("campaign run %d held until %s", run_id, quiet.ends_at(now))
            return RunStatus.HELD
        status = _start(run_id, name, action, now, db=db, settings=settings)
    if status == RunStatus.SENDING:
        perform_due(
            db=db,
            wecom=wecom,
            settings=settings,
            stopping=stopping,
            alerts_wakeup=alerts_wakeup,
            run_id=run_id,
            clock=clock,
        )
        with db.read() as session:
            status = _run_row(session, run_id)[0].status
    return status


def release_held(
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    stopping: threading.Event,
    alerts_wakeup: threading.Event,
    clock: Clock = utcnow,
) -> int:
    """Dispatch held runs once quiet hours are over, and runs left planned too long."""
    now = clock()
    quiet = quiet_hours(settings)
    if quiet is not None and quiet.is_quiet(now):
        return 0
    with db.read() as session:
        run_ids = list(
            session.scalars(
                select(CampaignRun.id)
                .where(
                    (CampaignRun.status == RunStatus.HELD)
                    | (
                        (CampaignRun.status == RunStatus.PLANNED)
                        & (CampaignRun.started_at < now - PLANNED_GRACE)
                    )
                )
                .order_by(CampaignRun.id)
            )
        )
    for run_id in run_ids:
        dispatch_run(
            run_id,
            db=db,
            wecom=wecom,
            settings=settings,
            stopping=stopping,
            alerts_wakeup=alerts_wakeup,
            clock=clock,
        )
    return len(run_ids)
