"""Failed authentications per (scope, client address), shared by every process on the database.

`tagbot serve --workers N` runs N processes: counted in memory, a guesser would get N
times the attempts. Only a failure writes (one row, and the rows past the window go);
checking an address is one indexed read, so a valid request never waits for a write.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from bot.db.models import AuthFailure

ADDRESS_MAX = 64  # the column; any IP address fits


def wait(
    scope: str, address: str, *, session: Session, limit: int, window: float, now: float
) -> float:
    """Return the seconds until `address` may try again in `scope` (0: it may now)."""
    recent = session.scalars(
        select(AuthFailure.at)
        .where(
            AuthFailure.scope == scope,
            AuthFailure.address == address[:ADDRESS_MAX],
            AuthFailure.at > now - window,
        )
        .order_by(AuthFailure.at.desc())
        .limit(limit)
    ).all()
    if len(recent) < limit:
        return 0.0
    return max(0.0, recent[-1] + window - now)  # when the limit-th latest leaves the window


def record(scope: str, address: str, *, session: Session, window: float, now: float) -> None:
    """Count one failure of `address` in `scope`; forget every failure past the window."""
    session.execute(
        delete(AuthFailure)
        .where(AuthFailure.at <= now - window)
        .execution_options(synchronize_session=False)
    )
    session.execute(insert(AuthFailure).values(scope=scope, address=address[:ADDRESS_MAX], at=now))
