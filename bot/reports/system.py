"""The 系统 page's queues and processes: the inbox and outbox dead letters, who runs the jobs.

Dead letters are listed newest first through the (status, next_attempt_at) index, and
counts go by status, so the page never reads the done rows' payloads; the outbox's counts
are its tallies (bot/tags/tallies.py), not a count of the pending push.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import heartbeat
from bot.callbacks import inbox
from bot.db.models import InboxEvent, Lease, OutboxOperation, OutboxTagChange, Tag, TagGroup
from bot.states import InboxStatus, OutboxStatus
from bot.tags import tallies

DEAD_SHOWN = 20  # newest first; the counts say how many there are in all


@dataclass(frozen=True)
class InboxDead:
    """A callback that failed past its retries, with the reason."""

    id: int
    received_at: datetime
    kind: str  # event/change_type
    attempts: int
    error: str


@dataclass(frozen=True)
class InboxView:
    """The callback inbox: how many events in each state, and the newest dead letters.

    Waiting, processing and dead are counted whole; done and ignored, which the inbox
    keeps forever, over the last RECENT only (an index range, not every callback ever).
    """

    counts: dict[str, int]
    dead: list[InboxDead]


RECENT = timedelta(hours=24)
OPEN_STATES = (InboxStatus.PENDING, InboxStatus.PROCESSING, InboxStatus.DEAD)
FINISHED_STATES = (InboxStatus.DONE, InboxStatus.IGNORED)


def _inbox_counts(session: Session, now: datetime) -> dict[str, int]:
    counts = dict.fromkeys(inbox.STATUSES, 0)
    for where in (
        InboxEvent.status.in_(OPEN_STATES),
        # next_attempt_at is when a finished event was last taken: received, or its retry.
        InboxEvent.status.in_(FINISHED_STATES) & (InboxEvent.next_attempt_at >= now - RECENT),
    ):
        rows = session.execute(
            select(InboxEvent.status, func.count()).where(where).group_by(InboxEvent.status)
        ).all()
        counts.update({status: int(n) for status, n in rows})
    return counts


def inbox_view(*, session: Session, now: datetime, limit: int = DEAD_SHOWN) -> InboxView:
    """Return the inbox's counts by state (finished ones: last 24 h) and its newest dead letters."""
    rows = session.execute(
        select(
            InboxEvent.id,
            InboxEvent.received_at,
            InboxEvent.event,
            InboxEvent.change_type,
            InboxEvent.attempts,
            InboxEvent.last_error,
        )
        .where(InboxEvent.status == InboxStatus.DEAD)
        .order_by(InboxEvent.id.desc())
        .limit(limit)
    ).all()
    dead = [
        InboxDead(i, at, f"{event}/{change}" if change else event, n, error or "")
        for i, at, event, change, n, error in rows
    ]
    return InboxView(_inbox_counts(session, now), dead)


@dataclass(frozen=True)
class TagChange:
    """One tag a dead operation was to add or remove."""

    action: str  # add | remove
    group: str
    tag: str


@dataclass(frozen=True)
class OutboxDead:
    """A WeCom write (a tag change on one relation) that failed past its retries."""

    id: int
    created_at: datetime
    staff_userid: str
    external_userid: str
    attempts: int
    errcode: int | None
    error: str
    changes: list[TagChange]


@dataclass(frozen=True)
class OutboxView:
    """The outbox: operations queued, in flight and dead, and the newest dead letters."""

    counts: dict[str, int]
    dead: list[OutboxDead]


def outbox_view(*, session: Session, limit: int = DEAD_SHOWN) -> OutboxView:
    """Return the outbox's open counts (done rows are not counted) and its newest dead letters."""
    shown = (OutboxStatus.PENDING, OutboxStatus.IN_FLIGHT, OutboxStatus.DEAD)
    every = tallies.totals(session=session)  # counter rows, not the pending push's rows
    counts: dict[str, int] = {str(s): every[s] for s in shown}
    o = OutboxOperation
    ops = session.execute(
        select(
            o.id,
            o.created_at,
            o.staff_userid,
            o.external_userid,
            o.attempts,
            o.last_errcode,
            o.last_error,
        )
        .where(o.status == OutboxStatus.DEAD)
        .order_by(o.id.desc())
        .limit(limit)
    ).all()
    changes: dict[int, list[TagChange]] = {op.id: [] for op in ops}
    if ops:
        for op_id, action, group, tag in session.execute(
            select(OutboxTagChange.operation_id, OutboxTagChange.action, TagGroup.name, Tag.name)
            .join(Tag, Tag.id == OutboxTagChange.tag_id)
            .join(TagGroup, TagGroup.id == Tag.group_id)
            .where(OutboxTagChange.operation_id.in_(list(changes)))
            .order_by(OutboxTagChange.operation_id, TagGroup.name, Tag.name)
        ):
            changes[op_id].append(TagChange(action, group, tag))
    dead = [
        OutboxDead(i, at, staff, customer, n, errcode, error or "", changes[i])
        for i, at, staff, customer, n, errcode, error in ops
    ]
    return OutboxView(counts, dead)


@dataclass(frozen=True)
class Processes:
    """The processes alive now (their heartbeats) and which one runs the scheduled jobs."""

    alive: int
    scheduler_owner: str | None  # None: no process holds the scheduler lease
    scheduler_until: datetime | None


def processes(*, session: Session, now: datetime, scheduler_lease: str) -> Processes:
    """Return how many processes beat and who holds the scheduler lease (named by jobs/)."""
    alive = session.scalar(
        select(func.count())
        .select_from(Lease)
        .where(Lease.name.startswith(heartbeat.PREFIX), Lease.expires_at >= now)
    )
    lease = session.execute(
        select(Lease.owner, Lease.expires_at).where(
            Lease.name == scheduler_lease, Lease.expires_at >= now
        )
    ).first()
    return Processes(int(alive or 0), lease[0] if lease else None, lease[1] if lease else None)
