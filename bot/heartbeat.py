"""This process's heartbeat: a lease row renewed every second, so others see when it died.

Inbox events record the heartbeat id of the process that acknowledged or claimed them
(`owner`). While that row is fresh the events stay with their owner; once it is older
than STALE_SECONDS (a kill -9, a lost host) any process takes them over at once.

On one host no one needs to wait that long: the id names the host and the process, and
each beat drops the rows of processes on this host that no longer exist, so a process
restarted after a kill -9 takes over its predecessor's events with its first beat.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.orm import Session

from bot import leases
from bot.db import Database
from bot.db.models import Lease
from bot.db.types import utcnow

PREFIX = "beat:"
BEAT_SECONDS = 1.0
# Several missed beats: a process busy at 100 % CPU still beats within this.
STALE_SECONDS = 5.0
_FORGET_SECONDS = 3600.0  # rows of processes gone this long are deleted
_SWEEP_EVERY = 60  # beats


class Heartbeat:
    """This process's identity and how often it beat (one per process: a Runtime part)."""

    def __init__(self) -> None:
        self.host = f"{PREFIX}{socket.gethostname()[:30]}:"
        self.pid = os.getpid()
        self.id = f"{self.host}{self.pid}:{uuid.uuid4().hex[:12]}"
        self.beats = 0


def _exists(pid: int) -> bool:
    """Return whether a process with this id runs here (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc: trust kill()


def _dead_here(hb: Heartbeat, *, session: Session) -> list[str]:
    """Return the heartbeat rows of processes on this host that are gone."""
    names = session.scalars(
        select(Lease.name).where(Lease.name.startswith(hb.host), Lease.name != hb.id)
    )
    dead = []
    for name in names:
        pid = name[len(hb.host) :].split(":", 1)[0]
        if pid.isdigit() and int(pid) != hb.pid and not _exists(int(pid)):
            dead.append(name)
    return dead


def beat(*, db: Database, heartbeat: Heartbeat) -> None:
    """Renew this process's heartbeat row; now and then forget processes long gone."""
    hb = heartbeat
    # urgent: a beat queued behind a burst of writes would make this process look dead
    with db.write(urgent=True) as session:
        leases.try_acquire(hb.id, hb.id, STALE_SECONDS, session=session)
        dead = _dead_here(hb, session=session)
        if dead:
            session.execute(
                delete(Lease)
                .where(Lease.name.in_(dead))
                .execution_options(synchronize_session=False)
            )
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


def stop(*, db: Database, heartbeat: Heartbeat) -> None:
    """Drop this process's heartbeat and the leases it holds by it (the alert sender's).

    Others take its unfinished events, and its leases, at once instead of at expiry.
    """
    with db.write() as session:
        session.execute(
            delete(Lease)
            .where(Lease.owner == heartbeat.id)
            .execution_options(synchronize_session=False)
        )


def gone(owner: ColumnElement[str | None], now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """SQL: true when `owner` is NULL or its heartbeat is missing or stale."""
    return ~exists(select(Lease.name).where(Lease.name == owner, Lease.expires_at >= now))
