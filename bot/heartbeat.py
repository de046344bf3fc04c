"""This process's heartbeat: a lease row renewed every second, so others see when it died.

Inbox events record the heartbeat id of the process that acknowledged or claimed them
(`owner`). While that row is fresh the events stay with their owner; once it is older
than STALE_SECONDS (a kill -9, a lost host) any process takes them over at once.

On one host no one needs to wait that long: the id names the host, the process and its
PID namespace, and each beat drops the rows of processes of this host and namespace that
no longer exist, so a process restarted after a kill -9 takes over its predecessor's
events (and its outbox claims, bot/tags/outbox.py) with its first beat. A process of
another host or container is never judged from here: its rows wait to go stale.
"""

from __future__ import annotations

import hashlib
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


def _host_name() -> str:
    """This host's name in 30 characters at most: a longer one is cut and given its hash,
    so two hosts whose names share a beginning never judge each other's processes."""
    host = socket.gethostname()
    if len(host) <= 30:
        return host
    return f"{host[:21]}~{hashlib.sha256(host.encode()).hexdigest()[:8]}"


class Heartbeat:
    """This process's identity and how often it beat (one per process: a Runtime part)."""

    def __init__(self) -> None:
        self.host = f"{PREFIX}{_host_name()}:"
        self.pid = os.getpid()
        # host:pid:suffix:PID namespace, within Lease.name's 64 characters
        self.id = f"{self.host}{self.pid}:{uuid.uuid4().hex[:8]}:{leases.pid_namespace()}"
        self.beats = 0


def _dead_here(hb: Heartbeat, *, session: Session) -> list[str]:
    """Return the heartbeat rows of processes of this host and PID namespace that are gone."""
    names = session.scalars(
        select(Lease.name).where(
            Lease.name.startswith(hb.host, autoescape=True), Lease.name != hb.id
        )
    )
    dead = []
    for name in names:
        parts = name[len(hb.host) :].split(":")
        # pid:suffix:namespace; a row written before the namespace was in the id goes stale
        if len(parts) == 3 and parts[0].isdigit() and leases.exited_here(int(parts[0]), parts[2]):
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


def dropped(owner: ColumnElement[str | None]) -> ColumnElement[bool]:
    """SQL: true when `owner` is set and its heartbeat row is gone (not merely stale).

    The row goes when its process stops, or when a process of the same host and PID
    namespace finds it exited; a process cut off from the database keeps its row.
    """
    return owner.is_not(None) & ~exists(select(Lease.name).where(Lease.name == owner))
