"""The callback inbox: verified events stored before the ack, claimed and processed once.

A re-delivery of the same event (same `dedup_key`) only bumps `duplicates`. Workers
claim due rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite every write
transaction already holds the database write lock (BEGIN IMMEDIATE), which serialises
claims just as well.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db.models import InboxEvent
from bot.db.queries import count_by_status
from bot.db.types import utcnow
from bot.errors import NotFoundError
from bot.metrics import register_refresher
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
_BACKOFF_BASE = 2.0
_BACKOFF_CAP = 600.0

STORED = Counter(
    "tagbot_inbox_received_total", "Callbacks stored or collapsed as duplicates", ["outcome"]
)
FAILURES = Counter(
    "tagbot_inbox_failures_total", "Callback processing failures", ["change_type", "final"]
)
LATENCY = Histogram(
    "tagbot_inbox_latency_seconds",
    "Time from a callback's arrival to the end of its processing",
    ["change_type"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
DEPTH = Gauge("tagbot_inbox_depth", "Inbox events by status", ["status"])


@dataclass(frozen=True)
class Claimed:
    """An inbox row taken by one worker for processing."""

    id: int
    payload: str
    event: str
    change_type: str
    received_at: datetime
    attempts: int


def _insert_ignore(session: Session) -> type[sqlite.Insert] | type[postgresql.Insert]:
    return sqlite.Insert if session.get_bind().dialect.name == "sqlite" else postgresql.Insert


def store(session: Session, event: CallbackEvent, payload: str) -> bool:
    """Store a verified event; return False when it was a re-delivery of a stored one."""
    insert_cls = _insert_ignore(session)
    stmt = (
        insert_cls(InboxEvent)
        .values(
            dedup_key=event.dedup_key,
            event=event.event[:64],
            change_type=event.change_type[:64],
            payload=payload,
            received_at=utcnow(),
            status=PENDING,
            attempts=0,
            next_attempt_at=utcnow(),
            duplicates=0,
        )
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(InboxEvent.id)
    )
    # RETURNING, not rowcount: the ORM path may report -1 for a skipped insert.
    inserted = session.execute(stmt).scalar_one_or_none()
    if inserted is not None:
        if session.get_bind().dialect.name == "postgresql":
            # Delivered at commit to worker processes listening (see jobs/inbox_listener.py).
            session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        STORED.labels("new").inc()
        return True
    session.execute(
        update(InboxEvent)
        .where(InboxEvent.dedup_key == event.dedup_key)
        .values(duplicates=InboxEvent.duplicates + 1)
        .execution_options(synchronize_session=False)
    )
    STORED.labels("duplicate").inc()
    return False


def claim(session: Session, *, limit: int = 1) -> list[Claimed]:
    """Take up to `limit` due events (pending, or abandoned by a dead worker) for processing."""
    now = utcnow()
    due = or_(
        (InboxEvent.status == PENDING) & (InboxEvent.next_attempt_at <= now),
        (InboxEvent.status == PROCESSING) & (InboxEvent.locked_until < now),
    )
    # One statement: pick (skipping rows other workers hold) and mark them taken.
    picked = (
        select(InboxEvent.id)
        .where(due)
        .order_by(InboxEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(InboxEvent)
        .where(InboxEvent.id.in_(picked))
        .values(
            status=PROCESSING,
            attempts=InboxEvent.attempts + 1,
            locked_until=now + timedelta(seconds=CLAIM_SECONDS),
        )
        .returning(
            InboxEvent.id,
            InboxEvent.payload,
            InboxEvent.event,
            InboxEvent.change_type,
            InboxEvent.received_at,
            InboxEvent.attempts,
        )
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def finish(session: Session, item: Claimed, *, handled: bool = True) -> None:
    """Mark a claimed event done (or ignored when no handler wanted it)."""
    now = utcnow()
    session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == item.id)
        .values(
            status=DONE if handled else IGNORED,
            processed_at=now,
            locked_until=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    LATENCY.labels(item.change_type or item.event).observe(
        max(0.0, (now - item.received_at).total_seconds())
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
    FAILURES.labels(item.change_type or item.event, "yes" if dead else "no").inc()
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


@register_refresher
def _refresh_depth(rt: Runtime) -> None:
    with rt.db.read() as session:
        for status, n in counts(session).items():
            DEPTH.labels(status).set(n)
