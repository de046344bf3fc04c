"""Customers touched by fresh data: recorded with the ingest, re-tiered in batches soon after.

The ingest writes them in its own transaction (so a crash never loses one); the touched
re-tier (jobs/tiering.py) takes those that have been quiet for a few seconds — a debounce:
an import of many batches is re-tiered once, not once per batch — and forgets them once
re-tiered, keeping any touched again meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db.models import TouchedCustomer
from bot.db.types import utcnow

TOUCHED: Table = TouchedCustomer.__table__  # type: ignore[assignment]
QUIET = timedelta(seconds=5)  # touched this long ago without a new touch: ready


def _upsert(insert: Any) -> Any:
    return insert.on_conflict_do_update(
        index_elements=[TOUCHED.c.customer_id], set_={"touched_at": insert.excluded.touched_at}
    )


# Built once: every scan touches its customer, and building the statement per call cost
# more CPU than running it.
_TOUCH = {
    "postgresql": _upsert(postgresql.insert(TOUCHED)),
    "sqlite": _upsert(sqlite.insert(TOUCHED)),
}


def touch(customer_ids: Iterable[int | None], *, session: Session) -> int:
    """Mark customers as touched by fresh data (in the caller's ingest transaction)."""
    ids = sorted({int(c) for c in customer_ids if c is not None})
    if not ids:
        return 0
    stmt = _TOUCH[session.get_bind().dialect.name]
    now = utcnow()
    rows = [{"customer_id": c, "touched_at": now} for c in ids]
    session.execute(stmt, rows[0] if len(rows) == 1 else rows)  # one row: no executemany
    return len(ids)


def untouch(customer_ids: Sequence[int], *, session: Session, taken_at: datetime) -> None:
    """Forget touched customers re-tiered from data as of `taken_at` (later touches stay)."""
    if customer_ids:
        session.execute(
            delete(TOUCHED).where(
                TOUCHED.c.customer_id.in_(list(customer_ids)), TOUCHED.c.touched_at <= taken_at
            )
        )


def ready(*, session: Session, limit: int, quiet: timedelta = QUIET) -> tuple[list[int], datetime]:
    """Return up to `limit` touched customers quiet for `quiet`, and the time taken at."""
    now = utcnow()
    ids = session.scalars(
        select(TOUCHED.c.customer_id)
        .where(TOUCHED.c.touched_at <= now - quiet)
        .order_by(TOUCHED.c.touched_at, TOUCHED.c.customer_id)
        .limit(limit)
    ).all()
    return [int(i) for i in ids], now


def pending(*, session: Session, quiet: timedelta = QUIET) -> int:
    """Return how many touched customers are ready."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(TOUCHED)
            .where(TOUCHED.c.touched_at <= utcnow() - quiet)
        )
        or 0
    )


def untouch_all(*, session: Session, taken_at: datetime) -> None:
    """Forget every customer touched up to `taken_at` (a full run re-tiered them all)."""
    session.execute(delete(TOUCHED).where(TOUCHED.c.touched_at <= taken_at))
