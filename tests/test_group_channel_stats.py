"""A group live code's counts on both databases: the rollup's joins and leaves, members now,
the tier mix a full and a touched re-tier keep, and a customer's groups (22)."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from openpyxl import load_workbook
from sqlalchemy import select

from bot.config import DimensionSettings
from bot.db import Database
from bot.db.models import Channel, Customer, Order
from bot.db.types import utcnow
from bot.reports import channel_export, channel_pages, channel_stats
from bot.reports.customer_groups import customer_groups
from bot.rules.dimension import load_dimensions
from bot.tiering import channel_mix
from bot.tiering.run import retier
from tests.support.console import DIMENSION, SeededGroups, seed_groups, seed_overview

TZ = ZoneInfo("Asia/Shanghai")


def _code(db: Database, name: str) -> int:
    with db.read() as session:
        return int(session.scalars(select(Channel.id).where(Channel.name == name)).one())


def test_the_rollup_counts_a_group_codes_joins_leaves_and_members(db: Database) -> None:
    now = utcnow()
    seed_overview(db, now=now, tz=TZ)
    seeded = seed_groups(db, now=now, tz=TZ)
    code = _code(db, seeded.channel)
    today = channel_stats.local_today(TZ, now)
    with db.read() as session:
        listed = channel_stats.channel_summary(session=session, today=today)
        report = channel_pages.channel_report(code, session=session, today=today)
        mix = channel_mix.mix("value", session=session)
    row = next(s for s in listed.channels if s.channel_id == code)
    assert row.is_group
    assert (row.customers, row.today.added, row.today.lost_by_customer, row.today.customers) == (
        seeded.joined_total,
        seeded.joined_today,
        seeded.left_today,
        seeded.members_now,
    )
    assert [(w.days, w.joined, w.left) for w in row.windows] == [
        (7, seeded.joined_7d, seeded.left_today),
        (30, seeded.joined_7d, seeded.left_today),
    ]
    assert [(w.days, w.joined, w.left) for w in report.windows] == [
        (w.days, w.joined, w.left) for w in row.windows
    ]
    # wm001 joined three days ago: that day's row holds the join, the day before nothing.
    by_day = {d.day: d for d in report.days}
    assert by_day[today - timedelta(days=3)].added == 1
    assert by_day[today - timedelta(days=4)].added == 0
    # 渠道质量 of the members: wm000 高价值, wm001 普通, the stranger no customer.
    assert mix[code] == {"高价值": 1, "普通": 1, None: 1}
    # The staff code's numbers are the relations', untouched by the group stays.
    store = next(s for s in listed.channels if s.name == "门店码")
    assert (store.is_group, store.windows) == (False, ())
    # The 数据报表 export names a group code's columns for what they count.
    sheet = load_workbook(io.BytesIO(channel_export.report_xlsx(report))).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == channel_export.GROUP_HEADER
    assert rows[1] == (
        today.isoformat(),
        seeded.joined_today,
        seeded.left_today,
        0,
        0,
        seeded.left_today,
        seeded.joined_today - seeded.left_today,
        seeded.members_now,
    )


def test_a_touched_retier_moves_a_group_members_tier_in_the_mix(db: Database) -> None:
    now = utcnow()
    seed_overview(db, now=now, tz=TZ)
    seeded = seed_groups(db, now=now, tz=TZ)
    code = _code(db, seeded.channel)
    with db.write() as session:
        wm001 = session.scalars(select(Customer).where(Customer.external_userid == "wm001")).one()
        session.add(
            Order(
                order_id="after-join",
                customer_id=wm001.id,
                external_userid="wm001",
                amount=Decimal(2000),
                paid_at=now - timedelta(minutes=1),
                status="paid",
            )
        )
        wm001_id = wm001.id
    dims = load_dimensions([DimensionSettings.model_validate(DIMENSION)])
    retier(db, dims, tz=TZ.key, as_of=now, customer_ids=[wm001_id])
    with db.read() as session:
        touched = channel_mix.mix("value", session=session)
        counted = channel_mix.count(session=session)
    assert touched[code] == {"高价值": 2, None: 1}
    # The touched run's moves equal a full recount.
    assert {k: v for k, v in counted.items() if k[0] == code and k[1] in ("", "value")} == {
        (code, "", ""): 3,
        (code, "value", "高价值"): 2,
    }
    # Paid after joining through the code (the seeded 50 yuan yesterday and 2,000 now): a
    # conversion of the group code; wm000 paid before joining today, the stranger never.
    channel_stats.rollup(db, tz=TZ, now=now, orders=True)
    with db.read() as session:
        today = channel_stats.local_today(TZ, now)
        row = next(
            s
            for s in channel_stats.channel_summary(session=session, today=today).channels
            if s.channel_id == code
        )
    assert (row.converted, row.revenue) == (1, Decimal("2050.00"))


def test_a_customers_groups_read_in_then_left(db: Database) -> None:
    now = utcnow()
    seed_overview(db, now=now, tz=TZ)
    seeded = SeededGroups()
    seed_groups(db, now=now, tz=TZ)
    with db.read() as session:
        groups = customer_groups("wm000", session=session)
        none = customer_groups("wm003", session=session)
        staff_member = customer_groups("alice", session=session)
    assert [(g.name, g.current, g.channel, g.how, g.left_how) for g in groups] == [
        (seeded.group, True, seeded.channel, "扫描群二维码入群", ""),
        (seeded.other_group, False, "", "通过邀请链接入群", "被移出群聊"),
    ]
    assert none == staff_member == ()
