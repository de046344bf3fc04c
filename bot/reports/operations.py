"""Operational numbers for the console: the callback inbox, the outbox, WeCom's budgets.

Counts read only the statuses shown (an index range each), never the done rows the
queues keep; WeCom calls are read from the shared budget's slots (bot.wecom.budget),
which every call already books: nothing is added to a call.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import Table, func, literal_column, select
from sqlalchemy.orm import Session

from bot.config import LimitsSettings
from bot.db.models import InboxEvent, OutboxOperation, WeComBudgetSlot
from bot.states import InboxStatus, OutboxStatus


def _count(table: Table, statuses: tuple[str, ...], *, session: Session) -> dict[str, int]:
    rows = session.execute(
        select(table.c.status, func.count())
        .where(table.c.status.in_(statuses))
        .group_by(table.c.status)
    ).all()
    found = {s: int(n) for s, n in rows}
    return {s: found.get(s, 0) for s in statuses}


OPEN = (OutboxStatus.PENDING, OutboxStatus.IN_FLIGHT, OutboxStatus.DEAD)


@dataclass(frozen=True)
class OpenOutbox:
    """The outbox's open operations (pending, in flight, dead) by status: all of them, and
    those after an operation id (a push's range). Done ones are never counted."""

    everywhere: dict[str, int]
    after: dict[str, int]
    after_id: int


def open_outbox(*, session: Session, after_id: int | None) -> OpenOutbox:
    """Count the open operations by status, and those with an id above `after_id`, in one
    pass over the claim index's open ranges (during a night's push they are a million:
    the 概览 page used to count them three times)."""
    op = OutboxOperation
    split = int(after_id or 0)
    # The id inlined (an int): PostgreSQL groups by an expression only when its text is
    # the selected one's, and two bound parameters are two expressions to it.
    later = op.id > literal_column(str(split))
    rows = session.execute(
        select(op.status, later, func.count()).where(op.status.in_(OPEN)).group_by(op.status, later)
    ).all()
    everywhere = dict.fromkeys((str(s) for s in OPEN), 0)
    after = dict(everywhere)
    for status, in_range, n in rows:
        everywhere[status] += int(n)
        if in_range:
            after[status] += int(n)
    return OpenOutbox(everywhere, after, split)


@dataclass(frozen=True)
class QueueDepths:
    """Callbacks waiting or dead; WeCom writes queued or dead."""

    inbox_waiting: int  # pending and processing
    inbox_dead: int
    outbox_queued: int  # pending and in flight
    outbox_dead: int


def queue_depths(*, session: Session, outbox: OpenOutbox | None = None) -> QueueDepths:
    """Return the inbox's and the outbox's depth and dead letters (`outbox`: already counted)."""
    i, o = InboxStatus, OutboxStatus
    inbox = _count(InboxEvent.__table__, (i.PENDING, i.PROCESSING, i.DEAD), session=session)  # type: ignore[arg-type]
    out = (outbox or open_outbox(session=session, after_id=None)).everywhere
    return QueueDepths(
        inbox[i.PENDING] + inbox[i.PROCESSING],
        inbox[i.DEAD],
        out[o.PENDING] + out[o.IN_FLIGHT],
        out[o.DEAD],
    )


@dataclass(frozen=True)
class ApiUsage:
    """One WeCom API's calls booked in the last minute and hour, against the budgets."""

    api: str
    minute: int
    hour: int
    minute_budget: int
    hour_budget: int

    @property
    def minute_share(self) -> float:
        return self.minute / self.minute_budget

    @property
    def hour_share(self) -> float:
        return self.hour / self.hour_budget


def wecom_usage(
    *, session: Session, corp_id: str, limits: LimitsSettings, now: float | None = None
) -> tuple[ApiUsage, ...]:
    """Return each API's calls in the last 60 s and 60 min, busiest first.

    The budget books calls in 1 s slots for the minute and 1 min slots for the hour
    (bot.wecom.budget): the last 60 of each are the window.
    """
    t = time.time() if now is None else now
    minute_from = math.floor(t) - 59
    hour_from = math.floor(t / 60) - 59
    s = WeComBudgetSlot
    rows = session.execute(
        select(s.api, s.scale, func.sum(s.interactive + s.bulk))
        .where(
            s.corp_id == corp_id,
            ((s.scale == "minute") & (s.slot >= minute_from))
            | ((s.scale == "hour") & (s.slot >= hour_from)),
        )
        .group_by(s.api, s.scale)
    ).all()
    used: dict[str, dict[str, int]] = {}
    for api, scale, n in rows:
        used.setdefault(api, {})[scale] = int(n or 0)
    out = [
        ApiUsage(
            api,
            u.get("minute", 0),
            u.get("hour", 0),
            limits.calls_per_minute,
            limits.calls_per_hour,
        )
        for api, u in used.items()
    ]
    return tuple(sorted(out, key=lambda a: (-a.minute_share, -a.hour_share, a.api)))
