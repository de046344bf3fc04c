"""This process's heartbeat: a lease row renewed every second, so others see when it died.

Inbox events record the heartbeat id of the process that acknowledged or claimed them
(`owner`). While that row is fresh the events stay with their owner; once it is older
than STALE_SECONDS (a kill -9, a lost host) any process takes them over at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, select

from bot import leases, writelock
from bot.db.models import Lease
from bot.db.types import utcnow
from bot.runtime import Runtime

PREFIX = "beat:"
BEAT_SECONDS = 1.0
# Several missed beats: a process busy at 100 % CPU still beats within this.
STALE_SECONDS = 5.0
_FORGET_SECONDS = 3600.0  # rows of processes gone this long are deleted
_SWEEP_EVERY = 60  # beats


class Heartbeat:
    """This process's identity and whether its heartbeat is running."""

    def __init__(self) -> None:
        self.id = f"{PREFIX}{uuid.uuid4().hex[:20]}"
        self.beats = 0


def heartbeat_for(rt: Runtime) -> Heartbeat:
    """Return this process's heartbeat."""
    return rt.local(Heartbeat)


def beat(rt: Runtime) -> None:
    """Renew this process's heartbeat row; now and then forget processes long gone."""
    hb = heartbeat_for(rt)
    with writelock.begin(rt.db) as session:
        leases.try_acquire(session, hb.id, hb.id, STALE_SECONDS)
        if hb.beats % _SWEEP_EVERY == 0:
            session.execute(
                delete(Lease)
                .where(
                    Lease.name.startswith(PREFIX),
                    Lease.expires_at < utcnow() - timedelta(seconds=_FORGET_SECONDS),
                )
                .execution_options(synchronize_session=False)
            )
    hb.beats += 1


def stop(rt: Runtime) -> None:
    """Drop this process's heartbeat row: others take its unfinished events at once."""
    hb = heartbeat_for(rt)
    with writelock.begin(rt.db) as session:
        leases.release(session, hb.id, hb.id)


def gone(owner: ColumnElement[str | None], now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """SQL: true when `owner` is NULL or its heartbeat is missing or stale."""
    return ~exists(select(Lease.name).where(Lease.name == owner, Lease.expires_at >= now))
