"""Operational numbers for the console: the callback inbox, the outbox, WeCom's budgets.

The inbox's counts read only the statuses shown (an index range each), never the done rows
it keeps; the outbox's are its tallies (bot/tags/tallies.py); WeCom calls are read from the shared budget's slots (bot.wecom.budget),
which every call already books: nothing is added to a call.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from bot.config import LimitsSettings
from bot.db.models import InboxEvent, WeComBudgetSlot
from bot.states import InboxStatus, OutboxStatus
from bot.tags import tallies


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
class OutboxCounts:
    """The outbox by status: the open operations (pending, in flight, dead) everywhere, and
    every operation of a push's range (ids above `push_from`, done ones included)."""

    everywhere: dict[str, int]  # open statuses only
    push: dict[str, int]  # every status; all 0 when there is no range (push_from None)
    push_from: int | None


def outbox_counts(*, session: Session, push_from: int | None) -> OutboxCounts:
    """Count the open operations and a push's range by status, from the outbox's tallies.

    A sum over a few counter rows (bot/tags/tallies.py) whatever the outbox holds, where
    counting the operations read the whole pending push while one was being sent.
    """
    every = tallies.totals(session=session)
    everywhere = {str(s): every[s] for s in OPEN}
    if push_from is None:
        push = dict.fromkeys((str(s) for s in OutboxStatus), 0)
    else:
        push = every if push_from <= 0 else tallies.after(push_from, session=session)
    return OutboxCounts(everywhere, push, push_from)


@dataclass(frozen=True)
class QueueDepths:
    """Callbacks waiting or dead; WeCom writes queued or dead."""

    inbox_waiting: int  # pending and processing
    inbox_dead: int
    outbox_queued: int  # pending and in flight
    outbox_dead: int


def queue_depths(*, session: Session, outbox: OutboxCounts | None = None) -> QueueDepths:
    """Return the inbox's and the outbox's depth and dead letters (`outbox`: already counted)."""
    i, o = InboxStatus, OutboxStatus
    inbox = _count(InboxEvent.__table__, (i.PENDING, i.PROCESSING, i.DEAD), session=session)  # type: ignore[arg-type]
    out = (outbox or outbox_counts(session=session, push_from=None)).everywhere
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
