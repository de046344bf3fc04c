"""The 概览 page's numbers, read in one place with typed results.

Today's counts are cheap indexed queries over the relations table; the reports services
(per-run tier sizes, daily channel counts) replace them as they arrive, behind the same
dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.config import DimensionSettings
from bot.db.models import Channel, Customer, FollowRelation, RetierRun, Staff, TierAssignment

CUSTOMER_DELETED_STAFF = "del_follow_user"  # 客户删除员工
STAFF_DELETED_CUSTOMER = "del_external_contact"  # 员工删除客户
RECENT_ADDS = 8


@dataclass(frozen=True)
class DayCounts:
    """Customers added and lost in one local day (each customer once per count)."""

    day: date
    added: int
    lost_by_customer: int  # the customer deleted the staff member
    lost_by_staff: int  # the staff member deleted the customer
    lost_other: int  # seen gone by a sync, transferred away, ...

    @property
    def lost(self) -> int:
        return self.lost_by_customer + self.lost_by_staff + self.lost_other

    @property
    def net(self) -> int:
        return self.added - self.lost


@dataclass(frozen=True)
class TierSize:
    """How many customers hold one tier of a dimension now."""

    tier: str
    customers: int


@dataclass(frozen=True)
class DimensionSizes:
    """A dimension's tiers in config order, then any tier no longer configured."""

    dimension: str
    tag_group: str  # its WeCom tag group: the Chinese name operators know it by
    tiers: tuple[TierSize, ...]

    @property
    def total(self) -> int:
        return sum(t.customers for t in self.tiers)


@dataclass(frozen=True)
class LastRetier:
    """The latest finished re-tier run."""

    finished_at: datetime
    seconds: float
    customers: int
    transitions: int
    scope: str


@dataclass(frozen=True)
class RecentAdd:
    """A recently added relation: who, through which channel, to which staff member."""

    customer_name: str
    external_userid: str
    staff_name: str
    channel_name: str
    added_at: datetime


@dataclass(frozen=True)
class Overview:
    """Everything the 概览 page shows."""

    generated_at: datetime
    customers_total: int
    today: DayCounts
    yesterday: DayCounts
    dimensions: tuple[DimensionSizes, ...]
    last_retier: LastRetier | None
    recent_adds: tuple[RecentAdd, ...]
    staff_count: int
    channel_count: int

    @property
    def empty(self) -> bool:
        """A fresh install: no customer, no staff member, no channel yet."""
        return self.customers_total == 0 and not self.recent_adds and self.staff_count == 0


def load(
    session: Session,
    *,
    now: datetime,
    tz: ZoneInfo,
    dimensions: tuple[DimensionSettings, ...],
    staff_names: Mapping[str, str] | None = None,
) -> Overview:
    """Read the overview as of `now`; days are local days in `tz`.

    `staff_names` are the operator's display names by lower-case userid (`[staff]`).
    """
    today = now.astimezone(tz).date()
    return Overview(
        generated_at=now,
        customers_total=_customers_total(session),
        today=day_counts(session, today, tz=tz),
        yesterday=day_counts(session, today - timedelta(days=1), tz=tz),
        dimensions=tier_sizes(session, dimensions),
        last_retier=_last_retier(session),
        recent_adds=_recent_adds(session, staff_names or {}),
        staff_count=int(session.scalar(select(func.count()).select_from(Staff)) or 0),
        channel_count=int(session.scalar(select(func.count()).select_from(Channel)) or 0),
    )


def _customers_total(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count(func.distinct(FollowRelation.customer_id))).where(
                FollowRelation.status == "active"
            )
        )
        or 0
    )


def _day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


def day_counts(session: Session, day: date, *, tz: ZoneInfo) -> DayCounts:
    """Count the customers added and lost on a local day, losses by who deleted whom."""
    start, end = _day_bounds(day, tz)
    added = session.scalar(
        select(func.count(func.distinct(FollowRelation.customer_id))).where(
            FollowRelation.added_at >= start, FollowRelation.added_at < end
        )
    )
    lost = dict(
        session.execute(
            select(
                FollowRelation.lost_reason, func.count(func.distinct(FollowRelation.customer_id))
            )
            .where(FollowRelation.lost_at >= start, FollowRelation.lost_at < end)
            .group_by(FollowRelation.lost_reason)
        ).all()
    )
    by_customer = int(lost.pop(CUSTOMER_DELETED_STAFF, 0))
    by_staff = int(lost.pop(STAFF_DELETED_CUSTOMER, 0))
    return DayCounts(
        day=day,
        added=int(added or 0),
        lost_by_customer=by_customer,
        lost_by_staff=by_staff,
        lost_other=sum(int(n) for n in lost.values()),
    )


def tier_sizes(
    session: Session, dimensions: tuple[DimensionSettings, ...]
) -> tuple[DimensionSizes, ...]:
    """Count the customers per tier of every configured dimension."""
    counts: dict[str, dict[str, int]] = {}
    for dimension, tier, n in session.execute(
        select(TierAssignment.dimension, TierAssignment.tier, func.count()).group_by(
            TierAssignment.dimension, TierAssignment.tier
        )
    ):
        counts.setdefault(dimension, {})[tier] = int(n)
    out = []
    for dim in dimensions:
        held = counts.get(dim.name, {})
        configured = [t.tag for t in dim.tiers]
        extra = sorted(t for t in held if t not in configured)
        out.append(
            DimensionSizes(
                dim.name,
                dim.tag_group,
                tuple(TierSize(t, held.get(t, 0)) for t in [*configured, *extra]),
            )
        )
    return tuple(out)


def _last_retier(session: Session) -> LastRetier | None:
    run = session.scalars(
        select(RetierRun)
        .where(RetierRun.finished_at.is_not(None), RetierRun.dry_run.is_(False))
        .order_by(RetierRun.finished_at.desc())
        .limit(1)
    ).first()
    if run is None or run.finished_at is None:
        return None
    return LastRetier(
        finished_at=run.finished_at,
        seconds=(run.finished_at - run.started_at).total_seconds(),
        customers=run.customers,
        transitions=run.transitions,
        scope=run.scope,
    )


def _recent_adds(session: Session, staff_names: Mapping[str, str]) -> tuple[RecentAdd, ...]:
    rows = session.execute(
        select(
            Customer.name,
            Customer.external_userid,
            Staff.name,
            Staff.userid,
            Channel.name,
            FollowRelation.added_at,
        )
        .join(Customer, Customer.id == FollowRelation.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .outerjoin(Channel, Channel.id == FollowRelation.channel_id)
        .where(FollowRelation.added_at.is_not(None))
        .order_by(FollowRelation.added_at.desc(), FollowRelation.id.desc())
        .limit(RECENT_ADDS)
    ).all()
    return tuple(
        RecentAdd(
            customer_name=name,
            external_userid=ext,
            staff_name=staff_names.get(userid.lower()) or staff_name or userid,
            channel_name=channel or "",
            added_at=added_at,
        )
        for name, ext, staff_name, userid, channel, added_at in rows
        if added_at is not None  # the query excludes them; this tells mypy
    )
