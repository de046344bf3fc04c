"""campaign_tasks as a durable queue: claim a due task, record each outcome in its own write.

A task is claimed in one write that records `calling`, attempts + 1 and attempted_at
BEFORE its call goes out, so a crash leaves evidence: a 群发 task found `calling` past its
claim deadline is resolved, not called again blindly; a follow-up or webhook task, safe
to repeat, is called again as a new attempt (counted against its budget, dated for its
backoff). At most one 群发 task per sender is `calling` at a time, across runs and
processes: the texts of a sender's batches are equal, so resolving by listing the
sender's messages must not have two candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from prometheus_client import Counter
from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from bot.db.models import Campaign, CampaignDelivery, CampaignTask
from bot.queue import ERROR_MAX, Queue, backoff_seconds
from bot.states import DeliveryStatus, TaskStatus

Clock = Callable[[], datetime]

FINAL = (TaskStatus.CREATED, TaskStatus.SENT, TaskStatus.FAILED)
GROUP_MESSAGE = "group_message"
GROUP_INVITE = "group_invite"  # a 群发 like group_message, carrying a group's join QR code
GROUP_BROADCAST = "group_broadcast"  # a 群发 to customer groups (chat_type group)
# Kinds made by add_msg_template: one in flight per sender, resolved by listing, polled.
TEMPLATE_KINDS = (GROUP_MESSAGE, GROUP_INVITE, GROUP_BROADCAST)
FOLLOW_UP = "follow_up"
WEBHOOK = "webhook"
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 120.0  # longer than any one call, with the adapter's retries, may take
SETTLE_SECONDS = 60.0  # after an ambiguous failure: let a delayed request land, then look

OUTCOMES = Counter(
    "tagbot_outreach_tasks_total",
    "Outreach task attempts by kind and outcome: created, sent, failed, retry, settle"
    " (an ambiguous failure left to resolve), resolved (found in WeCom), missing (not found:"
    " called again)",
    ["kind", "outcome"],
    registry=None,
)
METRICS = (OUTCOMES,)

QUEUE = Queue(
    table=cast(Table, CampaignTask.__table__),
    taken=TaskStatus.CALLING,
    statuses=tuple(s.value for s in TaskStatus),
    max_attempts=MAX_ATTEMPTS,
    claim_seconds=CLAIM_SECONDS,
)


@dataclass(frozen=True)
class Claimed:
    """A task this process holds: what it was when claimed, and whether it needs resolving."""

    id: int
    run_id: int
    campaign: str
    kind: str
    sender: str
    batch: int
    text: str
    customers: int
    attempts: int
    attempted_at: datetime
    resolving: bool  # found `calling`: a previous call may have taken effect


def _is_due(task: CampaignTask, now: datetime) -> bool:
    if task.status == TaskStatus.PENDING:
        return task.next_attempt_at <= now
    return task.status == TaskStatus.CALLING and (
        task.locked_until is None or task.locked_until < now
    )


def _group_message_pick(
    sender: str, now: datetime, *, session: Session, resolve_only: bool
) -> CampaignTask | None:
    """Lock a sender's open 群发 tasks (in id order: no deadlock) and pick the one to take."""
    open_tasks = list(
        session.scalars(
            select(CampaignTask)
            .where(
                CampaignTask.kind.in_(TEMPLATE_KINDS),
                CampaignTask.sender == sender,
                CampaignTask.status.in_((TaskStatus.PENDING, TaskStatus.CALLING)),
            )
            .order_by(CampaignTask.id)
            .with_for_update()
        )
    )
    calling = [t for t in open_tasks if t.status == TaskStatus.CALLING]
    if any(not _is_due(t, now) for t in calling):
        return None  # one is in flight (or settling): the sender's next waits for it
    if calling:
        return calling[0]  # resolve before anything new goes out for this sender
    if resolve_only:
        return None
    return next((t for t in open_tasks if _is_due(t, now)), None)


def claim(
    now: datetime, *, session: Session, run_id: int | None = None, resolve_only: bool = False
) -> Claimed | None:
    """Take one due task (of `run_id`, or any) and record the attempt; None when none is due.

    `resolve_only` (quiet hours) takes only 群发 tasks left `calling`: listing creates nothing.
    """
    query = select(CampaignTask.id, CampaignTask.kind, CampaignTask.sender).where(QUEUE.due(now))
    if run_id is not None:
        query = query.where(CampaignTask.run_id == run_id)
    if resolve_only:
        query = query.where(
            CampaignTask.kind.in_(TEMPLATE_KINDS), CampaignTask.status == TaskStatus.CALLING
        )
    for task_id, kind, sender in session.execute(query.order_by(CampaignTask.id).limit(50)):
        task: CampaignTask | None
        if kind in TEMPLATE_KINDS:
            task = _group_message_pick(sender, now, session=session, resolve_only=resolve_only)
        else:
            task = session.scalars(
                select(CampaignTask)
                .where(CampaignTask.id == task_id, QUEUE.due(now))
                .with_for_update(skip_locked=True)
            ).first()
        if task is None or not _is_due(task, now):
            continue
        resolving = task.status == TaskStatus.CALLING
        # A 群发 found `calling` is looked up, not called; any other kind is called again:
        # a new attempt, counted against the budget and dated for its backoff.
        if not resolving or task.kind not in TEMPLATE_KINDS:
            task.status = TaskStatus.CALLING
            task.attempts += 1
            task.attempted_at = now
        task.locked_until = QUEUE.claim_deadline(now)
        session.flush()
        name = session.scalar(select(Campaign.name).where(Campaign.id == task.campaign_id))
        return Claimed(
            id=task.id,
            run_id=task.run_id,
            campaign=name or "",
            kind=task.kind,
            sender=task.sender,
            batch=task.batch,
            text=task.text,
            customers=task.customers,
            attempts=task.attempts,
            attempted_at=task.attempted_at or now,
            resolving=resolving,
        )
    return None


def _held(task: Claimed, *, session: Session) -> CampaignTask | None:
    """Return the task row if it is still `calling` (ours), locked for the update."""
    row = session.get(CampaignTask, task.id, with_for_update=True)
    return row if row is not None and row.status == TaskStatus.CALLING else None


def retry_later(task: Claimed, error: str, now: datetime, *, session: Session) -> bool:
    """Put a task whose call surely did not take effect back in the queue; True when it failed."""
    row = _held(task, session=session)
    if row is None:
        return False
    if row.attempts >= MAX_ATTEMPTS:
        fail(task, f"gave up after {row.attempts} attempts: {error}", now, session=session)
        return True
    row.status = TaskStatus.PENDING
    row.locked_until = None
    row.last_error = error[:ERROR_MAX]
    row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts))
    OUTCOMES.labels(task.kind, "retry").inc()
    return False


def retry_now(task: Claimed, note: str, now: datetime, *, session: Session) -> None:
    """Put a resolved task back as pending, due at once (its call never reached WeCom)."""
    row = _held(task, session=session)
    if row is not None:
        row.status, row.locked_until, row.last_error = TaskStatus.PENDING, None, note[:ERROR_MAX]
        row.next_attempt_at = now
        OUTCOMES.labels(task.kind, "missing").inc()


def settle(task: Claimed, error: str, now: datetime, *, session: Session) -> None:
    """Keep a task `calling` after an ambiguous failure; resolve it once SETTLE_SECONDS pass."""
    row = _held(task, session=session)
    if row is not None:
        row.locked_until = now + timedelta(seconds=SETTLE_SECONDS)
        row.last_error = error[:ERROR_MAX]
        OUTCOMES.labels(task.kind, "settle").inc()


def fail(task: Claimed, error: str, now: datetime, *, session: Session) -> None:
    """Record a permanent failure: the task and its queued deliveries are `failed`."""
    session.execute(
        update(CampaignTask)
        .where(CampaignTask.id == task.id)
        .values(
            status=TaskStatus.FAILED,
            locked_until=None,
            last_error=error[:ERROR_MAX],
            finished_at=now,
        )
    )
    session.execute(
        update(CampaignDelivery)
        .where(
            CampaignDelivery.task_id == task.id, CampaignDelivery.status == DeliveryStatus.QUEUED
        )
        .values(status=TaskStatus.FAILED)
    )
    OUTCOMES.labels(task.kind, TaskStatus.FAILED).inc()


def finish(
    task: Claimed, status: str, now: datetime, *, session: Session, **values: object
) -> bool:
    """Record a task's success (`created` or `sent`); False when it was no longer ours."""
    row = _held(task, session=session)
    if row is None:
        return False
    row.status = status
    row.locked_until = None
    row.last_error = None
    row.finished_at = now
    for key, value in values.items():
        setattr(row, key, value)
    resolved = task.resolving and task.kind in TEMPLATE_KINDS
    OUTCOMES.labels(task.kind, "resolved" if resolved else status).inc()
    return True
