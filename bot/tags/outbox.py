"""The outbox: durable WeCom tag writes, coalesced per (staff, customer), drained by workers.

A pending mark_tag operation for a relation absorbs later changes to the same relation,
so many changes cost one call. Workers claim operations with `FOR UPDATE SKIP LOCKED`
(PostgreSQL) or under SQLite's write lock, call WeCom through the adapter (which owns
the rate limit), and retry transient failures with backoff; permanent ones end `dead`
with the errcode and message.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bot.customers import contacts
from bot.db.models import (
    OutboxOperation,
    OutboxTagChange,
    Tag,
)
from bot.db.queries import count_by_status
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.runtime import Runtime
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)

MARK_TAG = "mark_tag"
PENDING = "pending"
IN_FLIGHT = "in_flight"
DONE = "done"
DEAD = "dead"
STATUSES = (PENDING, IN_FLIGHT, DONE, DEAD)
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 60.0

OPERATIONS = Counter(
    "tagbot_outbox_operations_total", "Outbox operations by outcome", ["outcome"], registry=None
)
DEPTH = Gauge("tagbot_outbox_depth", "Outbox operations by status", ["status"], registry=None)
METRICS = (OPERATIONS, DEPTH)


def enqueue_tags(
    *,
    session: Session,
    staff_userid: str,
    external_userid: str,
    add: Iterable[Tag] = (),
    remove: Iterable[Tag] = (),
) -> OutboxOperation | None:
    """Queue tag changes on one relation, merging into its pending operation if there is one."""
    return enqueue_tag_ids(
        session=session,
        staff_userid=staff_userid,
        external_userid=external_userid,
        add=[t.id for t in add],
        remove=[t.id for t in remove],
    )


def enqueue_tag_ids(
    *,
    session: Session,
    staff_userid: str,
    external_userid: str,
    add: Iterable[int] = (),
    remove: Iterable[int] = (),
) -> OutboxOperation | None:
    """Queue changes given as our tag ids; see enqueue_tags."""
    changes = dict.fromkeys(add, "add")
    changes.update(dict.fromkeys(remove, "remove"))
    if not changes:
        return None
    op = session.scalars(
        select(OutboxOperation)
        .where(
            OutboxOperation.kind == MARK_TAG,
            OutboxOperation.staff_userid == staff_userid,
            OutboxOperation.external_userid == external_userid,
            OutboxOperation.status == PENDING,
        )
        .order_by(OutboxOperation.id)
        .limit(1)
    ).first()
    if op is None:
        op = OutboxOperation(
            kind=MARK_TAG,
            staff_userid=staff_userid,
            external_userid=external_userid,
            payload={},
            status=PENDING,
            attempts=0,
            next_attempt_at=utcnow(),
            tag_changes=[OutboxTagChange(tag_id=t, action=a) for t, a in changes.items()],
        )
        session.add(op)
        session.flush()
        return op
    existing = {c.tag_id: c for c in op.tag_changes}
    for tag_id, action in changes.items():
        if tag_id in existing:
            existing[tag_id].action = action  # the later intention wins
        else:
            op.tag_changes.append(OutboxTagChange(tag_id=tag_id, action=action))
    session.flush()
    return op


@dataclass(frozen=True)
class ClaimedOp:
    """A mark_tag operation taken by one worker, with WeCom ids resolved at claim time."""

    id: int
    staff_userid: str
    external_userid: str
    attempts: int
    add: dict[int, str]  # our tag id -> WeCom tag id
    remove: dict[int, str]


def claim(session: Session, *, limit: int) -> list[ClaimedOp]:
    """Take up to `limit` due operations for this worker."""
    now = utcnow()
    due = or_(
        (OutboxOperation.status == PENDING) & (OutboxOperation.next_attempt_at <= now),
        (OutboxOperation.status == IN_FLIGHT) & (OutboxOperation.locked_until < now),
    )
    ops = (
        session.execute(
            select(OutboxOperation)
            .where(due, OutboxOperation.kind == MARK_TAG)
            .order_by(OutboxOperation.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    if not ops:
        return []
    changes = session.execute(
        select(OutboxTagChange.operation_id, OutboxTagChange.action, Tag.id, Tag.wecom_tag_id)
        .join(Tag, Tag.id == OutboxTagChange.tag_id)
        .where(
            OutboxTagChange.operation_id.in_([op.id for op in ops]),
            Tag.deleted.is_(False),
            Tag.wecom_tag_id.is_not(None),
        )
    ).all()
    by_op: dict[int, tuple[dict[int, str], dict[int, str]]] = {op.id: ({}, {}) for op in ops}
    for op_id, action, tag_id, wecom_id in changes:
        by_op[op_id][0 if action == "add" else 1][tag_id] = wecom_id or ""
    claimed = []
    for op in ops:
        op.status = IN_FLIGHT
        op.attempts += 1
        op.locked_until = now + timedelta(seconds=CLAIM_SECONDS)
        add, remove = by_op[op.id]
        claimed.append(
            ClaimedOp(op.id, op.staff_userid, op.external_userid, op.attempts, add, remove)
        )
    session.flush()
    return claimed


def _record_done(session: Session, op: ClaimedOp) -> None:
    session.execute(
        update(OutboxOperation)
        .where(OutboxOperation.id == op.id)
        .values(status=DONE, done_at=utcnow(), locked_until=None, last_error=None)
    )
    contacts.record_tag_change(
        session=session,
        staff_userid=op.staff_userid,
        external_userid=op.external_userid,
        add=op.add,
        remove=op.remove,
    )


def _record_failure(session: Session, op: ClaimedOp, exc: WeComError) -> bool:
    dead = not exc.retryable or op.attempts >= MAX_ATTEMPTS
    values: dict[str, object] = {
        "last_error": str(exc)[:4000],
        "last_errcode": exc.errcode,
        "locked_until": None,
    }
    if dead:
        values["status"] = DEAD
    else:
        wait = min(600.0, 2.0**op.attempts) * random.uniform(0.75, 1.25)
        values.update(status=PENDING, next_attempt_at=utcnow() + timedelta(seconds=wait))
    session.execute(update(OutboxOperation).where(OutboxOperation.id == op.id).values(**values))
    return dead


def perform(op: ClaimedOp, wecom: WeComClient) -> WeComError | None:
    """Make the WeCom call for one operation; return the error instead of raising it."""
    try:
        wecom.mark_tag(
            op.staff_userid,
            op.external_userid,
            add=sorted(op.add.values()),
            remove=sorted(op.remove.values()),
        )
    except WeComError as exc:
        return exc
    return None


def drain(rt: Runtime, *, limit: int = 20) -> int:
    """Claim and perform a batch of operations; return how many were handled."""
    with rt.db.write() as session:
        ops = claim(session, limit=limit)
    for op in ops:
        error = perform(op, rt.wecom)
        with rt.db.write() as session:
            if error is None:
                _record_done(session, op)
                OPERATIONS.labels("done").inc()
            elif _record_failure(session, op, error):
                OPERATIONS.labels("dead").inc()
                log.warning("outbox op %d dead: %s", op.id, error)
            else:
                OPERATIONS.labels("retry").inc()
    return len(ops)


def counts(session: Session) -> dict[str, int]:
    """Return how many operations are in each status."""
    return count_by_status(session, OutboxOperation.status, STATUSES)


def refresh_depth(rt: Runtime) -> None:
    """Set the depth gauge from the database (before each scrape)."""
    with rt.db.read() as session:
        for status, n in counts(session).items():
            DEPTH.labels(status).set(n)
