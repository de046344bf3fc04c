"""Daily channel counts: a rollup job writes them, the console reads them.

The scan path is left alone: no callback counts anything. Every ROLLUP_MINUTES the
`channel-stats` job reads `follow_relations` (two passes, set-based) and rewrites the
rows of today and yesterday in `channel_days` (one row per channel and local day in the
[app] timezone, channel_id 0 for every relation, deduplicated across channels) and each
channel's `channel_totals`, and recounts 渠道质量 (`channel_tier_mix`, one grouped pass
over relations and tier assignments); conversion and revenue (a pass over paid orders) at
most every ORDERS_EVERY. Pages read those rows only, and say when they were computed (数据截至).

A day's counts come from the relations as stored: a relation holds its latest add and
its latest loss, so a customer who left and came back counts on the day they came back.
Days the job did not see (a fresh install, a stopped scheduler) are filled in from the
same columns, up to BACKFILL_DAYS back.

A group live code (群活码, kind "group") brings no relations: its rows count the group
stays whose `state` was its own (`group_members.channel_id`, external members, deduplicated
by member), in the same columns: `added` the members who joined that day, `lost_by_customer`
those who left (QuitScene 0), `lost_by_staff` those removed (QuitScene 1), `lost_other`
those whose group was dismissed or whose leave only a sync saw, `customers` those still in
at the day's end; its total counts the members who ever joined through it, and conversion
the customers paying after their first join through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import (
    Channel,
    ChannelDay,
    ChannelTotal,
    FollowRelation,
    GroupMember,
    Order,
)
from bot.db.types import utcnow
from bot.tiering import channel_mix

ALL = 0  # channel_id of the rows counting every relation
ROLLUP_MINUTES = 10
ORDERS_EVERY = timedelta(hours=1)
BACKFILL_DAYS = 31  # the console's longest range, 近30天, and today
DAYS_PER_PASS = 7  # days counted in one pass over the relations

BY_CUSTOMER = "del_follow_user"  # 客户删员工
BY_STAFF = "del_external_contact"  # 员工删客户
GROUP_KIND = "group"  # channels.kind of a group live code
EXTERNAL = 2  # group_members.member_type of an external contact
LEFT, REMOVED = 0, 1  # del_member's QuitScene

R = FollowRelation
G = GroupMember


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Return the instants a local day starts and ends at."""
    start = datetime.combine(day, time.min, tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)


def local_today(tz: ZoneInfo, now: datetime | None = None) -> date:
    """Return today's local date in `tz`."""
    return (now or utcnow()).astimezone(tz).date()


# --- the rollup ---------------------------------------------------------------------


def _distinct(cond: ColumnElement[bool]) -> Any:
    return func.count(func.distinct(case((cond, R.customer_id))))


def _day_columns(day: date, tz: ZoneInfo, *, customers: bool) -> list[Any]:
    """Count, for one day: added, the three losses and (optionally) active customers."""
    start, end = day_bounds(day, tz)
    lost_that_day = and_(R.status == "lost", R.lost_at >= start, R.lost_at < end)
    cols = [
        _distinct(and_(R.added_at >= start, R.added_at < end)),
        _distinct(and_(lost_that_day, R.lost_reason == BY_CUSTOMER)),
        _distinct(and_(lost_that_day, R.lost_reason == BY_STAFF)),
        _distinct(
            and_(
                lost_that_day,
                or_(R.lost_reason.is_(None), R.lost_reason.not_in((BY_CUSTOMER, BY_STAFF))),
            )
        ),
    ]
    if customers:
        # Active at the day's end: added before it ends, not lost before it ends.
        cols.append(
            _distinct(
                and_(
                    or_(R.added_at.is_(None), R.added_at < end),
                    or_(R.status == "active", R.lost_at >= end),
                )
            )
        )
    else:
        cols.append(literal(0))
    return cols


def _members(cond: ColumnElement[bool]) -> Any:
    return func.count(func.distinct(case((cond, G.member_userid))))


def _group_day_columns(day: date, tz: ZoneInfo) -> list[Any]:
    """Count, for one day, a group code's stays: joined, the three leaves, still in at its end."""
    start, end = day_bounds(day, tz)
    left_that_day = and_(G.left_at >= start, G.left_at < end)
    by_event = and_(left_that_day, G.dismissed.is_(False))
    return [
        _members(and_(G.joined_at >= start, G.joined_at < end)),
        _members(and_(by_event, G.quit_scene == LEFT)),
        _members(and_(by_event, G.quit_scene == REMOVED)),
        _members(
            and_(
                left_that_day,
                or_(G.dismissed.is_(True), G.quit_scene.is_(None), G.quit_scene.not_in((0, 1))),
            )
        ),
        _members(and_(G.joined_at < end, or_(G.left_at.is_(None), G.left_at >= end))),
    ]


Counts = dict[tuple[date, int], tuple[int, ...]]  # (day, channel) -> the 5 day counts


def _count_group_days(
    days: Sequence[date], tz: ZoneInfo, *, session: Session
) -> tuple[Counts, dict[int, int]]:
    """Count `days` for every group code from its stays; with each one's members ever.

    One pass over the stays that came through a channel per DAYS_PER_PASS days.
    """
    out: Counts = {}
    ever: dict[int, int] = {}
    group_codes = select(Channel.id).where(Channel.kind == GROUP_KIND)
    for i in range(0, len(days), DAYS_PER_PASS):
        chunk = days[i : i + DAYS_PER_PASS]
        cols = [c for d in chunk for c in _group_day_columns(d, tz)]
        rows = session.execute(
            select(G.channel_id, *cols, func.count(func.distinct(G.member_userid)))
            .where(G.channel_id.in_(group_codes), G.member_type == EXTERNAL)
            .group_by(G.channel_id)
        ).all()
        for row in rows:
            for j, d in enumerate(chunk):
                out[(d, int(row[0]))] = tuple(int(v) for v in row[1 + 5 * j : 6 + 5 * j])
            ever[int(row[0])] = int(row[-1])
    return out, ever


def _count_days(
    days: Sequence[date], tz: ZoneInfo, *, session: Session
) -> tuple[Counts, dict[int, int]]:
    """Count `days` per channel and for every relation; with each one's customers ever.

    Two passes over the relations per DAYS_PER_PASS days (one grouped by channel, one
    deduplicated across channels); the last pair also counts the customers ever added.
    """
    out: Counts = {}
    ever: dict[int, int] = {}
    for i in range(0, len(days), DAYS_PER_PASS):
        chunk = days[i : i + DAYS_PER_PASS]
        last = i + DAYS_PER_PASS >= len(days)
        extra = [func.count(func.distinct(R.customer_id))] if last else []
        per_channel = [c for d in chunk for c in _day_columns(d, tz, customers=False)]
        rows = session.execute(
            select(R.channel_id, *per_channel, *extra)
            .where(R.channel_id.is_not(None))
            .group_by(R.channel_id)
        ).all()
        for row in rows:
            for j, d in enumerate(chunk):
                out[(d, int(row[0]))] = tuple(int(v) for v in row[1 + 5 * j : 6 + 5 * j])
            if last:
                ever[int(row[0])] = int(row[-1])
        every = [c for d in chunk for c in _day_columns(d, tz, customers=True)]
        total = session.execute(select(*every, *extra)).one()
        for j, d in enumerate(chunk):
            out[(d, ALL)] = tuple(int(v) for v in total[5 * j : 5 * j + 5])
        if last:
            ever[ALL] = int(total[-1])
    return out, ever


def _conversions(*, session: Session) -> dict[int, tuple[int, Decimal]]:
    """Per channel: customers with a paid order after their add through it, and its revenue."""
    first = (
        select(
            R.channel_id.label("channel_id"),
            R.customer_id.label("customer_id"),
            func.min(R.added_at).label("added_at"),
        )
        .where(R.channel_id.is_not(None))
        .group_by(R.channel_id, R.customer_id)
        .subquery()
    )
    rows = session.execute(
        select(
            first.c.channel_id,
            func.count(func.distinct(first.c.customer_id)),
            func.coalesce(func.sum(Order.amount), 0),
        )
        .join(Order, Order.customer_id == first.c.customer_id)
        .where(
            Order.status == "paid",
            or_(first.c.added_at.is_(None), Order.paid_at >= first.c.added_at),
        )
        .group_by(first.c.channel_id)
    ).all()
    out = {int(c): (int(n), Decimal(yuan).quantize(Decimal("0.01"))) for c, n, yuan in rows}
    # A group code's: its customers paying after their first join through it.
    joined = (
        select(
            G.channel_id.label("channel_id"),
            G.customer_id.label("customer_id"),
            func.min(G.joined_at).label("joined_at"),
        )
        .where(
            G.channel_id.in_(select(Channel.id).where(Channel.kind == GROUP_KIND)),
            G.customer_id.is_not(None),
        )
        .group_by(G.channel_id, G.customer_id)
        .subquery()
    )
    for c, n, yuan in session.execute(
        select(
            joined.c.channel_id,
            func.count(func.distinct(joined.c.customer_id)),
            func.coalesce(func.sum(Order.amount), 0),
        )
        .join(Order, Order.customer_id == joined.c.customer_id)
        .where(Order.status == "paid", Order.paid_at >= joined.c.joined_at)
        .group_by(joined.c.channel_id)
    ):
        out[int(c)] = (int(n), Decimal(yuan).quantize(Decimal("0.01")))
    return out


@dataclass(frozen=True)
class RollupReport:
    """What one rollup wrote."""

    days: tuple[date, ...]
    channels: int
    orders: bool  # conversion and revenue recomputed


def _missing_days(today: date, *, session: Session) -> list[date]:
    """Return today, yesterday, and the days back to the last one rolled up (≤ BACKFILL)."""
    last = session.scalar(select(func.max(ChannelDay.day)).where(ChannelDay.day < today))
    first = today - timedelta(days=BACKFILL_DAYS - 1)
    if last is not None:
        first = max(first, min(last, today - timedelta(days=1)))
    return [first + timedelta(days=i) for i in range((today - first).days + 1)]


def rollup(
    db: Database, *, tz: ZoneInfo, now: datetime | None = None, orders: bool | None = None
) -> RollupReport:
    """Recount today, yesterday and any missed day; conversions when due (or `orders`)."""
    now = now or utcnow()
    today = local_today(tz, now)
    with db.read() as session:
        days = _missing_days(today, session=session)
        counts, totals = _count_days(days, tz, session=session)
        group_counts, group_totals = _count_group_days(days, tz, session=session)
        counts.update(group_counts)
        totals.update(group_totals)
        last_orders = session.scalar(select(func.max(ChannelTotal.orders_at)))
        due = (
            orders
            if orders is not None
            else (last_orders is None or now - last_orders >= ORDERS_EVERY)
        )
        conv = _conversions(session=session) if due else None
        mix = channel_mix.count(session=session)  # 渠道质量: the relations may have changed
        kept = {
            int(c): (int(n), Decimal(r), at)
            for c, n, r, at in session.execute(
                select(
                    ChannelTotal.channel_id,
                    ChannelTotal.converted,
                    ChannelTotal.revenue,
                    ChannelTotal.orders_at,
                )
            ).all()
        }
    with db.write() as session:
        session.execute(delete(ChannelDay).where(ChannelDay.day.in_(days)))
        rows = [
            {
                "day": d,
                "channel_id": ch,
                "added": v[0],
                "lost_by_customer": v[1],
                "lost_by_staff": v[2],
                "lost_other": v[3],
                "customers": v[4],
                "computed_at": now,
            }
            for (d, ch), v in sorted(counts.items())
            if ch == ALL or any(v)
        ]
        if rows:
            session.execute(insert(ChannelDay), rows)
        session.execute(delete(ChannelTotal))
        total_rows = []
        for ch, n in sorted(totals.items()):
            if conv is not None:
                converted, revenue = conv.get(ch, (0, Decimal(0)))
                at: datetime | None = now
            else:
                converted, revenue, at = kept.get(ch, (0, Decimal(0), None))
            total_rows.append(
                {
                    "channel_id": ch,
                    "customers": n,
                    "converted": converted,
                    "revenue": revenue,
                    "computed_at": now,
                    "orders_at": at,
                }
            )
        session.execute(insert(ChannelTotal), total_rows)
        channel_mix.write(mix, session=session, now=now)
    return RollupReport(tuple(days), len(totals) - 1, conv is not None)


# --- what the pages read ------------------------------------------------------------


@dataclass(frozen=True)
class DayCounts:
    """One local day's adds and losses (deduplicated customers)."""

    day: date
    added: int = 0
    lost_by_customer: int = 0  # 客户删员工
    lost_by_staff: int = 0  # 员工删客户
    lost_other: int = 0
    customers: int = 0  # ALL rows only: customers with an active relation at the day's end

    @property
    def lost(self) -> int:
        return self.lost_by_customer + self.lost_by_staff + self.lost_other

    @property
    def net(self) -> int:
        """净增: added minus every loss."""
        return self.added - self.lost


def _day(row: ChannelDay | None, day: date) -> DayCounts:
    if row is None:
        return DayCounts(day)
    return DayCounts(
        day, row.added, row.lost_by_customer, row.lost_by_staff, row.lost_other, row.customers
    )


@dataclass(frozen=True)
class ChannelSummary:
    """One live code's row on the 渠道活码 list (definitions: bot.reports.definitions)."""

    channel_id: int
    name: str
    state: str
    qr_code: str
    customers: int  # 累计添加（去重）
    today: DayCounts  # 今日添加, 流失 by kind, 净增
    converted: int  # customers with a paid order after their add through the channel
    revenue: Decimal  # their paid orders since that add, yuan
    orders_at: datetime | None  # when conversion and revenue were computed
    kind: str = "staff"  # staff | group (a group code's counts are its joins and leaves)
    windows: tuple[Window, ...] = ()  # a group code's: joins and leaves in 近7天, 近30天

    @property
    def conversion_rate(self) -> float | None:
        """首单转化率 (None when nobody came through the channel)."""
        return self.converted / self.customers if self.customers else None

    @property
    def is_group(self) -> bool:
        return self.kind == GROUP_KIND


@dataclass(frozen=True)
class Window:
    """A group code's joins and leaves over its last `days` local days (day rows summed)."""

    days: int
    joined: int
    left: int


WINDOWS = (7, 30)  # 近7天, 近30天


def windows(days: Sequence[DayCounts]) -> tuple[Window, ...]:
    """Sum the last 7 and 30 of `days` (oldest first): each day's members, deduplicated per day."""
    return tuple(
        Window(n, sum(d.added for d in days[-n:]), sum(d.lost for d in days[-n:])) for n in WINDOWS
    )


@dataclass(frozen=True)
class ChannelList:
    """Every channel's summary, and when the numbers were computed (None: never)."""

    channels: tuple[ChannelSummary, ...]
    computed_at: datetime | None


def channel_summary(*, session: Session, today: date) -> ChannelList:
    """Return every channel with its totals and today's counts, by name."""
    channels = session.scalars(select(Channel).order_by(Channel.name)).all()
    days = {
        r.channel_id: r for r in session.scalars(select(ChannelDay).where(ChannelDay.day == today))
    }
    totals = {t.channel_id: t for t in session.scalars(select(ChannelTotal))}
    group_days: dict[int, dict[date, DayCounts]] = {}
    group_ids = [ch.id for ch in channels if ch.kind == GROUP_KIND]
    if group_ids:  # at most 30 rows per group code
        first = today - timedelta(days=max(WINDOWS) - 1)
        for r in session.scalars(
            select(ChannelDay).where(
                ChannelDay.channel_id.in_(group_ids),
                ChannelDay.day >= first,
                ChannelDay.day <= today,
            )
        ):
            group_days.setdefault(r.channel_id, {})[r.day] = _day(r, r.day)
    out = []
    for ch in channels:
        t = totals.get(ch.id)
        recent: tuple[Window, ...] = ()
        if ch.kind == GROUP_KIND:
            mine = group_days.get(ch.id, {})
            axis = [today - timedelta(days=i) for i in reversed(range(max(WINDOWS)))]
            recent = windows([mine.get(d, DayCounts(d)) for d in axis])
        out.append(
            ChannelSummary(
                ch.id,
                ch.name,
                ch.state,
                ch.qr_code,
                t.customers if t else 0,
                _day(days.get(ch.id), today),
                t.converted if t else 0,
                t.revenue if t else Decimal(0),
                t.orders_at if t else None,
                ch.kind,
                recent,
            )
        )
    return ChannelList(tuple(out), computed_at(session=session))


def computed_at(*, session: Session) -> datetime | None:
    """Return when the rollup last ran (数据截至), None before its first run."""
    return session.scalar(select(ChannelTotal.computed_at).where(ChannelTotal.channel_id == ALL))


@dataclass(frozen=True)
class Trend:
    """A channel's (or every relation's) counts per local day, zero-filled, oldest first."""

    channel_id: int
    days: tuple[DayCounts, ...]


def channel_trend(channel_id: int, *, session: Session, today: date, days: int = 30) -> Trend:
    """Return the last `days` local days ending `today` (channel_id ALL: every relation)."""
    if days < 1:
        raise ValueError("days must be >= 1")
    first = today - timedelta(days=days - 1)
    rows = {
        r.day: r
        for r in session.scalars(
            select(ChannelDay).where(
                ChannelDay.channel_id == channel_id,
                ChannelDay.day >= first,
                ChannelDay.day <= today,
            )
        )
    }
    axis = [first + timedelta(days=i) for i in range(days)]
    return Trend(channel_id, tuple(_day(rows.get(d), d) for d in axis))
