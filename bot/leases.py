"""Named leases in the database: one holder at a time across processes, expiring on its own."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import Lease
from bot.db.types import utcnow
from bot.errors import TagbotError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class LeaseLostError(TagbotError):
    """Another holder took the lease over (or it was given up) while we worked under it."""


def try_acquire(
    name: str, owner: str, ttl_seconds: float, *, session: Session, now: datetime | None = None
) -> bool:
    """Take or renew the lease `name` for `owner`; False when someone else holds it."""
    now = now or utcnow()
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


def renew(
    name: str, owner: str, ttl_seconds: float, *, session: Session, now: datetime | None = None
) -> bool:
    """Extend a lease `owner` holds; False when another took it over or it is gone.

    Unlike try_acquire this never takes the lease afresh: a row still naming `owner`
    means no one else held it since, even if it lapsed meanwhile.
    """
    expires = (now or utcnow()) + timedelta(seconds=ttl_seconds)
    renewed = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.owner == owner)
        .values(expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    return bool(renewed.rowcount)  # type: ignore[attr-defined]


def release(name: str, owner: str, *, session: Session) -> None:
    """Give the lease up if we hold it."""
    session.execute(
        delete(Lease)
        .where(Lease.name == name, Lease.owner == owner)
        .execution_options(synchronize_session=False)
    )


def purge_expired(prefix: str, *, session: Session, now: datetime | None = None) -> int:
    """Delete the expired leases whose names start with `prefix` (one-off names pile up)."""
    gone = session.execute(
        delete(Lease)
        .where(Lease.name.startswith(prefix, autoescape=True), Lease.expires_at < (now or utcnow()))
        .execution_options(synchronize_session=False)
    )
    return int(gone.rowcount)  # type: ignore[attr-defined]


def _pid_namespace() -> str:
    """The inode of this process's PID namespace ("0" where there is none to read)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


_PIDNS = _pid_namespace()


def new_owner() -> str:
    """Return a holder name unique to this call: host, process, a random suffix, PID namespace."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}:{_PIDNS}"


def pid_namespace() -> str:
    """This process's PID namespace, as new_owner writes it ("0": none could be read)."""
    return _PIDNS


def exited_here(pid: int, pidns: str) -> bool:
    """Tell whether process `pid` of PID namespace `pidns`, on this host, has exited.

    The caller has matched the host. Only a process of this PID namespace can be checked
    (two containers may share a host name, never a namespace); a zombie has exited; a PID
    reused since counts as alive, so its claims wait for their TTL as before.
    """
    if pidns in ("0", "") or pidns != _PIDNS or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive under another user
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False  # no /proc: trust kill()


def died_here(owner: str) -> bool:
    """Tell whether `owner` (new_owner's form) is a process of this machine that has exited."""
    parts = owner.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    return exited_here(int(parts[1]), parts[3])


def take_from_dead(
    name: str, owner: str, ttl_seconds: float, *, session: Session, now: datetime | None = None
) -> bool:
    """Take the lease `name` when its holder was a process of this machine that died."""
    holder = session.scalar(select(Lease.owner).where(Lease.name == name))
    if holder is None or not died_here(holder):
        return False
    now = now or utcnow()
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.owner == holder)
        .values(owner=owner, expires_at=now + timedelta(seconds=ttl_seconds))
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount:  # type: ignore[attr-defined]
        log.warning(
            "lease %s taken over from %s, a process of this machine that died", name, holder
        )
        return True
    return False


@dataclass
class Held:
    """The outcome of `holding()`: true while held; `renew()` extends it during long work."""

    db: Database
    name: str
    owner: str
    ttl_seconds: float
    clock: Clock
    held: bool = False

    def __bool__(self) -> bool:
        return self.held

    def renew(self) -> None:
        """Extend the lease by its TTL from now; raise LeaseLostError if another took it."""
        with self.db.write() as session:
            self.held = renew(
                self.name, self.owner, self.ttl_seconds, session=session, now=self.clock()
            )
        if not self.held:
            raise LeaseLostError(f"lease {self.name} was taken over from {self.owner}")


@contextmanager
def holding(
    db: Database,
    name: str,
    owner: str,
    ttl_seconds: float,
    *,
    wait: float = 0.0,
    clock: Clock = utcnow,
) -> Iterator[Held]:
    """Try to take the lease for the block; yield whether we hold it, give it up after.

    With `wait`, try again every half second for up to that many seconds. Taking and
    giving up are short write transactions of their own: the block itself runs outside
    any transaction, free to call WeCom. Work that may outlast the TTL calls
    `held.renew()` as it goes, and stops when that raises LeaseLostError.
    """
    held = Held(db, name, owner, ttl_seconds, clock)
    deadline = time.monotonic() + wait
    while True:
        with db.write() as session:
            now = clock()
            held.held = try_acquire(name, owner, ttl_seconds, session=session, now=now)
            if not held.held:
                held.held = take_from_dead(name, owner, ttl_seconds, session=session, now=now)
        if held or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    try:
        yield held
    finally:
        if held:
            with db.write() as session:
                release(name, owner, session=session)
