"""The callback inbox: verified events stored before the ack, claimed and processed once.

A re-delivery of the same event (same `dedup_key`) only bumps `duplicates`. Workers
claim due rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite every write
transaction already holds the database write lock (BEGIN IMMEDIATE), which serialises
claims just as well.

The process that acknowledged an event processes it first (`Handoff`): it stores the
row due only HANDOFF_SECONDS later and queues the id in memory, so with several
processes nobody else takes it meanwhile, yet if that process dies another one (or its
restart) picks the row up once it falls due.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Table, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db.models import InboxEvent
from bot.db.queries import count_by_status
from bot.db.types import utcnow
from bot.errors import NotFoundError
from bot.metriclabels import change_type_label
from bot.runtime import Runtime
from bot.wecom.events import CallbackEvent

PENDING = "pending"
PROCESSING = "processing"
DONE = "done"
IGNORED = "ignored"
DEAD = "dead"
STATUSES = (PENDING, PROCESSING, DONE, IGNORED, DEAD)

NOTIFY_CHANNEL = "tagbot_inbox"
MAX_ATTEMPTS = 6
# Long enough for a customer fetch plus a welcome under WeCom's retries; a claim older
# than this belonged to a process that died and is taken over.
CLAIM_SECONDS = 60.0
# How long other processes leave a fresh event to the process that acknowledged it: past
# a welcome code's 20 s life, so a takeover never sends a welcome that process's lane sent.
HANDOFF_SECONDS = 21.0
_BACKOFF_BASE = 2.0
_BACKOFF_CAP = 600.0

STORED = Counter(
    "tagbot_inbox_received_total",
    "Callbacks stored or collapsed as duplicates",
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
    """Ids of events this process acknowledged and will process itself, oldest first."""

    def __init__(self) -> None:
        self._ids: deque[int] = deque()
        self._lock = threading.Lock()
        self.active = False  # set while this process runs inbox workers

    def put(self, event_id: int) -> None:
        with self._lock:
            self._ids.append(event_id)

    def take(self, limit: int) -> list[int]:
        """Remove and return up to `limit` queued ids."""
        with self._lock:
            return [self._ids.popleft() for _ in range(min(limit, len(self._ids)))]


def handoff_for(rt: Runtime) -> Handoff:
    """Return this process's hand-off queue."""
    return rt.local(Handoff)


# The hot statements are built once on the table, not per call on the ORM class: with
# bound parameters SQLAlchemy reuses their compiled form, which halves each one's CPU.
_T = cast(Table, InboxEvent.__table__)
_RETURNED = (_T.c.id, _T.c.payload, _T.c.event, _T.c.change_type, _T.c.received_at, _T.c.attempts)
_BUMP_DUPLICATES = (
    update(_T).where(_T.c.dedup_key == bindparam("key")).values(duplicates=_T.c.duplicates + 1)
)
_FINISH = (
    update(_T)
    .where(_T.c.id == bindparam("event_id"))
    .values(
        status=bindparam("status"),
        processed_at=bindparam("now"),
        locked_until=None,
        last_error=None,
    )
)
_TAKE = {
    "status": PROCESSING,
    "attempts": _T.c.attempts + 1,
    "locked_until": bindparam("locked_until"),
}
_DUE = or_(
    (_T.c.status == PENDING) & (_T.c.next_attempt_at <= bindparam("now")),
    (_T.c.status == PROCESSING) & (_T.c.locked_until < bindparam("now")),
)
# One statement: pick (skipping rows other workers hold) and mark them taken.
_CLAIM_DUE = (
    update(_T)
    .where(
        _T.c.id.in_(
            select(_T.c.id)
            .where(_DUE)
            .order_by(_T.c.id)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
        )
    )
    .values(**_TAKE)
    .returning(*_RETURNED)
)
_CLAIM_IDS = (
    update(_T)
    .where(
        _T.c.id.in_(
            select(_T.c.id)
            .where(_T.c.status == PENDING, _T.c.id.in_(bindparam("ids", expanding=True)))
            .with_for_update(skip_locked=True)
        )
    )
    .values(**_TAKE)
    .returning(*_RETURNED)
)
_STORE = {
    "sqlite": sqlite.insert(_T)
    .on_conflict_do_nothing(index_elements=["dedup_key"])
    .returning(_T.c.id),
    "postgresql": postgresql.insert(_T)
    .on_conflict_do_nothing(index_elements=["dedup_key"])
    .returning(_T.c.id),
}


def store(
    session: Session, event: CallbackEvent, payload: str, *, hand_off: bool = False
) -> int | None:
    """Store a verified event and return its id; None when it re-delivers a stored one.

    `hand_off`: this process will process the event itself (see `Handoff`).
    """
    dialect = session.get_bind().dialect.name
    now = utcnow()
    row = {
        "dedup_key": event.dedup_key,
        "event": event.event[:64],
        "change_type": event.change_type[:64],
        "payload": payload,
        "received_at": now,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now + timedelta(seconds=HANDOFF_SECONDS) if hand_off else now,
        "duplicates": 0,
    }
    # RETURNING, not rowcount: a skipped insert may report -1.
    inserted = session.execute(_STORE[dialect], row).scalar_one_or_none()
    if inserted is not None:
        if dialect == "postgresql":
            # Delivered at commit to worker processes listening (see jobs/inbox_listener.py).
            session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        STORED.labels("new").inc()
        return int(inserted)
    session.execute(_BUMP_DUPLICATES, {"key": event.dedup_key})
    STORED.labels("duplicate").inc()
    return None


def claim(session: Session, *, limit: int = 1, ids: Sequence[int] = ()) -> list[Claimed]:
    """Take up to `limit` due events (pending, or abandoned by a dead worker) for processing.

    With `ids`: take those of them still pending, due or not (this process's hand-off).
    """
    now = utcnow()
    locked_until = now + timedelta(seconds=CLAIM_SECONDS)
    if ids:
        result = session.execute(_CLAIM_IDS, {"ids": list(ids), "locked_until": locked_until})
    else:
        params = {"now": now, "limit": limit, "locked_until": locked_until}
        result = session.execute(_CLAIM_DUE, params)
    return sorted((Claimed(*row) for row in result), key=lambda c: c.id)


def finish(session: Session, item: Claimed, *, handled: bool = True) -> None:
    """Mark a claimed event done (or ignored when no handler wanted it)."""
    now = utcnow()
    params = {"event_id": item.id, "status": DONE if handled else IGNORED, "now": now}
    session.execute(_FINISH, params)
    LATENCY.labels(change_type_label(item.change_type, item.event)).observe(
        max(0.0, (now - item.received_at).total_seconds())
    )


def finish_pending(session: Session, *, event: str, received_by: datetime, but: int) -> None:
    """Mark pending events of a kind received by then done: one handling answered them all."""
    session.execute(
        update(InboxEvent)
        .where(
            InboxEvent.event == event,
            InboxEvent.status == PENDING,
            InboxEvent.received_at <= received_by,
            InboxEvent.id != but,
        )
        .values(status=DONE, processed_at=utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    )


def backoff_seconds(attempts: int) -> float:
    """Return the wait before retry number `attempts`: exponential with jitter, capped."""
    base: float = min(_BACKOFF_CAP, _BACKOFF_BASE**attempts)
    return base * random.uniform(0.75, 1.25)


def fail(session: Session, item: Claimed, error: str, *, retryable: bool = True) -> bool:
    """Record a failure: retry later with backoff, or dead-letter it; True when dead."""
    dead = not retryable or item.attempts >= MAX_ATTEMPTS
    values: dict[str, object] = {"last_error": error[:4000], "locked_until": None}
    if dead:
        values.update(status=DEAD, processed_at=utcnow())
    else:
        values.update(
            status=PENDING,
            next_attempt_at=utcnow() + timedelta(seconds=backoff_seconds(item.attempts)),
        )
    session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == item.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    FAILURES.labels(change_type_label(item.change_type, item.event), "yes" if dead else "no").inc()
    return dead


def list_events(
    session: Session, *, status: str | None = DEAD, limit: int = 100
) -> Sequence[InboxEvent]:
    """Return inbox events, newest first, optionally of one status."""
    query = select(InboxEvent).order_by(InboxEvent.id.desc()).limit(limit)
    if status:
        query = query.where(InboxEvent.status == status)
    return session.execute(query).scalars().all()


def replay(session: Session, event_ids: Sequence[int] | None = None) -> int:
    """Put dead (or the given) events back to pending with a fresh attempt budget."""
    query = update(InboxEvent).values(
        status=PENDING, attempts=0, next_attempt_at=utcnow(), locked_until=None
    )
    if event_ids:
        found = session.execute(
            select(func.count()).select_from(InboxEvent).where(InboxEvent.id.in_(event_ids))
        ).scalar_one()
        if found != len(set(event_ids)):
            raise NotFoundError("有事件编号不存在 / some inbox event ids do not exist")
        query = query.where(InboxEvent.id.in_(event_ids), InboxEvent.status != PROCESSING)
    else:
        query = query.where(InboxEvent.status == DEAD)
    result = session.execute(query.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def counts(session: Session) -> dict[str, int]:
    """Return how many inbox events are in each status."""
    return count_by_status(session, InboxEvent.status, STATUSES)


def refresh_depth(rt: Runtime) -> None:
    """Set the depth gauge from the database (before each scrape)."""
    with rt.db.read() as session:
        for status, n in counts(session).items():
            DEPTH.labels(status).set(n)
