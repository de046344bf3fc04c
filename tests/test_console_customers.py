"""The console's 客户 pages with the Flask client: search, filters, export, a customer's page."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select

from bot.db import Database
from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InteractionEvent,
    Order,
    RelationTag,
    Staff,
    Tag,
    TagGroup,
    TierAssignment,
    TierTransition,
)
from bot.db.types import utcnow
from bot.reports import customer_list as cl
from handlers.app import create_app
from handlers.context import LoadedDimensions
from tests.support.console import HOSTILE, console_settings, seed_overview, sign_in_with_token

ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
def console(db_url: str) -> Iterator[Flask]:
    app = create_app(console_settings(db_url))
    yield app
    app.extensions["tagbot"].close()


@pytest.fixture
def web(console: Flask) -> FlaskClient:
    client = console.test_client()
    sign_in_with_token(client)
    return client


@pytest.fixture
def seeded(console: Flask, db: Database) -> Database:
    """`seed_overview`'s customers, plus a remark, tags of both kinds and an interaction."""
    seed_overview(db, now=utcnow(), tz=console.extensions["tagbot"].settings.tz)
    with db.write() as session:
        wm002 = _customer_id(session, "wm002")
        rel = session.scalars(
            select(FollowRelation).where(FollowRelation.customer_id == wm002)
        ).one()
        rel.remark = "老客户VIP"
        ours = TagGroup(name="客户价值", managed=True, tier_dimension="value")
        theirs = TagGroup(name="兴趣", managed=False)
        session.add_all([ours, theirs])
        session.flush()
        mine, other = (
            Tag(group_id=ours.id, name="普通", managed=True),
            Tag(group_id=theirs.id, name="烘焙"),
        )
        session.add_all([mine, other])
        session.flush()
        session.add_all(
            [
                RelationTag(relation_id=rel.id, tag_id=mine.id),
                RelationTag(relation_id=rel.id, tag_id=other.id),
            ]
        )
        session.add(
            InteractionEvent(
                event_id="ev-1",
                customer_id=wm002,
                external_userid="wm002",
                kind="view",
                occurred_at=utcnow() - timedelta(hours=1),
            )
        )
    return db


def _customer_id(session: object, ext: str) -> int:
    found = session.scalar(select(Customer.id).where(Customer.external_userid == ext))  # type: ignore[attr-defined]
    assert found is not None
    return int(found)


def _listed(page: str) -> list[str]:
    """The external_userids the list shows, in order."""
    return re.findall(r'<tr data-customer="([^"]+)"', page)


def _get(web: FlaskClient, url: str) -> str:
    answer = web.get(url)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    return answer.get_data(as_text=True)


def test_the_list_shows_every_customer_newest_first_and_names_stay_text(
    web: FlaskClient, seeded: Database
) -> None:
    page = _get(web, "/admin/customers")
    with seeded.read() as session:
        expected = list(
            session.scalars(select(Customer.external_userid).order_by(Customer.id.desc()))
        )
    assert _listed(page) == expected
    assert f'data-value="{len(expected)}"' in page
    assert HOSTILE not in page
    assert ESCAPED in page  # the customer's name and alice's, as text
    assert 'aria-current="page"' in page.split('href="/admin/customers"')[1][:30]
    assert "ⓘ" in page


def test_search_by_id_name_and_remark(web: FlaskClient, seeded: Database) -> None:
    assert _listed(_get(web, "/admin/customers?q=wm003")) == ["wm003"]
    assert _listed(_get(web, "/admin/customers?q=%E5%AE%A2%E6%88%B75")) == ["wm005"]  # 客户5
    assert _listed(_get(web, "/admin/customers?q=VIP")) == ["wm002"]  # the staff's remark
    # LIKE's wildcards are text: nobody's name holds a percent sign.
    assert _listed(_get(web, "/admin/customers?q=%25")) == []
    assert "没有符合条件的客户" in _get(web, "/admin/customers?q=nobody")
    assert _listed(_get(web, "/admin/customers?q=onerror")) == ["wm000"]


def test_filters_match_the_database(web: FlaskClient, seeded: Database) -> None:
    with seeded.read() as session:

        def ids(query: object) -> list[str]:
            return list(session.scalars(query))  # type: ignore[call-overload]

        tier = ids(
            select(Customer.external_userid)
            .join(TierAssignment, TierAssignment.customer_id == Customer.id)
            .where(TierAssignment.dimension == "value", TierAssignment.tier == "普通")
            .order_by(Customer.id.desc())
        )
        bob = ids(
            select(Customer.external_userid)
            .join(FollowRelation, FollowRelation.customer_id == Customer.id)
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .where(Staff.userid == "bob")
            .order_by(Customer.id.desc())
        )
        channel = session.scalar(select(Channel.id).where(Channel.name == "门店码"))
    assert tier == ["wm003", "wm002", "wm001"]
    assert _listed(_get(web, "/admin/customers?dimension=value&tier=普通")) == tier
    assert _listed(_get(web, "/admin/customers?tier=高价值")) == ["wm000"]  # any dimension
    assert bob == ["wm005", "wm003", "wm002", "wm001"]
    assert _listed(_get(web, "/admin/customers?staff=bob")) == bob
    assert len(_listed(_get(web, f"/admin/customers?channel={channel}"))) == 7
    assert _listed(_get(web, "/admin/customers?loss=lost_by_customer")) == ["wm004"]
    assert _listed(_get(web, "/admin/customers?loss=lost_by_staff")) == ["wm005"]
    assert _listed(_get(web, "/admin/customers?loss=lost")) == ["wm005", "wm004"]
    assert _listed(_get(web, "/admin/customers?loss=active")) == [
        "wm006",
        "wm003",
        "wm002",
        "wm001",
        "wm000",
    ]
    # Staff and tier together: bob's customers in 普通.
    assert _listed(_get(web, "/admin/customers?staff=bob&tier=普通")) == ["wm003", "wm002", "wm001"]
    both = "/admin/customers?dimension=value&tier=普通&staff=bob&q=%E5%AE%A2%E6%88%B72"
    assert _listed(_get(web, both)) == ["wm002"]
    assert _listed(_get(web, "/admin/customers?dimension=value&tier=普通&q=wm003")) == ["wm003"]
    assert _listed(_get(web, "/admin/customers?dimension=value&tier=高价值&q=wm003")) == []
    today = utcnow().astimezone(console_tz(web)).date()
    added_today = _listed(_get(web, f"/admin/customers?added_from={today}&added_to={today}"))
    assert added_today == ["wm001", "wm000"]


def console_tz(web: FlaskClient) -> object:
    return web.application.extensions["tagbot"].settings.tz


def test_customers_moved_in_a_run(web: FlaskClient, seeded: Database) -> None:
    with seeded.read() as session:
        run = session.scalar(select(TierTransition.run_id).limit(1))
        moved = list(
            session.scalars(
                select(Customer.external_userid)
                .join(TierTransition, TierTransition.customer_id == Customer.id)
                .where(
                    TierTransition.run_id == run,
                    TierTransition.from_tier.is_(None),
                    TierTransition.to_tier == "普通",
                )
                .order_by(Customer.id.desc())
            )
        )
    assert moved == ["wm003", "wm002", "wm001"]
    url = f"/admin/customers?dimension=value&tier=普通&run={run}&from=无&to=普通"
    page = _get(web, url)
    assert _listed(page) == moved
    # The move alone (the heatmap's link: 无 as an empty value), and with the staff.
    alone = f"/admin/customers?dimension=value&run={run}&from=&to=普通"
    assert _listed(_get(web, alone)) == moved
    assert _listed(_get(web, alone + "&staff=alice")) == ["wm001"]
    assert 'id="move-filter"' in page
    assert (
        _listed(_get(web, f"/admin/customers?dimension=value&run={run}&from=普通&to=高价值")) == []
    )
    assert (
        _listed(_get(web, f"/admin/customers?dimension=value&run={run + 1}&from=无&to=普通")) == []
    )


def test_pages_follow_each_other_without_overlap(web: FlaskClient, seeded: Database) -> None:
    with seeded.write() as session:
        session.add_all(
            Customer(external_userid=f"bulk{i:03d}", name=f"批量{i}") for i in range(60)
        )
    first = _get(web, "/admin/customers")
    rows1 = _listed(first)
    assert len(rows1) == 50
    nxt = re.search(r'id="next-page" href="([^"]+)"', first)
    assert nxt
    second = _get(web, nxt.group(1).replace("&amp;", "&"))
    rows2 = _listed(second)
    assert len(rows2) == 67 - 50
    assert 'id="next-page"' not in second
    assert not set(rows1) & set(rows2)
    with seeded.read() as session:
        every = list(session.scalars(select(Customer.external_userid).order_by(Customer.id.desc())))
    assert rows1 + rows2 == every
    # A tier filter walks its index in pages too.
    with seeded.write() as session:
        bulk = session.scalars(
            select(Customer.id).where(Customer.external_userid.like("bulk%"))
        ).all()
        session.add_all(
            TierAssignment(customer_id=i, dimension="value", tier="普通", since=utcnow())
            for i in bulk
        )
    tiered = _get(web, "/admin/customers?dimension=value&tier=普通")
    link = re.search(r'id="next-page" href="([^"]+)"', tiered)
    assert link
    rest = _listed(_get(web, link.group(1).replace("&amp;", "&")))
    assert len(_listed(tiered)) == 50
    assert _listed(tiered) + rest == [e for e in every if e.startswith("bulk")] + [
        "wm003",
        "wm002",
        "wm001",
    ]
    # Filters carry into the next page's link.
    searched = _get(web, "/admin/customers?q=%E6%89%B9%E9%87%8F")  # 批量
    link = re.search(r'id="next-page" href="([^"]+)"', searched)
    assert link
    assert "q=" in link.group(1)
    assert len(_listed(_get(web, link.group(1).replace("&amp;", "&")))) == 10


def test_the_export_holds_the_filtered_list(web: FlaskClient, seeded: Database) -> None:
    answer = web.get("/admin/customers/export.xlsx?dimension=value&tier=普通")
    assert answer.status_code == 200
    assert answer.mimetype.endswith("spreadsheetml.sheet")
    assert "filename*=UTF-8''" in answer.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(answer.get_data()), read_only=True)
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][:3] == ("external_userid", "客户名称", "类型")
    assert rows[0][-1] == "分层·value"
    assert [r[0] for r in rows[1:]] == ["wm003", "wm002", "wm001"]
    wm002 = rows[2]
    assert wm002[1] == "客户2"
    assert wm002[4] == "鲍勃"
    assert wm002[5] == "老客户VIP"
    assert wm002[6] == "门店码"
    assert wm002[-1] == "普通"
    everyone = load_workbook(io.BytesIO(web.get("/admin/customers/export.xlsx").get_data()))
    names = {r[0]: r[1] for r in everyone.active.iter_rows(min_row=2, values_only=True)}
    assert len(names) == 7
    assert names["wm000"] == HOSTILE  # text in a cell, not markup anywhere
    assert {r[8] for r in everyone.active.iter_rows(min_row=2, values_only=True)} >= {
        "跟进中",
        "已流失·客户删员工",
        "已流失·员工删客户",
    }


def test_an_exported_name_never_becomes_a_formula(web: FlaskClient, seeded: Database) -> None:
    with seeded.write() as session:
        session.add(Customer(external_userid="wmformula", name='=HYPERLINK("http://x","y")'))
    answer = web.get("/admin/customers/export.xlsx?q=wmformula")
    sheet = load_workbook(io.BytesIO(answer.get_data())).active
    assert sheet["B2"].value == '\'=HYPERLINK("http://x","y")'
    assert sheet["B2"].data_type == "s"


def test_a_customer_page_explains_the_tier(web: FlaskClient, seeded: Database) -> None:
    page = _get(web, "/admin/customers/wm000")
    assert HOSTILE not in page
    assert ESCAPED in page
    reasons = page.split('id="tier-reasons"')[1].split('id="tags"')[0]
    assert 'data-dimension="value"' in reasons
    assert '当前层级 <span class="tier">高价值</span>' in reasons
    assert "spend_365d &gt;= 1000" in reasons  # the rule as configured
    assert "spend_365d = 1500 ≥ 1000" in reasons  # the value against the threshold
    assert 'data-tier="高价值" data-truth="true"' in reasons
    assert "首个满足条件的层级" in reasons
    assert '<td class="num metric-value">1500</td>' in reasons
    assert "近 365 天已支付订单金额合计" in reasons
    assert "门店码" in page.split('id="came-through"')[1][:300]
    assert 'data-value="1500.00"' in page  # 累计支付


def test_the_rules_are_parsed_once_per_process_not_per_page(
    console: Flask, web: FlaskClient, seeded: Database
) -> None:
    """Parsing every dimension's rules costs ~80 ms: a customer's page reuses the parse."""
    loaded = console.extensions["tagbot"].local(LoadedDimensions)
    for ext in ("wm000", "wm002", "wm000"):
        assert 'id="tier-reasons"' in _get(web, f"/admin/customers/{ext}")
    assert loaded.parses == 1
    assert _get(web, "/admin/tiers?dimension=value")
    assert loaded.parses == 1  # the 分层 page shares it


def test_a_customer_without_a_tier_says_why(web: FlaskClient, seeded: Database) -> None:
    page = _get(web, "/admin/customers/wm006")  # no order: spend_365d is missing
    reasons = page.split('id="tier-reasons"')[1].split('id="tags"')[0]
    assert "当前没有该维度的层级" in reasons
    assert "没有满足条件的层级" in reasons
    assert "spend_365d 缺失" in reasons
    assert 'data-truth="unknown"' in reasons


def test_tags_split_and_the_timeline_newest_first(web: FlaskClient, seeded: Database) -> None:
    page = _get(web, "/admin/customers/wm002")
    system = page.split('id="tags-system"')[1].split('id="tags-corp"')[0]
    corp = page.split('id="tags-corp"')[1].split('id="tags-personal"')[0]
    assert "客户价值/普通" in system
    assert "兴趣/烘焙" not in system
    assert "兴趣/烘焙" in corp
    assert "客户价值/普通" not in corp
    assert "个人标签" in page.split('id="tags-personal"')[1][:300]
    timeline = page.split('id="timeline"')[1]
    kinds = re.findall(r'<li data-kind="([a-z]+)"><time datetime="([^"]+)"', timeline)
    times = [t for _, t in kinds]
    assert times == sorted(times, reverse=True)
    assert {k for k, _ in kinds} >= {"added", "tier", "order", "interaction"}
    # The tier change carries its reason and the values the run recorded.
    tier_entry = timeline.split('data-kind="tier"')[1].split("</li>")[0]
    assert "value：无 → 普通" in tier_entry
    assert "spend_365d = 50" in tier_entry
    assert "老客户VIP" in page.split('id="followers"')[1]
    with seeded.read() as session:
        orders = session.scalars(select(Order).where(Order.external_userid == "wm002")).all()
    assert len(orders) == 1
    assert orders[0].amount == Decimal(50)
    assert "订单 50.00 元（已支付）" in timeline


def test_a_lost_customer_shows_the_loss(web: FlaskClient, seeded: Database) -> None:
    page = _get(web, "/admin/customers/wm004")
    assert "已流失·客户删员工" in page.split('id="followers"')[1]
    assert 'data-kind="lost"' in page


def test_an_unknown_customer_is_the_404_page(web: FlaskClient, seeded: Database) -> None:
    answer = web.get("/admin/customers/nobody-here")
    assert answer.status_code == 404
    body = answer.get_data(as_text=True)
    assert 'id="error"' in body
    assert "页面不存在" in body
    hostile = web.get("/admin/customers/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert hostile.status_code == 404
    assert "<script>alert" not in hostile.get_data(as_text=True)


@pytest.mark.parametrize(
    "query",
    [
        "added_from=yesterday",
        "added_from=2026-02-30",
        "loss=gone",
        "channel=abc",
        "before=-1",
        "run=3",  # a move needs its dimension
        "dimension=value&from=无",  # and its run
        "added_from=2026-05-02&added_to=2026-05-01",
        "q=" + "x" * 65,
    ],
)
def test_bad_filters_are_a_clear_400(web: FlaskClient, query: str) -> None:
    answer = web.get("/admin/customers?" + query)
    assert answer.status_code == 400
    assert 'id="error"' in answer.get_data(as_text=True)
    if not query.startswith("before"):  # the export has no pages
        assert web.get("/admin/customers/export.xlsx?" + query).status_code == 400


def test_a_nul_in_the_search_matches_nobody(web: FlaskClient, seeded: Database) -> None:
    assert _listed(_get(web, "/admin/customers?q=wm%00")) == []


def test_a_fresh_install_says_what_to_do_next(web: FlaskClient) -> None:
    page = _get(web, "/admin/customers")
    assert 'id="empty-state"' in page
    assert "tagbot sync" in page
    page = _get(web, "/admin/customers?q=x")  # a search on an empty install: the same help
    assert "还没有客户" in page or "没有符合条件的客户" in page


def test_the_pages_need_a_session(console: Flask) -> None:
    anonymous = console.test_client()
    for url in ("/admin/customers", "/admin/customers/wm000", "/admin/customers/export.xlsx"):
        answer = anonymous.get(url)
        assert answer.status_code == 302
        assert answer.headers["Location"] == "/admin/login"


def test_a_search_pages_through_name_and_remark_matches_newest_first_each_once(
    db: Database,
) -> None:
    """The search runs as two queries (names, remarks): pages merge them without a gap or a
    repeat, whichever of the two the next match comes from."""
    with db.write() as session:
        staff = [Staff(userid="s1", name="一"), Staff(userid="s2", name="二")]
        session.add_all(staff)
        people = [Customer(external_userid=f"wx{i:02d}", name=f"路人{i}") for i in range(12)]
        session.add_all(people)
        session.flush()
        for i, c in enumerate(people):
            if i % 3 == 0:
                c.name = f"金卡{i}"  # by name
            for s in staff:
                remark = "金卡会员" if i % 4 == 0 and s is staff[1] else ""  # by remark
                session.add(FollowRelation(customer_id=c.id, staff_id=s.id, remark=remark))
        ids = {c.external_userid: c.id for c in people}
    want = sorted(
        (e for e, i in ids.items() if int(e[2:]) % 3 == 0 or int(e[2:]) % 4 == 0),
        key=ids.__getitem__,
        reverse=True,
    )
    seen: list[str] = []
    before = None
    while True:
        with db.read() as session:
            page = cl.search_customers(
                cl.CustomerFilter(q="金卡"),
                session=session,
                tz=ZoneInfo("Asia/Shanghai"),
                display_names={},
                before=before,
                limit=2,
            )
        seen += [r.external_userid for r in page.rows]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == want  # 0, 3, 4, 6, 8, 9 by id, newest first; 0 matches both ways, once
    assert len(want) == 6
