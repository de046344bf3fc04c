"""The console's 流失 page with the Flask client: the three lists, the trend, the .xlsx export."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import Customer, FollowRelation, Order, Staff, TierAssignment
from bot.reports import channel_stats
from handlers.app import EXTENSION_KEY, create_app
from tests.support.console import HOSTILE, console_config, sign_in_with_token
from wecom_sim import Simulator

CHURN = {
    "name": "churn",
    "tag_group": "流失风险",
    "tiers": [{"tag": "流失预警", "when": "days_since_last_order > 90"}],
}
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime.now(UTC)


def _app(db: Database, sim: Simulator, *, churn: bool = True) -> Flask:
    cfg = console_config(db.url, sim)
    if churn:
        cfg["tiering"]["dimensions"].append(CHURN)
    cfg["staff"] = {"bob": "鲍勃（门店）"}
    return create_app(settings_from_mapping(cfg, environ={}))


@pytest.fixture
def console(db: Database, simulator: Simulator) -> Iterator[Flask]:
    app = _app(db, simulator)
    yield app
    app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def web(console: Flask) -> FlaskClient:
    client = console.test_client()
    sign_in_with_token(client)
    return client


def _seed(db: Database) -> None:
    """3 at risk (one hostile, one 高价值 with an order), 2 who deleted staff, 1 deleted by staff."""
    with db.write() as s:
        alice = Staff(userid="alice", name=HOSTILE)
        bob = Staff(userid="bob", name="Bob")
        s.add_all([alice, bob])
        s.flush()
        people = [Customer(external_userid=f"wl_{i}", name=f"客户{i}") for i in range(7)]
        people[0].name = HOSTILE
        s.add_all(people)
        s.flush()

        def rel(i: int, who: Staff, added_days: int, **kw: object) -> None:
            s.add(
                FollowRelation(
                    customer_id=people[i].id,
                    staff_id=who.id,
                    added_at=NOW - timedelta(days=added_days),
                    **kw,
                )
            )

        for i, days in ((0, 3), (1, 1), (2, 10)):  # at risk, entered days ago
            s.add(
                TierAssignment(
                    customer_id=people[i].id,
                    dimension="churn",
                    tier="流失预警",
                    since=NOW - timedelta(days=days),
                )
            )
            rel(i, alice, 200)
        rel(0, bob, 100)
        s.add(TierAssignment(customer_id=people[1].id, dimension="value", tier="高价值"))
        s.add(
            Order(
                order_id="loss-1",
                customer_id=people[1].id,
                external_userid="wl_1",
                amount=Decimal(1200),
                paid_at=NOW - timedelta(days=95),
                status="paid",
            )
        )
        s.add(
            Order(
                order_id="loss-2",
                customer_id=people[1].id,
                external_userid="wl_1",
                amount=Decimal(10),
                paid_at=NOW - timedelta(days=20),
                status="refunded",  # not a last order
            )
        )
        lost = {"status": "lost"}
        rel(3, alice, 30, lost_at=NOW - timedelta(days=2), lost_reason="del_follow_user", **lost)
        rel(4, bob, 7, lost_at=NOW - timedelta(hours=1), lost_reason="del_follow_user", **lost)
        rel(5, bob, 50, lost_at=NOW - timedelta(days=1), lost_reason="del_external_contact", **lost)
        rel(6, alice, 5, lost_at=NOW, lost_reason="transfer", **lost)  # neither list
    channel_stats.rollup(db, tz=TZ, now=NOW)


def _rows(page: str, section: str) -> list[str]:
    part = page.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'data-ext="([^"]+)"', part)


def test_the_lists_match_the_database(web: FlaskClient, db: Database) -> None:
    _seed(db)
    page = web.get("/admin/loss").get_data(as_text=True)
    assert _rows(page, "at-risk") == ["wl_1", "wl_0", "wl_2"]  # newest entry first
    assert _rows(page, "lost-by-customer") == ["wl_4", "wl_3"]
    assert _rows(page, "lost-by-staff") == ["wl_5"]
    with db.read() as s:  # the same lists straight from the tables
        in_db = s.scalars(
            select(Customer.external_userid)
            .join(TierAssignment, TierAssignment.customer_id == Customer.id)
            .where(TierAssignment.tier == "流失预警")
            .order_by(TierAssignment.since.desc())
        ).all()
        gone = s.execute(
            select(FollowRelation.lost_reason, Customer.external_userid)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .where(FollowRelation.status == "lost")
            .order_by(FollowRelation.lost_at.desc())
        ).all()
    assert _rows(page, "at-risk") == list(in_db)
    assert _rows(page, "lost-by-customer") == [e for r, e in gone if r == "del_follow_user"]
    assert _rows(page, "lost-by-staff") == [e for r, e in gone if r == "del_external_contact"]
    counts = dict(re.findall(r'id="count-([a-z-]+)">.*?data-value="(\d+)"', page, re.S))
    assert counts == {"at-risk": "3", "by-customer": "2", "by-staff": "1"}
    risk = page.split('data-ext="wl_1"', 1)[1].split("</tr>", 1)[0]
    assert "高价值" in risk
    assert (NOW - timedelta(days=95)).astimezone(TZ).strftime("%Y-%m-%d %H:%M") in risk
    both = page.split('data-ext="wl_0"', 1)[1].split("</tr>", 1)[0]
    assert "鲍勃（门店）" in both  # [staff] display names win
    assert "&lt;img src=x onerror=alert(1)&gt;" in both
    assert HOSTILE not in page
    retention = re.findall(
        r'class="num retention">(\d+)<', page.split('id="lost-by-customer"', 1)[1]
    )
    assert retention[:2] == ["6", "28"]  # wl_4: 7 days − 1 hour; wl_3: 30 − 2
    assert '/admin/customers/wl_3"' in page
    assert "ⓘ" in page


def test_at_risk_ties_list_the_newest_customer_first_and_the_page_is_capped(
    web: FlaskClient, db: Database
) -> None:
    """A run gives its whole intake one `since`: within it the newest customer (highest id)
    comes first, and the page shows SHOWN of them with the full count."""
    from bot.reports.loss import SHOWN

    intake = NOW - timedelta(days=1)
    with db.write() as s:
        people = [Customer(external_userid=f"tie_{i:03d}", name=f"客户{i}") for i in range(205)]
        s.add_all(people)
        s.flush()
        for c in people:
            s.add(
                TierAssignment(customer_id=c.id, dimension="churn", tier="流失预警", since=intake)
            )
        older = Customer(external_userid="tie_old", name="早")
        s.add(older)
        s.flush()  # the newest id, but an older entry: after the whole intake
        s.add(
            TierAssignment(
                customer_id=older.id,
                dimension="churn",
                tier="流失预警",
                since=intake - timedelta(days=1),
            )
        )
    page = web.get("/admin/loss").get_data(as_text=True)
    with db.read() as s:
        in_db = s.scalars(
            select(Customer.external_userid)
            .join(TierAssignment, TierAssignment.customer_id == Customer.id)
            .where(TierAssignment.tier == "流失预警")
            .order_by(TierAssignment.since.desc(), Customer.id.desc())
        ).all()
    shown = _rows(page, "at-risk")
    assert shown == list(in_db)[:SHOWN] == [f"tie_{i:03d}" for i in range(204, 4, -1)]
    assert "tie_old" not in shown
    counts = dict(re.findall(r'id="count-([a-z-]+)">.*?data-value="(\d+)"', page, re.S))
    assert counts["at-risk"] == "206"


def test_the_trend_holds_the_days_losses_apart(web: FlaskClient, db: Database) -> None:
    _seed(db)
    page = web.get("/admin/loss").get_data(as_text=True)
    spec = re.search(r'id="chart-data">(.*?)</script>', page, re.S)
    assert spec
    trend = json.loads(spec.group(1))["loss-trend"]
    series = {s["name"]: s["values"] for s in trend["series"]}
    today = NOW.astimezone(TZ).date()
    assert len(trend["categories"]) == 30
    assert trend["categories"][-1] == today.strftime("%m-%d")
    lost_today_by_customer = 1 if (NOW - timedelta(hours=1)).astimezone(TZ).date() == today else 0
    assert series["客户删员工"][-1] == lost_today_by_customer
    assert sum(series["客户删员工"]) == 2
    assert sum(series["员工删客户"]) == 1


def test_the_export_holds_every_row(web: FlaskClient, db: Database) -> None:
    _seed(db)
    answer = web.get("/admin/loss/export.xlsx")
    assert answer.status_code == 200
    assert answer.mimetype.endswith("spreadsheetml.sheet")
    assert "filename*=UTF-8''" in answer.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(answer.data))
    assert book.sheetnames == ["流失预警", "已流失·客户删员工", "员工删客户"]
    risk = list(book["流失预警"].iter_rows(values_only=True))
    assert risk[0][:4] == ("external_userid", "客户", "进入时间", "价值层级")
    assert [r[0] for r in risk[1:]] == ["wl_1", "wl_0", "wl_2"]
    assert risk[2][1] == HOSTILE  # text in a cell, as it is
    assert risk[1][3] == "高价值"
    lost = list(book["已流失·客户删员工"].iter_rows(values_only=True))
    assert [(r[0], r[5]) for r in lost[1:]] == [("wl_4", 6), ("wl_3", 28)]
    staff = list(book["员工删客户"].iter_rows(values_only=True))
    assert [(r[0], r[2]) for r in staff[1:]] == [("wl_5", "鲍勃（门店）")]


def test_a_formula_looking_name_is_exported_as_text(web: FlaskClient, db: Database) -> None:
    _seed(db)
    with db.write() as s:
        c = s.scalars(select(Customer).where(Customer.external_userid == "wl_2")).one()
        c.name = '=HYPERLINK("http://x")'
    book = load_workbook(io.BytesIO(web.get("/admin/loss/export.xlsx").data))
    names = [r[1] for r in book["流失预警"].iter_rows(min_row=2, values_only=True)]
    assert '\'=HYPERLINK("http://x")' in names


def test_a_fresh_install_says_what_to_do(db: Database, simulator: Simulator) -> None:
    app = _app(db, simulator, churn=False)
    try:
        web = app.test_client()
        sign_in_with_token(web)
        page = web.get("/admin/loss").get_data(as_text=True)
        assert 'id="empty-state"' in page
        assert "没有“流失预警”层级" in page
        assert "趋势在第一次汇总后显示" in page
        book = load_workbook(io.BytesIO(web.get("/admin/loss/export.xlsx").data))
        assert [len(list(ws.iter_rows())) for ws in book.worksheets] == [1, 1, 1]  # headers
    finally:
        app.extensions[EXTENSION_KEY].close()


def test_at_risk_count_after_runs_equals_a_recount(
    web: FlaskClient, db: Database, console: Flask
) -> None:
    """After re-tiers the count comes from the latest run's sizes (one row, not a count of
    every member): it equals the assignments' count after a full run and a touched one."""
    from sqlalchemy import func

    from bot.rules import load_dimensions
    from bot.tiering.run import retier

    _seed(db)  # 3 assigned by hand, before any run: counted from the assignments
    with db.write() as s:
        for i in range(4):
            c = Customer(external_userid=f"run_{i}", name=f"跑{i}")
            s.add(c)
            s.flush()
            s.add(
                Order(
                    order_id=f"run-{i}",
                    customer_id=c.id,
                    external_userid=c.external_userid,
                    amount=Decimal(100),
                    paid_at=NOW - timedelta(days=30 + 40 * i),  # 30, 70, 110, 150 days ago
                    status="paid",
                )
            )
    settings = console.extensions[EXTENSION_KEY].settings
    dims = load_dimensions(settings.tiering.dimensions)

    def page_count() -> tuple[int, int]:
        page = web.get("/admin/loss").get_data(as_text=True)
        shown = int(re.findall(r'id="count-at-risk">.*?data-value="(\d+)"', page, re.S)[0])
        with db.read() as s:
            counted = s.scalar(
                select(func.count())
                .select_from(TierAssignment)
                .where(TierAssignment.dimension == "churn", TierAssignment.tier == "流失预警")
            )
        return shown, int(counted or 0)

    assert page_count() == (3, 3)  # no run yet: counted from the assignments
    retier(db, dims, tz="Asia/Shanghai", as_of=NOW)
    assert page_count() == (3, 3)  # wl_1 (95 days), run_2, run_3; no order: no tier
    with db.read() as s:
        ids = [s.scalars(select(Customer.id).where(Customer.external_userid == "run_1")).one()]
    retier(db, dims, tz="Asia/Shanghai", as_of=NOW + timedelta(days=30), customer_ids=ids)
    assert page_count() == (4, 4)  # run_1 is 100 days out now: a touched run's sizes
