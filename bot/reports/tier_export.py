"""A tier's members as .xlsx: external_userid, name, staff, tier, since, the rules' metrics.

Members are read in pages by customer id (a keyset, so each page costs its own rows) and
streamed to the client as they are written (`xlsx_stream`): memory holds one page, the
first bytes leave before the rows are read, and a row costs its XML, not a cell object.
The metric values are those the re-tier recorded on the customer's move into the tier
(`tier_transitions.metrics`): the values that put them there, as of their `since`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import Customer, FollowRelation, Staff, TierAssignment, TierTransition
from bot.reports import xlsx_stream
from bot.rules import Dimension

PAGE = 2000
FIXED_HEADER = ("external_userid", "name", "staff", "tier", "since")


@dataclass(frozen=True)
class Member:
    """One customer holding the tier."""

    external_userid: str
    name: str
    staff: tuple[str, ...]
    tier: str
    since: datetime
    metrics: dict[str, Any]


def metric_names(dim: Dimension) -> tuple[str, ...]:
    """Return the metrics the dimension's rules read, sorted (the export's last columns)."""
    return tuple(sorted(dim.names_used()))


def tier_exists(dimension: str, tier: str, *, session: Session) -> bool:
    """Whether any customer holds `tier` in `dimension` now."""
    return bool(
        session.scalar(
            select(
                exists().where(TierAssignment.dimension == dimension, TierAssignment.tier == tier)
            )
        )
    )


def members(
    dimension: str,
    tier: str,
    *,
    session: Session,
    staff_names: Mapping[str, str] | None = None,
    page: int = PAGE,
) -> Iterator[Member]:
    """Yield the tier's members by customer id, with their staff and recorded metrics."""
    names = staff_names or {}
    after = 0
    while True:
        rows = session.execute(
            select(
                TierAssignment.customer_id,
                TierAssignment.since,
                Customer.external_userid,
                Customer.name,
            )
            .join(Customer, Customer.id == TierAssignment.customer_id)
            .where(
                TierAssignment.dimension == dimension,
                TierAssignment.tier == tier,
                TierAssignment.customer_id > after,
            )
            .order_by(TierAssignment.customer_id)
            .limit(page)
        ).all()
        if not rows:
            return
        ids = [int(r[0]) for r in rows]
        staff = _staff(ids, session=session, names=names)
        metrics = _metrics(ids, dimension, tier, session=session)
        for cid, since, ext, name in rows:
            yield Member(ext, name, staff.get(cid, ()), tier, since, metrics.get(cid, {}))
        after = ids[-1]


def _staff(
    ids: list[int], *, session: Session, names: Mapping[str, str]
) -> dict[int, tuple[str, ...]]:
    found: dict[int, list[str]] = {}
    for cid, userid, name in session.execute(
        select(FollowRelation.customer_id, Staff.userid, Staff.name)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(FollowRelation.customer_id.in_(ids), FollowRelation.status == "active")
        .order_by(FollowRelation.customer_id, FollowRelation.id)
    ):
        found.setdefault(cid, []).append(names.get(userid.lower()) or name or userid)
    return {cid: tuple(v) for cid, v in found.items()}


def _metrics(
    ids: list[int], dimension: str, tier: str, *, session: Session
) -> dict[int, dict[str, Any]]:
    """Return each customer's metrics recorded on their latest move into `tier`."""
    found: dict[int, dict[str, Any]] = {}
    for cid, values in session.execute(
        select(TierTransition.customer_id, TierTransition.metrics)
        .where(
            TierTransition.customer_id.in_(ids),
            TierTransition.dimension == dimension,
            TierTransition.to_tier == tier,
        )
        .order_by(TierTransition.customer_id, TierTransition.at, TierTransition.id)
    ):
        found[cid] = dict(values or {})  # the latest move wins
    return found


def export_rows(
    rows: Iterator[Member], metrics: Sequence[str], *, tz: ZoneInfo
) -> Iterator[tuple[Any, ...]]:
    """Yield each member as the sheet's row (since in local time: Excel has no zones)."""
    for m in rows:
        yield (
            m.external_userid,
            m.name,
            " / ".join(m.staff),
            m.tier,
            m.since.astimezone(tz).replace(tzinfo=None),
            *(m.metrics.get(k) for k in metrics),
        )


def stream_xlsx(
    db: Database,
    dimension: str,
    tier: str,
    metrics: Sequence[str],
    *,
    tz: ZoneInfo,
    staff_names: Mapping[str, str] | None = None,
) -> Iterator[bytes]:
    """Yield the tier's members as .xlsx bytes, read page by page as the bytes are sent.

    The read session lives as long as the download: the rows are read as the client takes
    the bytes (`xlsx_stream`), so memory holds one page whatever the tier's size.
    """
    with db.read() as session:
        rows = members(dimension, tier, session=session, staff_names=staff_names)
        yield from xlsx_stream.stream_xlsx(
            tier, (*FIXED_HEADER, *metrics), export_rows(rows, metrics, tz=tz)
        )
