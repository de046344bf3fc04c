"""Alerts to staff members through the app, merged so WeCom never drops one.

WeCom accepts at most 30 app messages per member per minute (1,000 per hour) and drops
the rest without an error (wecom-api.md §4). Alerts are therefore queued in the
database (a crash loses none) and sent by one worker at a time across processes (a
lease), at most one message per member every WINDOW_SECONDS: what piles up meanwhile
goes out as one message, 「5 位客户已将你删除：张三、李四…」. That is 6 a minute and
360 an hour per member, leaving room for the other messages our app sends.

The sender keeps the lease between drains and renews it with every claim, and between
the naps of a send waiting for WeCom budget (which can take an hour), so the lease can
stay short: a crashed sender's lease passes to another after LEASE_SECONDS (what it had
claimed, after the claim's own deadline).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

from prometheus_client import Counter, Gauge
from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot import leases
from bot.db import Database
from bot.db.models import StaffAlert
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.queue import Queue
from bot.states import AlertStatus
from bot.wecom import budget
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)

CUSTOMER_LOST = "customer_lost"
TIER_ALERT = "tier_alert"  # bot.outreach.tier_alerts: a 高价值 customer going quiet
# The first line of a merged message, per kind; the subjects follow.
MERGED_HEADS = {
    CUSTOMER_LOST: "{n} 位客户已将你删除：",
    TIER_ALERT: "{n} 条高价值客户提醒，建议电话回访：",
}
STATUSES = tuple(s.value for s in AlertStatus)
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
    taken=AlertStatus.SENDING,
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

    With `dedup_key` the alert is queued at most once: False when that key already was.
    """
    now = utcnow()
    values = {
        "userid": userid,
        "kind": kind,
        "subject": subject[:255],
        "text": text,
        "created_at": now,
        "status": AlertStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "dedup_key": dedup_key,
    }
    if dedup_key is None:
        session.add(StaffAlert(**values))
        return True
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    inserted = session.execute(
        dialect.insert(_T)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(_T.c.id)
    ).first()
    return inserted is not None


def compose(kind: str, subjects: list[str], texts: list[str]) -> str:
    """Write one message for a member's alerts of one kind."""
    if len(texts) == 1:
        return texts[0]
    n = len(subjects)
    head = MERGED_HEADS.get(kind, "{n} 条提醒：").format(n=n)
    names: list[str] = []
    for name in subjects[:MAX_NAMES]:
        if len((head + "、".join([*names, name]) + f"…等 {n} 位").encode()) > TEXT_MAX_BYTES:
            break
        names.append(name)
    rest = "" if len(names) == n else f"…等 {n} 位"
    return head + "、".join(names) + rest


def _due_members(now: datetime, *, session: Session) -> list[str]:
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


def _claim(userid: str, now: datetime, *, session: Session) -> list[StaffAlert]:
    rows = list(
        session.scalars(
            select(StaffAlert)
            .where(StaffAlert.userid == userid, QUEUE.due(now))
            .order_by(StaffAlert.id)
            .with_for_update(skip_locked=True)
        )
    )
    for row in rows:
        row.status = AlertStatus.SENDING
        row.attempts += 1
        row.locked_until = QUEUE.claim_deadline(now)
        # Stamped now, so the window holds even for a message whose send fails.
        row.sent_at = now
    session.flush()
    session.expunge_all()
    return rows


def _keeper(
    owner: str, rows: list[StaffAlert], now: Callable[[], datetime], *, db: Database
) -> Callable[[], None]:
    """Return a hook renewing the lease and these rows' claim while a send waits."""
    ids = [r.id for r in rows]

    def renew() -> None:
        at = now()
        with db.write() as session:
            if not leases.renew(LEASE, owner, LEASE_SECONDS, session=session, now=at):
                raise leases.LeaseLostError(f"lease {LEASE} was taken over from {owner}")
            session.execute(
                update(StaffAlert)
                .where(StaffAlert.id.in_(ids), StaffAlert.status == AlertStatus.SENDING)
                .values(locked_until=QUEUE.claim_deadline(at))
            )

    return renew


def _send(
    userid: str,
    rows: list[StaffAlert],
    keep: Callable[[], None],
    *,
    db: Database,
    wecom: WeComClient,
) -> None:
    by_kind: dict[str, list[StaffAlert]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row)
    text = "\n\n".join(
        compose(kind, [r.subject for r in group], [r.text for r in group])
        for kind, group in by_kind.items()
    )
    try:
        with budget.while_waiting(keep):
            wecom.send_app_message([userid], text=text)
    except (WeComError, leases.LeaseLostError) as exc:
        # Another sender took over while this one waited: it sends them, later.
        retryable = not isinstance(exc, WeComError) or exc.retryable
        with db.write() as session:
            for row in rows:
                dead = QUEUE.fail(
                    row.id, row.attempts, str(exc), session=session, retryable=retryable
                )
                ALERTS.labels("dead" if dead else "retry").inc()
        log.warning("alert to %s not sent: %s", userid, exc)
        return
    with db.write() as session:
        session.execute(
            update(StaffAlert)
            .where(StaffAlert.id.in_([r.id for r in rows]))
            .values(status=AlertStatus.SENT, locked_until=None, last_error=None)
        )
    MESSAGES.inc()
    ALERTS.labels("sent").inc()
    ALERTS.labels("merged").inc(len(rows) - 1)


def drain(
    owner: str,
    *,
    db: Database,
    wecom: WeComClient,
    now: Callable[[], datetime] = utcnow,
) -> int:
    """Send the alerts due now, one message per member; return how many alerts went out.

    `owner`: who holds the sender's lease (the worker passes its process's heartbeat id).
    """
    with db.write() as session:
        if not leases.try_acquire(LEASE, owner, LEASE_SECONDS, session=session, now=now()):
            return 0  # another process sends them
        members = _due_members(now(), session=session)
    handled = 0
    for userid in members:
        with db.write() as session:
            at = now()
            # The claim renews the lease: a batch of slow sends never outlives it.
            if not leases.renew(LEASE, owner, LEASE_SECONDS, session=session, now=at):
                log.warning("staff alerts: another sender took over; %s stops", owner)
                break
            rows = _claim(userid, at, session=session)
        if rows:
            _send(userid, rows, _keeper(owner, rows, now, db=db), db=db, wecom=wecom)
            handled += len(rows)
    return handled


def counts(*, session: Session) -> dict[str, int]:
    """Return how many alerts are in each status."""
    return QUEUE.counts(session=session)


def refresh_depth(*, session: Session) -> None:
    """Set the depth gauge from the database (before each scrape)."""
    QUEUE.refresh_depth(session=session)
