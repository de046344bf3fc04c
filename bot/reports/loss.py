"""The 流失 page: 流失预警 members now, relations the customer ended, relations staff ended.

Three separate lists, as operators expect (客户删员工 and 员工删客户 are different events),
each newest first and capped for the page; the .xlsx export holds every row.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

import bot.reports.campaign_definitions  # noqa: F401  (registers the ⓘ definitions)
from bot.config import TieringSettings
from bot.db.models import Customer, FollowRelation, Order, Staff, TierAssignment
from bot.reports import channel_stats, tier_movement
from bot.reports.channel_stats import ALL
from bot.reports.overview import TierPick, churn_tier, value_tier

SHOWN = 200  # rows per list on the page; the export has them all
TREND_DAYS = 30
BY_CUSTOMER = "del_follow_user"
BY_STAFF = "del_external_contact"


@dataclass(frozen=True)
class AtRisk:
    """A 流失预警 member: since when, their value tier, last order, the staff who follow them."""

    external_userid: str
    name: str
    since: datetime
    value_tier: str | None
    last_order: datetime | None
    staff: tuple[str, ...]


@dataclass(frozen=True)
class LostRelation:
    """One ended relation: who, with which staff member, added and lost when."""

    external_userid: str
    name: str
    staff: str
    added_at: datetime | None
    lost_at: datetime | None

    @property
    def retention_days(self) -> int | None:
        """留存天数: whole days from the add to the loss."""
        if self.added_at is None or self.lost_at is None:
            return None
        return max(0, (self.lost_at - self.added_at).days)


@dataclass(frozen=True)
class LossTrendDay:
    day: date
    lost_by_customer: int
    lost_by_staff: int
    churn_warning: int


@dataclass(frozen=True)
class LossView:
    """Everything the 流失 page shows."""

    churn: TierPick | None
    value: TierPick | None
    at_risk: tuple[AtRisk, ...]
    at_risk_total: int
    by_customer: tuple[LostRelation, ...]
    by_customer_total: int
    by_staff: tuple[LostRelation, ...]
    by_staff_total: int
    trend: tuple[LossTrendDay, ...]
    rolled_up: bool


def _staff_name(names: Mapping[str, str], userid: str, stored: str) -> str:
    return names.get(userid.lower()) or stored or userid


def _at_risk_query(churn: TierPick, value: TierPick | None) -> Select[int, str, str, datetime, str]:
    risk = aliased(TierAssignment)
    worth = aliased(TierAssignment)
    return (
        select(
            Customer.id,
            Customer.external_userid,
            Customer.name,
            risk.since,
            worth.tier,
        )
        .select_from(risk)
        .join(Customer, Customer.id == risk.customer_id)
        .outerjoin(
            worth,
            # No value dimension configured: "" matches no row, the column stays empty.
            (worth.customer_id == risk.customer_id)
            & (worth.dimension == (value.dimension if value else "")),
        )
        .where(risk.dimension == churn.dimension, risk.tier == churn.tier)
        # Newest entrants first; a run gives its whole intake one `since`, so ties are
        # the rule: the newest customer first among them. Both keys are the index's
        # (ix_tier_assignments_tier_since), read backwards: the page costs its rows.
        .order_by(risk.since.desc(), risk.customer_id.desc())
    )


def _followers(
    session: Session, ids: Sequence[int], names: Mapping[str, str]
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for chunk in (ids[i : i + 1000] for i in range(0, len(ids), 1000)):
        rows = session.execute(
            select(FollowRelation.customer_id, Staff.userid, Staff.name)
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .where(FollowRelation.customer_id.in_(chunk), FollowRelation.status == "active")
            .order_by(FollowRelation.customer_id, Staff.userid)
        ).all()
        for cid, userid, stored in rows:
            out[cid].append(_staff_name(names, userid, stored))
    return out


def _members(churn: TierPick, *, session: Session) -> int:
    """How many hold the tier as of the latest run (the ⓘ's definition): the size that run
    wrote (one row; only a run writes tier_assignments, in the transaction that writes its
    sizes), counted from the assignments only when no run has measured the dimension."""
    sizes = tier_movement.tier_sizes(churn.dimension, session=session)
    if sizes.run_id is not None:
        return sizes.of(churn.tier)
    return int(
        session.scalar(
            select(func.count())
            .select_from(TierAssignment)
            .where(TierAssignment.dimension == churn.dimension, TierAssignment.tier == churn.tier)
        )
        or 0
    )


def at_risk(
    tiering: TieringSettings,
    *,
    session: Session,
    staff_names: Mapping[str, str] | None = None,
    limit: int | None = SHOWN,
) -> tuple[list[AtRisk], int]:
    """Return the 流失预警 members (newest first, up to `limit`) and how many there are."""
    churn = churn_tier(tiering)
    if churn is None:
        return [], 0
    total = _members(churn, session=session)
    query = _at_risk_query(churn, value_tier(tiering))
    rows = session.execute(query if limit is None else query.limit(limit)).all()
    ids = [r[0] for r in rows]
    followers = _followers(session, ids, staff_names or {})
    last = _last_orders(session, ids)
    return [
        AtRisk(ext, name, since, tier, last.get(cid), tuple(followers.get(cid, ())))
        for cid, ext, name, since, tier in rows
    ], total


def _last_orders(session: Session, ids: Sequence[int]) -> dict[int, datetime]:
    """Each customer's last paid order, for the rows shown only (never over every order)."""
    out: dict[int, datetime] = {}
    for chunk in (ids[i : i + 1000] for i in range(0, len(ids), 1000)):
        for cid, at in session.execute(
            select(Order.customer_id, func.max(Order.paid_at))
            .where(Order.customer_id.in_(chunk), Order.status == "paid")
            .group_by(Order.customer_id)
        ):
            if cid is not None:  # the IN keeps only these customers' orders
                out[int(cid)] = at
    return out


def _lost_query(
    reason: str,
) -> Select[str, str, str, str, datetime | None, datetime | None]:
    return (
        select(
            Customer.external_userid,
            Customer.name,
            Staff.userid,
            Staff.name,
            FollowRelation.added_at,
            FollowRelation.lost_at,
        )
        .select_from(FollowRelation)
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(FollowRelation.status == "lost", FollowRelation.lost_reason == reason)
        .order_by(FollowRelation.lost_at.desc(), FollowRelation.id.desc())
    )


def lost_relations(
    reason: str,
    *,
    session: Session,
    staff_names: Mapping[str, str] | None = None,
    limit: int | None = SHOWN,
) -> tuple[list[LostRelation], int]:
    """Return the relations ended for `reason` (newest first, up to `limit`) and their count."""
    total = int(
        session.scalar(
            select(func.count())
            .select_from(FollowRelation)
            .where(FollowRelation.status == "lost", FollowRelation.lost_reason == reason)
        )
        or 0
    )
    query = _lost_query(reason)
    names = staff_names or {}
    rows = session.execute(query if limit is None else query.limit(limit)).all()
    return [
        LostRelation(ext, name, _staff_name(names, userid, stored), added, lost)
        for ext, name, userid, stored, added, lost in rows
    ], total


def loss_view(
    tiering: TieringSettings,
    *,
    session: Session,
    today: date,
    staff_names: Mapping[str, str] | None = None,
) -> LossView:
    """Return the 流失 page's lists and its 30-day trend."""
    risky, risky_total = at_risk(tiering, session=session, staff_names=staff_names)
    mine, mine_total = lost_relations(BY_CUSTOMER, session=session, staff_names=staff_names)
    theirs, theirs_total = lost_relations(BY_STAFF, session=session, staff_names=staff_names)
    trend = channel_stats.channel_trend(ALL, session=session, today=today, days=TREND_DAYS)
    churn = churn_tier(tiering)
    sizes = (
        tier_movement.size_series(
            churn.dimension, session=session, today=today, days=TREND_DAYS, tiers=(churn.tier,)
        ).sizes[churn.tier]
        if churn
        else (0,) * TREND_DAYS
    )
    return LossView(
        churn=churn,
        value=value_tier(tiering),
        at_risk=tuple(risky),
        at_risk_total=risky_total,
        by_customer=tuple(mine),
        by_customer_total=mine_total,
        by_staff=tuple(theirs),
        by_staff_total=theirs_total,
        trend=tuple(
            LossTrendDay(d.day, d.lost_by_customer, d.lost_by_staff, size)
            for d, size in zip(trend.days, sizes, strict=True)
        ),
        rolled_up=channel_stats.computed_at(session=session) is not None,
    )


def _local(value: datetime | None, tz: Any) -> datetime | None:
    """A naive local time for a spreadsheet cell (Excel has no time zones)."""
    return None if value is None else value.astimezone(tz).replace(tzinfo=None)


def _sheets(
    tiering: TieringSettings, *, session: Session, tz: Any, staff_names: Mapping[str, str]
) -> Iterator[tuple[str, list[str], Iterator[list[Any]]]]:
    risky, _ = at_risk(tiering, session=session, staff_names=staff_names, limit=None)
    yield (
        "流失预警",
        ["external_userid", "客户", "进入时间", "价值层级", "最近下单", "跟进员工"],
        (
            [
                r.external_userid,
                r.name,
                _local(r.since, tz),
                r.value_tier or "",
                _local(r.last_order, tz),
                "、".join(r.staff),
            ]
            for r in risky
        ),
    )
    for title, reason, staff_label in (
        ("已流失·客户删员工", BY_CUSTOMER, "被删员工"),
        ("员工删客户", BY_STAFF, "操作员工"),
    ):
        rows, _ = lost_relations(reason, session=session, staff_names=staff_names, limit=None)
        yield (
            title,
            ["external_userid", "客户", staff_label, "添加时间", "流失时间", "留存天数"],
            (
                [
                    r.external_userid,
                    r.name,
                    r.staff,
                    _local(r.added_at, tz),
                    _local(r.lost_at, tz),
                    r.retention_days,
                ]
                for r in rows
            ),
        )


def _cell(value: Any) -> Any:
    # A name from WeCom starting with = + - @ would be a formula in Excel: keep it text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def loss_workbook(
    tiering: TieringSettings,
    *,
    session: Session,
    tz: Any,
    staff_names: Mapping[str, str] | None = None,
) -> bytes:
    """Return the three loss lists as an .xlsx workbook, one sheet each, every row."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for title, header, rows in _sheets(
        tiering, session=session, tz=tz, staff_names=staff_names or {}
    ):
        sheet = book.create_sheet(title)
        sheet.append(header)
        for row in rows:
            sheet.append([_cell(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
