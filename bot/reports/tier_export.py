"""A tier's members as .xlsx: external_userid, name, staff, tier, since, the rules' metrics.

Members are read in pages by customer id (a keyset, so each page costs its own rows) and
written with openpyxl's write-only workbook, which keeps one row in memory, not the sheet.
The metric values are those the re-tier recorded on the customer's move into the tier
(`tier_transitions.metrics`): the values that put them there, as of their `since`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from bot.db.models import Customer, FollowRelation, Staff, TierAssignment, TierTransition
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


def _cell(sheet: Any, value: Any) -> Any:
    """Return the value, or a cell typed as text when openpyxl would take it for a formula.

    Customer names are untrusted: "=HYPERLINK(...)" must stay text, exactly as written.
    """
    if value is None or isinstance(value, bool | int | float | datetime):
        return value
    text = str(value)
    if not text.startswith("="):
        return text
    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "s"
    return cell


def write_xlsx(
    rows: Iterator[Member], metrics: Sequence[str], out: IO[bytes], *, tz: ZoneInfo, title: str
) -> int:
    """Write the members as one sheet (header, then a row each) to `out`; return the rows."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31] or "members")
    header = []
    for label in (*FIXED_HEADER, *metrics):
        cell = WriteOnlyCell(sheet, value=label)
        cell.font = Font(bold=True)
        header.append(cell)
    sheet.append(header)
    count = 0
    for m in rows:
        since = m.since.astimezone(tz).replace(tzinfo=None)  # Excel has no zones: local time
        sheet.append(
            [
                _cell(sheet, m.external_userid),
                _cell(sheet, m.name),
                _cell(sheet, " / ".join(m.staff)),
                _cell(sheet, m.tier),
                since,
                *(_cell(sheet, m.metrics.get(k)) for k in metrics),
            ]
        )
        count += 1
    book.save(out)
    return count
