"""The callback inbox: verified events stored before the ack, claimed and processed once.

A re-delivery of the same event (same `dedup_key`) only bumps `duplicates`. Workers
claim due rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite every write
transaction already holds the database write lock (BEGIN IMMEDIATE), which serialises
claims just as well.

Order. Events about one relation (userid x external_userid, `relation_key`) take effect
in the order they arrived: a claim skips an event while an earlier event of the same
relation is still pending or processing, whatever the number of workers or processes.
A customer who deletes a member and re-adds them within a second ends `active`. Events
about one customer group (change_external_chat) are keyed by their chat_id the same way.

Ownership. Each process running inbox workers beats a heartbeat row every second
(bot/heartbeat.py). The process that acknowledged an event owns it (`owner`) and
processes it first (`Handoff`: its ids are queued in memory and claimed by id); a claim
records its claimer as owner. Other processes leave an event alone while its owner's
heartbeat is fresh, however long it takes (a slow process is not a dead one, and a
takeover of a live process's event would send a second welcome, refused with 41051).
Once the owner's heartbeat is older than STALE_SECONDS (kill -9, lost host) its pending
and claimed events are due at once for everybody: seconds, not a minute, and well within
a welcome code's 20 s. A claimed event of a live process is taken over only after
CLAIM_SECONDS (a worker stuck in a call). A re-delivery of an event still pending, or
claimed by a dead process, takes it over for the process that received it and wakes its
workers and welcome lane instead of being dropped as a duplicate.

Once-only welcomes. A welcome code works once. In one process the lane's code
bookkeeping (bot.customers.scan_welcome.send_once) makes the lane and the inbox worker send it once;
across a takeover the dead process may have sent it just before dying, and WeCom's
41051 (already sent) then ends the second attempt as done without a second message.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from bot import heartbeat
from bot.db.driver import DriverWrite
from bot.db.models import InboxEvent
from bot.db.types import sqlite_datetime, utcnow
from bot.errors import NotFoundError
from bot.metriclabels import change_type_label
from bot.queue import Queue
from bot.states import InboxStatus
from bot.wecom.events import CallbackEvent

STATUSES = tuple(s.value for s in InboxStatus)
_TAKEN = InboxStatus.PROCESSING.value

NOTIFY_CHANNEL = "tagbot_inbox"
# The payload names the schema: NOTIFY reaches every listener of the database, and two corps'
# deployments in two schemas of one database (README, "Several corps") must not wake each other.
_NOTIFY_SQL = f"SELECT pg_notify('{NOTIFY_CHANNEL}', current_schema())"
MAX_ATTEMPTS = 6
# Long enough for a customer fetch plus a welcome under WeCom's retries; a claim of a
# live process older than this belongs to a stuck worker and is taken over.
CLAIM_SECONDS = 60.0
STALE_SECONDS = heartbeat.STALE_SECONDS
RELATION_EVENT = "change_external_contact"
CHAT_EVENT = "change_external_chat"
CHAT_KEY = "chat#"  # no userid holds "#": a group's key never meets a relation's
POLL_SECONDS = 0.25  # longest an older due event waits behind a stream of hand-offs

STORED = Counter(
    "tagbot_inbox_received_total",
    "Callbacks stored, collapsed as duplicates, or re-delivered and resumed",
    ["outcome"],
    registry=None,
)
FAILURES = Counter(
    "tagbot_inbox_failures_total",
    "Callback processing failures",
    ["change_type", "final"],
    registry=None,
)
LATENCY = Histogram(
    "tagbot_inbox_latency_seconds",
    "Time from a callback's arrival to the end of its processing",
    ["change_type"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=None,
)
DEPTH = Gauge("tagbot_inbox_depth", "Inbox events by status", ["status"], registry=None)
METRICS = (STORED, FAILURES, LATENCY, DEPTH)


@dataclass(frozen=True)
class Claimed:
    """An inbox row taken by one worker for processing."""

    id: int
    payload: str
    event: str
    change_type: str
    received_at: datetime
    attempts: int


class Handoff:
    """Events this process acknowledged and will process itself, oldest first.

    One per process (a Runtime part): the request puts, the inbox workers take. An entry
    is the event's id (to claim), or the event itself when the ack already claimed it
    (`store` with `take`).
    """

    def __init__(self) -> None:
        self._ids: deque[int | Claimed] = deque()
        self._lock = threading.Lock()
        self.active = False  # set while this process runs inbox workers
        self._next_poll = 0.0
        self._nudges = 0

    def poll_due(self) -> bool:
        """Return True at most every POLL_SECONDS: time to look for older due events.

        Under a steady stream of fresh events the hand-off queue is never empty; without
        this, events taken over from a dead process (or due retries) would wait for a lull.
        """
        now = time.monotonic()
        with self._lock:
            if now < self._next_poll:
                return False
            self._next_poll = now + POLL_SECONDS
            return True

    def poll_again(self) -> None:
        """Make the next step poll too (the last poll found work)."""
        with self._lock:
            self._next_poll = 0.0

    def put(self, entry: int | Claimed) -> None:
        with self._lock:
            self._ids.append(entry)

    def nudge(self) -> None:
        """Say that events this process did not acknowledge may be due (NOTIFY, a replay)."""
        with self._lock:
            self._nudges += 1

    def nudged(self) -> bool:
        """Take one nudge; False when there is none (a wake-up was this process's own ack)."""
        with self._lock:
            if not self._nudges:
                return False
            self._nudges -= 1
            return True

    def take(self, limit: int) -> list[int | Claimed]:
        """Remove and return up to `limit` queued entries."""
        with self._lock:
            return [self._ids.popleft() for _ in range(min(limit, len(self._ids)))]


def relation_key(event: CallbackEvent) -> str | None:
    """Return what an event is ordered by: its relation ("userid|external_userid") or group."""
    if event.event != RELATION_EVENT or not event.userid or not event.external_userid:
        if event.event == CHAT_EVENT and event.chat_id:
            return f"{CHAT_KEY}{event.chat_id}"[:255]
        return None
    return f"{event.userid}|{event.external_userid}"[:255]


# The hot statements are built once on the table, not per call on the ORM class: with
# bound parameters SQLAlchemy reuses their compiled form, which halves each one's CPU.
_T = cast(Table, InboxEvent.__table__)
QUEUE = Queue(
    table=_T,
    taken=InboxStatus.PROCESSING,
    statuses=STATUSES,
    max_attempts=MAX_ATTEMPTS,
    claim_seconds=CLAIM_SECONDS,
    depth=DEPTH,
    dead_values={"processed_at": utcnow},
)
_RETURNED = (_T.c.id, _T.c.payload, _T.c.event, _T.c.change_type, _T.c.received_at, _T.c.attempts)
_NOW: BindParameter[datetime] = bindparam("now")
_ME: BindParameter[str | None] = bindparam("me")
_EARLIER = _T.alias("earlier")
# Two plain comparisons, not IN (...): SQLAlchemy expands an IN list per execution,
# re-writing the SQL string each time (a sixth of the ack's store transaction).
_UNFINISHED = (_EARLIER.c.status == InboxStatus.PENDING) | (
    _EARLIER.c.status == InboxStatus.PROCESSING
)
# No earlier event of the same relation is unfinished (NULL keys never match).
_IN_ORDER = ~exists(
    select(_EARLIER.c.id).where(
        _EARLIER.c.relation_key == _T.c.relation_key,
        _EARLIER.c.id < _T.c.id,
        _UNFINISHED,
    )
)
_OWNER_GONE = heartbeat.gone(_T.c.owner, _NOW)  # also true when nobody owns it
_NOT_MINE = func.coalesce(_T.c.owner, "") != func.coalesce(_ME, "")
_DUE = (
    (_T.c.status == InboxStatus.PENDING)
    & (_T.c.next_attempt_at <= _NOW)
    & ((_T.c.owner == _ME) | _OWNER_GONE)
) | (
    (_T.c.status == InboxStatus.PROCESSING)
    & ((_T.c.locked_until < _NOW) | (_NOT_MINE & _OWNER_GONE))
)
_FINISH = (
    update(_T)
    .where(_T.c.id == bindparam("event_id"))
    .values(
        status=bindparam("status"),
        processed_at=_NOW,
        locked_until=None,
        last_error=None,
    )
)
_TAKE = {
    "status": InboxStatus.PROCESSING,
    "attempts": _T.c.attempts + 1,
    "locked_until": bindparam("locked_until"),
    "owner": _ME,
}
# One statement: pick (skipping rows other workers hold) and mark them taken.
_CLAIM_DUE = (
    update(_T)
    .where(
        _T.c.id.in_(
            select(_T.c.id)
            .where(_DUE, _IN_ORDER)
            .order_by(_T.c.id)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
        )
    )
    .values(**_TAKE)
    .returning(*_RETURNED)
)
# This process's own events by id. Not SKIP LOCKED: a row is locked only for a moment
# (a re-delivery counting itself, another claim), and skipping it would leave the event
# to the next poll instead of processing it now.
_CLAIM_IDS = (
    update(_T)
    .where(
        _T.c.id.in_(
            select(_T.c.id)
            .where(
                _T.c.status == InboxStatus.PENDING,
                _T.c.id.in_(bindparam("ids", expanding=True)),
                _IN_ORDER,
            )
            .order_by(_T.c.id)
            .with_for_update()
        )
    )
    .values(**_TAKE)
    .returning(*_RETURNED)
)
# The ack's store runs through the driver (bot/db/driver.py: a session would cost it three
# times the CPU), so its SQL is written out. The INSERT also claims the event for the
# process that will process it (`take`), unless an earlier event of its relation is
# unfinished (then it stays pending, claimed later in order). That spares each scan a
# claim transaction. On SQLite every write holds the database's one write lock (across
# processes too), so the INSERT sees every earlier event. On PostgreSQL concurrent inserts
# cannot see each other's uncommitted rows: the ack first takes a transaction lock on the
# relation (_RELATION_LOCK_SQL), so an ack of the same relation waits for the earlier
# one's commit, and its INSERT (a statement of its own, with a snapshot taken after the
# lock) sees the earlier event.
_RELATION_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(hashtext('tagbot-inbox:' || current_schema()), "
    "hashtext(:relation_key))"
)
_PENDING = f"'{InboxStatus.PENDING.value}'"
_UNFINISHED_SQL = f"(status = {_PENDING} OR status = '{_TAKEN}')"
_STORE_SQL = f"""
INSERT INTO inbox_events (dedup_key, event, change_type, payload, received_at, next_attempt_at,
    duplicates, relation_key, owner, status, attempts, locked_until)
SELECT :dedup_key, :event, :change_type, :payload, :now, :now, 0, :relation_key, :owner,
    CASE WHEN waits THEN {_PENDING} ELSE '{_TAKEN}' END,
    CASE WHEN waits THEN 0 ELSE 1 END,
    CASE WHEN waits THEN NULL ELSE :lock_deadline END
FROM (SELECT NOT :take OR EXISTS (SELECT 1 FROM inbox_events
    WHERE relation_key = :relation_key AND {_UNFINISHED_SQL}) AS waits) AS pick
WHERE true
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id, status"""
# A re-delivery counts itself and, when its event is unfinished and nobody alive holds
# it, takes it over for the receiving process (every SET reads the row as it was).
# The owner's liveness is heartbeat.gone's test, written out.
_TAKEABLE_SQL = f"""(status = {_PENDING} OR (status = '{_TAKEN}'
    AND coalesce(owner, '') <> coalesce(:me, '')))
    AND NOT EXISTS (SELECT 1 FROM leases
        WHERE leases.name = inbox_events.owner AND leases.expires_at >= :now)"""
_REDELIVERED_SQL = f"""
UPDATE inbox_events SET duplicates = duplicates + 1,
    owner = CASE WHEN {_TAKEABLE_SQL} THEN :me ELSE owner END,
    status = CASE WHEN {_TAKEABLE_SQL} THEN {_PENDING} ELSE status END,
    next_attempt_at = CASE WHEN {_TAKEABLE_SQL} THEN :now ELSE next_attempt_at END,
    locked_until = CASE WHEN {_TAKEABLE_SQL} THEN NULL ELSE locked_until END
WHERE dedup_key = :key
RETURNING id, status, owner"""
# A claim made by the ack is re-asserted when its event waited in the hand-off longer
# than this: by then a process that thought this one dead (its heartbeat late past
# STALE_SECONDS) may have taken it over, and a claim transaction would have noticed.
RETAKE_SECONDS = 1.0
_RETAKE = (
    update(_T)
    .where(
        _T.c.id.in_(bindparam("ids", expanding=True)),
        _T.c.status == InboxStatus.PROCESSING,
        _T.c.owner == _ME,
        _T.c.attempts == 1,  # no poll took it meanwhile (a claim counts an attempt)
    )
    .values(locked_until=bindparam("locked_until"))
    .returning(_T.c.id)
)


def store(
    event: CallbackEvent,
    payload: str,
    *,
    txn: DriverWrite,
    owner: str | None = None,
    take: bool = False,
) -> Claimed | int | None:
    """Store a verified event; return it claimed, its id, or None for a re-delivery.

    `owner`: this process's heartbeat id, when it will process the event itself (see
    `Handoff`). `take` (with `owner`): claim it in the same INSERT and return it
    `Claimed` (process it without a claim); its id is returned instead when an earlier
    event of its relation is unfinished (claim it first). A re-delivery of an event still pending (or claimed by a process that died)
    returns its id too, taken over for `owner`, so the caller wakes its processing as
    for a new one; any other re-delivery returns None.
    """
    sqlite = txn.dialect == "sqlite"
    take = take and owner is not None
    now = utcnow()
    stored_now = sqlite_datetime(now) if sqlite else now
    kind, change = event.event[:64], event.change_type[:64]
    key = relation_key(event)
    deadline = QUEUE.claim_deadline(now)
    row = {
        "dedup_key": event.dedup_key,
        "event": kind,
        "change_type": change,
        "payload": payload,
        "now": stored_now,
        "relation_key": key,
        "owner": owner,
        "take": take,
        "lock_deadline": sqlite_datetime(deadline) if sqlite else deadline,
    }
    if take and key is not None and not sqlite:
        txn.execute(_RELATION_LOCK_SQL, {"relation_key": key})
    # RETURNING, not rowcount: a skipped insert may report -1.
    inserted = txn.execute(_STORE_SQL, row)
    if inserted is not None:
        _notify(txn)
        STORED.labels("new").inc()
        if inserted[1] != _TAKEN:
            return int(inserted[0])
        return Claimed(int(inserted[0]), payload, kind, change, now, attempts=1)
    found = txn.execute(_REDELIVERED_SQL, {"key": event.dedup_key, "me": owner, "now": stored_now})
    if found is None or found[1] != InboxStatus.PENDING:
        STORED.labels("duplicate").inc()
        return None
    _notify(txn)  # still waiting: whoever may take it should look now
    STORED.labels("resumed").inc()
    return int(found[0]) if owner is not None and found[2] == owner else None


def _notify(txn: DriverWrite) -> None:
    if txn.dialect == "postgresql":
        # Delivered at commit to worker processes listening (see jobs/inbox_listener.py).
        txn.execute(_NOTIFY_SQL)


def aged(items: Sequence[Claimed]) -> bool:
    """Tell whether any event the ack claimed waited past RETAKE_SECONDS since."""
    oldest = min((c.received_at for c in items), default=None)
    return oldest is not None and (utcnow() - oldest).total_seconds() > RETAKE_SECONDS


def retake(items: Sequence[Claimed], *, session: Session, owner: str) -> list[Claimed]:
    """Renew the claims the ack made; return the events still this process's to process."""
    now = utcnow()
    params = {"ids": [c.id for c in items], "me": owner, "locked_until": QUEUE.claim_deadline(now)}
    kept = set(session.scalars(_RETAKE, params))
    return [c for c in items if c.id in kept]


def claim(
    *, session: Session, owner: str | None = None, limit: int = 1, ids: Sequence[int] = ()
) -> list[Claimed]:
    """Take up to `limit` due events for `owner` (pending, or abandoned by a dead process).

    With `ids`: take those of them still pending, due or not (this process's hand-off).
    An event waits while an earlier one of its relation is unfinished.
    """
    now = utcnow()
    params = {"now": now, "me": owner, "locked_until": QUEUE.claim_deadline(now)}
    if ids:
        result = session.execute(_CLAIM_IDS, {**params, "ids": list(ids)})
    else:
        result = session.execute(_CLAIM_DUE, {**params, "limit": limit})
    return sorted((Claimed(*row) for row in result), key=lambda c: c.id)


def finish(item: Claimed, *, session: Session, handled: bool = True) -> None:
    """Mark a claimed event done (or ignored when no handler wanted it)."""
    now = utcnow()
    params = {
        "event_id": item.id,
        "status": InboxStatus.DONE if handled else InboxStatus.IGNORED,
        "now": now,
    }
    session.execute(_FINISH, params)
    LATENCY.labels(change_type_label(item.change_type, item.event)).observe(
        max(0.0, (now - item.received_at).total_seconds())
    )


_FINISH_SQL = """
UPDATE inbox_events SET status = :status, processed_at = :now, locked_until = NULL,
    last_error = NULL
WHERE id = :event_id"""


def finish_sql(item: Claimed, *, txn: DriverWrite, handled: bool = True) -> None:
    """`finish`, in a write on the driver (bot/db/driver.py)."""
    now = utcnow()
    status = InboxStatus.DONE if handled else InboxStatus.IGNORED
    stored_now = sqlite_datetime(now) if txn.dialect == "sqlite" else now
    txn.execute(_FINISH_SQL, {"event_id": item.id, "status": status.value, "now": stored_now})
    LATENCY.labels(change_type_label(item.change_type, item.event)).observe(
        max(0.0, (now - item.received_at).total_seconds())
    )


def finish_pending(*, session: Session, event: str, received_by: datetime, but: int) -> None:
    """Mark pending events of a kind received by then done: one handling answered them all."""
    session.execute(
        update(InboxEvent)
        .where(
            InboxEvent.event == event,
            InboxEvent.status == InboxStatus.PENDING,
            InboxEvent.received_at <= received_by,
            InboxEvent.id != but,
        )
        .values(status=InboxStatus.DONE, processed_at=utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    )


def fail(item: Claimed, error: str, *, session: Session, retryable: bool = True) -> bool:
    """Record a failure: retry later with backoff, or dead-letter it; True when dead."""
    dead = QUEUE.fail(item.id, item.attempts, error, session=session, retryable=retryable)
    FAILURES.labels(change_type_label(item.change_type, item.event), "yes" if dead else "no").inc()
    return dead


def list_events(
    *, session: Session, status: str | None = InboxStatus.DEAD, limit: int = 100
) -> Sequence[InboxEvent]:
    """Return inbox events, newest first, optionally of one status."""
    query = select(InboxEvent).order_by(InboxEvent.id.desc()).limit(limit)
    if status:
        query = query.where(InboxEvent.status == status)
    return session.execute(query).scalars().all()


def replay(event_ids: Sequence[int] | None = None, *, session: Session) -> int:
    """Put dead (or the given) events back to pending with a fresh attempt budget."""
    query = update(InboxEvent).values(
        status=InboxStatus.PENDING, attempts=0, next_attempt_at=utcnow(), locked_until=None
    )
    if event_ids:
        found = session.execute(
            select(func.count()).select_from(InboxEvent).where(InboxEvent.id.in_(event_ids))
        ).scalar_one()
        if found != len(set(event_ids)):
            raise NotFoundError("有事件编号不存在 / some inbox event ids do not exist")
        query = query.where(
            InboxEvent.id.in_(event_ids), InboxEvent.status != InboxStatus.PROCESSING
        )
    else:
        query = query.where(InboxEvent.status == InboxStatus.DEAD)
    result = session.execute(query.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def counts(*, session: Session) -> dict[str, int]:
    """Return how many inbox events are in each status."""
    return QUEUE.counts(session=session)


def refresh_depth(*, session: Session) -> None:
    """Set the depth gauge from the database (before each scrape)."""
    QUEUE.refresh_depth(session=session)
