"""Small queries several modules share."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session


def count_by_status(
    status: InstrumentedAttribute[str] | ColumnElement[str],
    statuses: Iterable[str],
    *,
    session: Session,
) -> dict[str, int]:
    """Return how many rows hold each status, with 0 for statuses that have none."""
    rows = session.execute(select(status, func.count()).group_by(status)).all()
    found = {value: int(n) for value, n in rows}
    return {value: found.get(value, 0) for value in statuses}
