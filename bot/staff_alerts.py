"""Alerts to staff members through the app, merged so WeCom never drops one.

WeCom accepts at most 30 app messages per member per minute (1,000 per hour) and drops
the rest without an error (wecom-api.md §4). Alerts are therefore queued in the
database (a crash loses none) and sent by one worker at a time across processes (a
lease), at most one message per member every WINDOW_SECONDS: what piles up meanwhile
goes out as one message, 「5 位客户已将你删除：张三、李四…」. That is 6 a minute and
360 an hour per member, leaving room for the other messages our app sends.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import cast

from prometheus_client import Counter, Gauge
from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from bot import leases
from bot.db.models import StaffAlert
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.queue import Queue
from bot.runtime import Runtime

log = logging.getLogger(__name__)

CUSTOMER_LOST = "customer_lost"
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
DEAD = "dead"
STATUSES = (PENDING, SENDING, SENT, DEAD)
WINDOW_SECONDS = 10.0  # at most one message per member this often
GATHER_SECONDS = 1.0  # a first alert waits this long for the rest of a burst
MAX_NAMES = 20  # listed in a merged message; the rest are counted
TEXT_MAX_BYTES = 2000  # under the 2048 bytes of an app text message
LEASE = "staff-alerts"
LEASE_SECONDS = 15.0

ALERTS = Counter(
    "tagbot_staff_alerts_total",
    "Staff alerts by outcome: sent alone, merged into another's message, retried, dead",
    ["outcome"],
    registry=None,
)
MESSAGES = Counter(
    "tagbot_staff_alert_messages_total", "App messages sent for staff alerts", registry=None
)
DEPTH = Gauge("tagbot_staff_alerts_depth", "Staff alerts by status", ["status"], registry=None)
METRICS = (ALERTS, MESSAGES, DEPTH)

_T = cast(Table, StaffAlert.__table__)
QUEUE = Queue(
    table=_T,
    taken=SENDING,
    statuses=STATUSES,
    max_attempts=8,
    claim_seconds=60.0,
    depth=DEPTH,
)


def enqueue(
    session: Session,
    *,
    userid: str,
    kind: str,
    subject: str,
    text: str,
    dedup_key: str | None = None,
) -> bool:
    """Queue an alert for a member: `text` when it goes out alone, `subject` when merged.

    With `dedup_key`, an alert already queued under that key is not queued again; return
    whether this call queued one.
    """
    if dedup_key is not None and session.scalar(
        select(StaffAlert.id).where(StaffAlert.dedup_key == dedup_key)
    ):
        return False
    now = utcnow()
    session.add(
        StaffAlert(
            userid=userid,
            kind=kind,
            dedup_key=dedup_key,
            subject=subject[:255],
            text=text,
            created_at=now,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
        )
    )
    return True


def compose(kind: str, subjects: list[str], texts: list[str]) -> str:
    """Write one message for a member's alerts of one kind."""
    if len(texts) == 1:
        return texts[0]
    n = len(subjects)
    head = f"{n} 位客户已将你删除：" if kind == CUSTOMER_LOST else f"{n} 条提醒："
    names: list[str] = []
    for name in subjects[:MAX_NAMES]:
        if len((head + "、".join([*names, name]) + f"…等 {n} 位").encode()) > TEXT_MAX_BYTES:
            break
        names.append(name)
    rest = "" if len(names) == n else f"…等 {n} 位"
    return head + "、".join(names) + rest


def _due_members(session: Session) -> list[str]:
    now = utcnow()
    gathered = now - timedelta(seconds=GATHER_SECONDS)
    waiting = session.execute(
        select(StaffAlert.userid)
        .where(QUEUE.due(now))
        .group_by(StaffAlert.userid)
        .having(func.min(StaffAlert.created_at) <= gathered)
    ).scalars()
    members = set(waiting)
    if not members:
        return []
    recent = session.execute(
        select(StaffAlert.userid).where(
            StaffAlert.userid.in_(members),
            StaffAlert.sent_at > now - timedelta(seconds=WINDOW_SECONDS),
        )
    ).scalars()
    return sorted(members - set(recent))


def _claim(session: Session, userid: str) -> list[StaffAlert]:
    now = utcnow()
    rows = list(
        session.scalars(
            select(StaffAlert)
            .where(StaffAlert.userid == userid, QUEUE.due(now))
            .order_by(StaffAlert.id)
            .with_for_update(skip_locked=True)
        )
    )
    for row in rows:
        row.status = SENDING
        row.attempts += 1
        row.locked_until = QUEUE.claim_deadline(now)
        # Stamped now, so the window holds even for a message whose send fails.
        row.sent_at = now
    session.flush()
    session.expunge_all()
    return rows


def _send(rt: Runtime, userid: str, rows: list[StaffAlert]) -> None:
    by_kind: dict[str, list[StaffAlert]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row)
    text = "\n\n".join(
        compose(kind, [r.subject for r in group], [r.text for r in group])
        for kind, group in by_kind.items()
    )
    try:
        rt.wecom.send_app_message([userid], text=text)
    except WeComError as exc:
        with rt.db.write() as session:
            for row in rows:
                dead = QUEUE.fail(session, row.id, row.attempts, str(exc), retryable=exc.retryable)
                ALERTS.labels("dead" if dead else "retry").inc()
        log.warning("alert to %s not sent: %s", userid, exc)
        return
    with rt.db.write() as session:
        session.execute(
            update(StaffAlert)
            .where(StaffAlert.id.in_([r.id for r in rows]))
            .values(status=SENT, locked_until=None, last_error=None)
        )
    MESSAGES.inc()
    ALERTS.labels("sent").inc()
    ALERTS.labels("merged").inc(len(rows) - 1)


def drain(rt: Runtime, owner: str) -> int:
    """Send the alerts due now, one message per member; return how many alerts went out."""
    with rt.db.write() as session:
        if not leases.try_acquire(session, LEASE, owner, LEASE_SECONDS):
            return 0  # another process sends them
        members = _due_members(session)
    handled = 0
    for userid in members:
        with rt.db.write() as session:
            rows = _claim(session, userid)
        if rows:
            _send(rt, userid, rows)
            handled += len(rows)
    return handled


def counts(session: Session) -> dict[str, int]:
    """Return how many alerts are in each status."""
    return QUEUE.counts(session)


def refresh_depth(rt: Runtime) -> None:
    """Set the depth gauge from the database (before each scrape)."""
    QUEUE.refresh_depth(rt)
