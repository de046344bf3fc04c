"""The outbox: durable WeCom tag writes, coalesced per (staff, customer), drained by workers.

A pending mark_tag operation for a relation absorbs later changes to the same relation,
so many changes cost one call. Workers claim operations with `FOR UPDATE SKIP LOCKED`
(PostgreSQL) or under SQLite's write lock, call WeCom through the adapter (which owns
the rate limit), and retry transient failures with backoff; permanent ones end `dead`
with the errcode and message.

A claim lasts CLAIM_SECONDS, but a worker may wait far longer for WeCom budget (up to an
hour when the hourly budget is spent). The claim is renewed while the worker waits, from
the budget's `while_waiting` hook, rather than budget reserved before claiming: the lane
(interactive or bulk) and so the budget to wait for is only known from the operations
claimed, and a reservation lasts a second while a batch takes longer. A worker told to
stop while waiting puts its unsent operations back, as they were, for the next one.

A claim names its worker's process (`owner`, the heartbeat id). Claims of a process whose
heartbeat row is gone are taken at once, not at their deadline: the row goes when the
process stops, or when another process of the same host and PID namespace finds it has
exited (a kill -9; bot/heartbeat.py). A live process's claims, and those of a process on
another host (whose row merely goes stale), wait for their deadline as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from prometheus_client import Counter, Gauge
from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import (
    FollowRelation,
    OutboxOperation,
    OutboxTagChange,
    Tag,
)
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.heartbeat import dropped
from bot.queue import Queue
from bot.states import OutboxStatus
from bot.tags import catalogue, relation_tags, tallies
from bot.wecom import budget
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)

MARK_TAG = "mark_tag"
STATUSES = tuple(s.value for s in OutboxStatus)
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 60.0
RENEW_AFTER = timedelta(seconds=CLAIM_SECONDS / 4)  # a waiting worker renews this often
# Changes from a scan or a staff action go ahead of every bulk push (whose priorities
# are the customer's rank in the value tiers, small numbers).
INTERACTIVE = 1_000_000
NOT_A_FRIEND = 84061  # the member no longer has this customer

OPERATIONS = Counter(
    "tagbot_outbox_operations_total", "Outbox operations by outcome", ["outcome"], registry=None
)
DEPTH = Gauge("tagbot_outbox_depth", "Outbox operations by status", ["status"], registry=None)
METRICS = (OPERATIONS, DEPTH)
QUEUE = Queue(
    table=cast(Table, OutboxOperation.__table__),
    taken=OutboxStatus.IN_FLIGHT,
    statuses=STATUSES,
    max_attempts=MAX_ATTEMPTS,
    claim_seconds=CLAIM_SECONDS,
    depth=DEPTH,
)


def enqueue_tags(
    *,
    session: Session,
    staff_userid: str,
    external_userid: str,
    add: Iterable[Tag] = (),
    remove: Iterable[Tag] = (),
    priority: int = INTERACTIVE,
) -> OutboxOperation | None:
    """Queue tag changes on one relation, merging into its pending operation if there is one.

    The default priority is INTERACTIVE: a person is waiting (a scan's channel tags), so the
    change goes first and may use the share of WeCom's budget that bulk pushes leave alone.
    """
    return enqueue_tag_ids(
        session=session,
        staff_userid=staff_userid,
        external_userid=external_userid,
        add=[t.id for t in add],
        remove=[t.id for t in remove],
        priority=priority,
    )


def enqueue_tag_ids(
    *,
    session: Session,
    staff_userid: str,
    external_userid: str,
    add: Iterable[int] = (),
    remove: Iterable[int] = (),
    priority: int = INTERACTIVE,
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
            OutboxOperation.status == OutboxStatus.PENDING,
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
            status=OutboxStatus.PENDING,
            priority=priority,
            attempts=0,
            next_attempt_at=utcnow(),
            tag_changes=[OutboxTagChange(tag_id=t, action=a) for t, a in changes.items()],
        )
        session.add(op)
        session.flush()
        return op
    op.priority = max(op.priority, priority)
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
    interactive: bool = False


def _due(session: Session, where: ColumnElement[bool], limit: int) -> list[OutboxOperation]:
    return list(
        session.execute(
            select(OutboxOperation)
            .where(OutboxOperation.kind == MARK_TAG, where)
            .order_by(OutboxOperation.priority.desc(), OutboxOperation.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def claim(
    session: Session, *, limit: int, now: datetime | None = None, owner: str | None = None
) -> list[ClaimedOp]:
    """Take up to `limit` due operations for this worker, highest priority first.

    `owner`: the heartbeat id of this worker's process, once its row is written (without
    one the claims wait for their deadline if the process dies).
    """
    now = now or utcnow()
    # Abandoned claims first (their deadline passed, or their process is known gone), then
    # the pending queue in priority order, which walks ix_outbox_operations_claim.
    ops = _due(
        session,
        (OutboxOperation.status == OutboxStatus.IN_FLIGHT)
        & ((OutboxOperation.locked_until < now) | dropped(QUEUE.table.c.owner)),
        limit,
    )
    if len(ops) < limit:
        ops += _due(
            session,
            (OutboxOperation.status == OutboxStatus.PENDING)
            & (OutboxOperation.next_attempt_at <= now),
            limit - len(ops),
        )
    if not ops:
        return []
    taken_over = [op.owner or "?" for op in ops if op.status == OutboxStatus.IN_FLIGHT]
    if taken_over:
        log.info("outbox: %d claims taken over from %s", len(taken_over), sorted(set(taken_over)))
    return [_claimed(op, now, wecom_ids, owner) for op, wecom_ids in _resolve(session, ops).items()]


def _resolve(
    session: Session, ops: list[OutboxOperation]
) -> dict[OutboxOperation, tuple[dict[int, str], dict[int, str]]]:
    """Map each operation's changes to the WeCom ids the catalogue has for them now."""
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
    return {op: by_op[op.id] for op in ops}


def _claimed(
    op: OutboxOperation,
    now: datetime,
    wecom_ids: tuple[dict[int, str], dict[int, str]],
    owner: str | None,
) -> ClaimedOp:
    op.status = OutboxStatus.IN_FLIGHT
    op.attempts += 1
    op.locked_until = QUEUE.claim_deadline(now)
    op.owner = owner
    add, remove = wecom_ids
    return ClaimedOp(
        op.id,
        op.staff_userid,
        op.external_userid,
        op.attempts,
        add,
        remove,
        op.priority >= INTERACTIVE,
    )


def reresolve(session: Session, op: ClaimedOp) -> ClaimedOp:
    """Return `op` with WeCom ids looked up again (after the catalogue was refreshed)."""
    row = session.get(OutboxOperation, op.id)
    if row is None:
        return op
    add, remove = _resolve(session, [row])[row]
    return ClaimedOp(
        op.id,
        op.staff_userid,
        op.external_userid,
        op.attempts,
        add,
        remove,
        op.interactive,
    )


def _record_done(session: Session, op: ClaimedOp) -> None:
    session.execute(
        update(OutboxOperation)
        .where(OutboxOperation.id == op.id)
        .values(status=OutboxStatus.DONE, done_at=utcnow(), locked_until=None, last_error=None)
    )
    relation_tags.record_tag_change(
        session=session,
        staff_userid=op.staff_userid,
        external_userid=op.external_userid,
        add=op.add,
        remove=op.remove,
    )


def _mark_lost(session: Session, op: ClaimedOp) -> None:
    """WeCom says the member no longer has this customer: the relation is lost."""
    relation_id = relation_tags.relation_id(
        session=session, staff_userid=op.staff_userid, external_userid=op.external_userid
    )
    if relation_id is not None:
        session.execute(
            update(FollowRelation)
            .where(FollowRelation.id == relation_id, FollowRelation.status == "active")
            .values(status="lost", lost_at=utcnow(), lost_reason="mark_tag_84061")
        )


def _record_failure(session: Session, op: ClaimedOp, exc: WeComError) -> bool:
    if exc.errcode == NOT_A_FRIEND:
        _mark_lost(session, op)
    return QUEUE.fail(
        op.id,
        op.attempts,
        str(exc),
        session=session,
        retryable=exc.retryable,
        last_errcode=exc.errcode,
    )


def perform(op: ClaimedOp, wecom: WeComClient) -> WeComError | None:
    """Make the WeCom call for one operation; return the error instead of raising it."""
    try:
        with budget.lane(budget.INTERACTIVE if op.interactive else budget.BULK):
            wecom.mark_tag(
                op.staff_userid,
                op.external_userid,
                add=sorted(op.add.values()),
                remove=sorted(op.remove.values()),
            )
    except WeComError as exc:
        return exc
    return None


def _refresh_catalogue(*, db: Database, wecom: WeComClient) -> None:
    groups = wecom.get_corp_tag_list()
    with db.write() as session:
        catalogue.apply_groups(session, groups, complete=True)


def _perform_with_refresh(
    op: ClaimedOp, refreshed: list[bool], *, db: Database, wecom: WeComClient
) -> tuple[ClaimedOp, WeComError | None]:
    """Perform; on an invalid tag id refresh the catalogue (once per batch) and retry once.

    Return the operation as finally sent (its ids re-resolved after a refresh) and the error.
    """
    error = perform(op, wecom)
    if error is None or error.errcode != catalogue.INVALID_TAG_ID:
        return op, error
    log.info("outbox op %d: invalid tag id, refreshing the catalogue and retrying", op.id)
    if not refreshed[0]:
        try:
            _refresh_catalogue(db=db, wecom=wecom)
        except WeComError as exc:
            return op, exc
        refreshed[0] = True
    with db.read() as session:
        retry = reresolve(session, op)
    OPERATIONS.labels("tag_retry").inc()
    return retry, perform(retry, wecom)


class _ClaimKeeper:
    """Renews the claims of a batch's unsent operations while its worker waits for budget."""

    def __init__(self, db: Database, ops: list[ClaimedOp], now: Callable[[], datetime]) -> None:
        self._db = db
        self._now = now
        self.unsent = {op.id: op.attempts for op in ops}
        self._renewed_at = now()

    def _held(self, op_id: int, attempts: int) -> ColumnElement[bool]:
        # Only while still ours: a claim another worker took over has a higher attempt.
        return (
            (OutboxOperation.id == op_id)
            & (OutboxOperation.status == OutboxStatus.IN_FLIGHT)
            & (OutboxOperation.attempts == attempts)
        )

    def renew(self) -> None:
        now = self._now()
        if not self.unsent or now - self._renewed_at < RENEW_AFTER:
            return
        with self._db.write() as session:
            for op_id, attempts in self.unsent.items():
                session.execute(
                    update(OutboxOperation)
                    .where(self._held(op_id, attempts))
                    .values(locked_until=QUEUE.claim_deadline(now))
                )
        self._renewed_at = now

    def give_back(self) -> None:
        """Return the unsent operations to the queue untried: due now, attempt not counted."""
        with self._db.write() as session:
            for op_id, attempts in self.unsent.items():
                session.execute(
                    update(OutboxOperation)
                    .where(self._held(op_id, attempts))
                    .values(
                        status=OutboxStatus.PENDING,
                        attempts=attempts - 1,
                        locked_until=None,
                        next_attempt_at=self._now(),
                    )
                )
        self.unsent.clear()


def drain(
    *,
    db: Database,
    wecom: WeComClient,
    limit: int = 20,
    now: Callable[[], datetime] = utcnow,
    stopping: threading.Event | None = None,
    owner: str | None = None,
) -> int:
    """Claim and perform a batch of operations; return how many were handled.

    `now` is the clock claims are taken and renewed by (tests pass time with it). Once
    `stopping` is set the operation in hand finishes and the rest go back at once.
    `owner`: see `claim`.
    """
    with db.write() as session:
        ops = claim(session, limit=limit, now=now(), owner=owner)
    keeper = _ClaimKeeper(db, ops, now)
    refreshed = [False]
    handled = 0
    for op in ops:
        if stopping is not None and stopping.is_set():
            keeper.give_back()
            log.info("outbox: stopping; %d operations put back untried", len(ops) - handled)
            break
        with budget.while_waiting(keeper.renew):
            op, error = _perform_with_refresh(op, refreshed, db=db, wecom=wecom)
        if isinstance(error, budget.BudgetWaitStoppedError):
            keeper.give_back()
            log.info("outbox: stopping; %d operations put back unsent", len(ops) - handled)
            break
        keeper.unsent.pop(op.id, None)
        handled += 1
        with db.write() as session:
            if error is None:
                _record_done(session, op)
                OPERATIONS.labels("done").inc()
            elif _record_failure(session, op, error):
                OPERATIONS.labels("dead").inc()
                log.warning("outbox op %d dead: %s", op.id, error)
            else:
                OPERATIONS.labels("retry").inc()
    return handled


def counts(*, session: Session) -> dict[str, int]:
    """Return how many operations are in each status (from the tallies, not a count)."""
    return tallies.totals(session=session)


def refresh_depth(*, session: Session) -> None:
    """Set the depth gauge from the tallies (before each scrape)."""
    for status, n in counts(session=session).items():
        DEPTH.labels(status).set(n)
