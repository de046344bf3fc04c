"""Server-side web sessions: a random id in the cookie, its hash and the user in a row.

The row holds the role, the CSRF token and the times the idle and absolute expiries are
measured from; deleting the row signs the browser out wherever the cookie is.

Two kinds share the table: the operator console's (method token | wecom) and the staff
sidebar's (method sidebar, a member signed in by OAuth2). Every lookup names its kind, so
a sidebar session never opens the console, and the console's expiry never prunes the
sidebar's sessions.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from bot.console.access import Role, as_role
from bot.db.models import ConsoleSession

# Writing last_seen_at on every request would make each page view a write: once a minute
# is enough for an idle expiry measured in minutes.
TOUCH_EVERY = timedelta(seconds=60)

Kind = Literal["console", "sidebar"]
CONSOLE: Kind = "console"
SIDEBAR: Kind = "sidebar"
SIDEBAR_METHOD = "sidebar"  # the sign-in method of every sidebar session


def _of(kind: Kind) -> ColumnElement[bool]:
    if kind == SIDEBAR:
        return ConsoleSession.method == SIDEBAR_METHOD
    return ConsoleSession.method != SIDEBAR_METHOD


def kind_of(method: str) -> Kind:
    """Return the kind of session a sign-in method starts."""
    return SIDEBAR if method == SIDEBAR_METHOD else CONSOLE


@dataclass(frozen=True)
class Expiry:
    """How long a session lives without requests (idle) and at most (absolute)."""

    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True)
class WebSession:
    """A live session as a request sees it."""

    id_hash: str
    actor: str
    role: Role
    method: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime

    def needs_touch(self, now: datetime) -> bool:
        """Tell whether last_seen_at is old enough to be written again."""
        return now - self.last_seen_at >= TOUCH_EVERY


def hash_id(session_id: str) -> str:
    """Return the stored form of a session id (a leaked table signs nobody in)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def create(
    *, session: Session, actor: str, role: Role, method: str, now: datetime, expiry: Expiry
) -> tuple[str, WebSession]:
    """Start a session; return the id for the cookie and the session. Drops expired rows."""
    _prune(session=session, now=now, expiry=expiry, kind=kind_of(method))
    session_id = secrets.token_urlsafe(32)
    row = ConsoleSession(
        id_hash=hash_id(session_id),
        actor=actor,
        role=role,
        method=method,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    session.flush()
    return session_id, _view(row)


def current(
    session_id: str, *, session: Session, now: datetime, expiry: Expiry, kind: Kind = CONSOLE
) -> WebSession | None:
    """Return the live session of that kind with that id, or None (unknown, expired, other kind)."""
    if not session_id:
        return None
    row = session.get(ConsoleSession, hash_id(session_id))
    if row is None or kind_of(row.method) != kind:
        return None
    if now - row.last_seen_at > expiry.idle or now - row.created_at > expiry.absolute:
        return None
    return _view(row)


def touch(id_hash: str, *, session: Session, now: datetime) -> None:
    """Record a request in the session (its idle expiry starts again)."""
    session.execute(
        update(ConsoleSession).where(ConsoleSession.id_hash == id_hash).values(last_seen_at=now)
    )


def end(id_hash: str, *, session: Session) -> bool:
    """Delete a session; return whether it existed."""
    result = session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == id_hash))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def end_others(keep_hash: str, *, session: Session, kind: Kind = CONSOLE) -> int:
    """Delete every session of the kind but one; return how many ended."""
    result = session.execute(
        delete(ConsoleSession).where(ConsoleSession.id_hash != keep_hash, _of(kind))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_live(*, session: Session, now: datetime, expiry: Expiry, kind: Kind = CONSOLE) -> int:
    """Count the sessions of the kind that have not expired."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(ConsoleSession)
            .where(
                ConsoleSession.last_seen_at >= now - expiry.idle,
                ConsoleSession.created_at >= now - expiry.absolute,
                _of(kind),
            )
        )
        or 0
    )


def _prune(*, session: Session, now: datetime, expiry: Expiry, kind: Kind) -> None:
    session.execute(
        delete(ConsoleSession)
        .where(
            or_(
                ConsoleSession.last_seen_at < now - expiry.idle,
                ConsoleSession.created_at < now - expiry.absolute,
            ),
            _of(kind),
        )
        .execution_options(synchronize_session=False)
    )


def _view(row: ConsoleSession) -> WebSession:
    return WebSession(
        id_hash=row.id_hash,
        actor=row.actor,
        role=as_role(row.role),
        method=row.method,
        csrf_token=row.csrf_token,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
    )
