"""Resolve the customer of a batch of rows in a few set-based queries, not one per row."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.db.models import Customer

# Well under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters per statement.
IN_CHUNK = 5000

T = TypeVar("T")


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def customer_ids(
    external_userids: Iterable[str], unionids: Iterable[str], *, session: Session
) -> tuple[dict[str, int], dict[str, int]]:
    """Map the known external_userids and unionids among these to customer ids."""
    by_ext: dict[str, int] = {}
    by_union: dict[str, int] = {}
    ext = sorted(set(external_userids))
    for part in chunked(ext):
        rows = session.execute(
            select(Customer.external_userid, Customer.id).where(Customer.external_userid.in_(part))
        )
        by_ext.update((e, cid) for e, cid in rows)
    union = sorted(set(unionids))
    for part in chunked(union):
        rows = session.execute(
            select(Customer.unionid, func.min(Customer.id))
            .where(Customer.unionid.in_(part))
            .group_by(Customer.unionid)
        )
        by_union.update((u, cid) for u, cid in rows if u is not None)
    return by_ext, by_union


def attach_customers(rows: list[dict[str, Any]], *, session: Session) -> None:
    """Set `customer_id` on each row: by external_userid, else by unionid, else None."""
    by_ext, by_union = customer_ids(
        (r["external_userid"] for r in rows if r["external_userid"]),
        (r["unionid"] for r in rows if r["unionid"]),
        session=session,
    )
    for row in rows:
        ext, union = row["external_userid"], row["unionid"]
        cid = by_ext.get(ext) if ext else None
        if cid is None and union:
            cid = by_union.get(union)
        row["customer_id"] = cid
