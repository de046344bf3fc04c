"""Named leases in the database: one holder at a time across processes, expiring on its own."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import Lease
from bot.db.types import utcnow


def try_acquire(session: Session, name: str, owner: str, ttl_seconds: float) -> bool:
    """Take or renew the lease `name` for `owner`; False when someone else holds it."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_seconds)
    # Renew our own lease, or take over an expired one, in one conditional UPDATE.
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.owner == owner) | (Lease.expires_at < now))
        .values(owner=owner, expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount:  # type: ignore[attr-defined]
        return True
    try:
        with session.begin_nested():
            session.execute(insert(Lease).values(name=name, owner=owner, expires_at=expires))
    except IntegrityError:
        return False  # someone else holds it (the row exists and is not expired)
    return True


def release(session: Session, name: str, owner: str) -> None:
    """Give the lease up if we hold it."""
    session.execute(
        delete(Lease)
        .where(Lease.name == name, Lease.owner == owner)
        .execution_options(synchronize_session=False)
    )


def new_owner() -> str:
    """Return a holder name unique to this call: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@contextmanager
def holding(
    db: Database, name: str, owner: str, ttl_seconds: float, *, wait: float = 0.0
) -> Iterator[bool]:
    """Try to take the lease for the block; yield whether we hold it, give it up after.

    With `wait`, try again every half second for up to that many seconds. Taking and
    giving up are short write transactions of their own: the block itself runs outside
    any transaction, free to call WeCom.
    """
    deadline = time.monotonic() + wait
    while True:
        with db.write() as session:
            held = try_acquire(session, name, owner, ttl_seconds)
        if held or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    try:
        yield held
    finally:
        if held:
            with db.write() as session:
                release(session, name, owner)
