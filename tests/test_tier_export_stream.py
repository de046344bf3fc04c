"""A tier's export streams: complete and correct for thousands of rows, bytes before rows.

The .xlsx is written as its rows are read (`xlsx_stream`), page by page from the database
(`tier_export.members`): the first bytes leave before any member is read, later ones
while the pages are still being read, and the workbook Excel (here openpyxl) opens holds
every member in order with their staff, since and recorded metrics.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from openpyxl import load_workbook
from sqlalchemy import event, insert, select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import Customer, FollowRelation, Staff, TierAssignment, TierTransition
from bot.reports import tier_export, xlsx_stream
from handlers.app import create_app
from tests.support.console import console_config, sign_in_with_token

MEMBERS = 4_500  # three pages of tier_export.PAGE
SINCE = datetime(2026, 11, 30, 16, 0, 30, tzinfo=UTC)  # 00:00:30 local on 12-01
ZONE = ZoneInfo("Asia/Shanghai")


def _seed(db: Database) -> None:
    """MEMBERS customers in 普通 (with a staff member each, and their recorded spend), and
    some in 高价值 interleaved by id, which the export of 普通 must leave out."""
    with db.write() as s:
        staff_id = s.execute(insert(Staff).values(userid="amy", name="艾米").returning(Staff.id))
        sid = staff_id.scalar_one()
        s.execute(
            insert(Customer),
            [{"external_userid": f"wm{i:05d}", "name": _name(i)} for i in range(MEMBERS + 500)],
        )
        ids = s.scalars(select(Customer.id).order_by(Customer.id)).all()
        tiers = ["高价值" if i % 10 == 9 else "普通" for i in range(len(ids))]
        s.execute(
            insert(TierAssignment),
            [
                {"customer_id": c, "dimension": "value", "tier": t, "since": SINCE}
                for c, t in zip(ids, tiers, strict=True)
            ],
        )
        s.execute(
            insert(TierTransition),
            [
                {
                    "customer_id": c,
                    "dimension": "value",
                    "from_tier": None,
                    "to_tier": t,
                    "at": SINCE,
                    "metrics": {"spend_365d": i * 1.5},
                }
                for i, (c, t) in enumerate(zip(ids, tiers, strict=True))
            ],
        )
        s.execute(
            insert(FollowRelation),
            [{"staff_id": sid, "customer_id": c, "status": "active"} for c in ids[::2]],
        )


def _name(i: int) -> str:
    """Names a spreadsheet or XML could mistake: formulas, markup, spaces, control chars."""
    return ("=1+1", "<b>&amp;</b>", " 空格 ", "张三\x07", "🙂")[i % 5] + str(i)


def _expected(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as s:
        ids = s.scalars(
            select(TierAssignment.customer_id)
            .where(TierAssignment.dimension == "value", TierAssignment.tier == "普通")
            .order_by(TierAssignment.customer_id)
        ).all()
        ext = {
            int(r[0]): str(r[1]) for r in s.execute(select(Customer.id, Customer.external_userid))
        }
        followed = set(s.scalars(select(FollowRelation.customer_id)).all())
    local = datetime(2026, 12, 1, 0, 0, 30)
    rows = []
    for c in ids:
        i = int(ext[c][2:])
        name = _name(i).replace("\x07", "")  # XML 1.0 cannot hold it
        rows.append((ext[c], name, "艾米" if c in followed else None, "普通", local, i * 1.5))
    return rows


def _read(data: bytes) -> list[tuple[Any, ...]]:
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    book = load_workbook(io.BytesIO(data))
    return list(book.active.iter_rows(values_only=True))


def _check(rows: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert rows[0] == ("external_userid", "name", "staff", "tier", "since", "spend_365d")
    assert len(rows) - 1 == len(expected) == MEMBERS
    for got, want in zip(rows[1:], expected, strict=True):
        assert got[:4] == want[:4]
        assert abs((got[4] - want[4]).total_seconds()) < 0.01
        assert got[5] == want[5]


def test_the_export_streams_pages_as_the_bytes_go(db: Database) -> None:
    _seed(db)
    pages: list[int] = []  # the members' page queries run so far, at each chunk

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM tier_assignments JOIN customers" in statement:
            pages.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        chunks: list[tuple[int, bytes]] = []
        for chunk in tier_export.stream_xlsx(
            db, "value", "普通", ("spend_365d",), tz=ZONE, staff_names={}
        ):
            chunks.append((len(pages), chunk))
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    total = len(pages)
    assert total == 4  # three pages and the empty one that ends them
    assert chunks[0][0] == 0  # bytes before any member was read
    assert any(0 < seen < total for seen, _ in chunks)  # and while the pages were read
    _check(_read(b"".join(c for _, c in chunks)), _expected(db))


@pytest.fixture
def console(db_url: str) -> Iterator[Flask]:
    app = create_app(settings_from_mapping(console_config(db_url), environ={}))
    yield app
    app.extensions["tagbot"].close()


def test_the_export_route_streams_a_complete_workbook(console: Flask, db: Database) -> None:
    _seed(db)
    web = console.test_client()
    sign_in_with_token(web)
    with web.get("/admin/tiers/value/export.xlsx?tier=普通", buffered=False) as answer:
        assert answer.status_code == 200
        assert answer.is_streamed
        assert answer.mimetype == xlsx_stream.MIMETYPE
        disposition = answer.headers["Content-Disposition"]
        assert disposition.endswith("''" + quote("客户价值-普通.xlsx"))
        data = b"".join(answer.iter_encoded())
    _check(_read(data), _expected(db))


def test_cells_keep_their_types_and_text() -> None:
    when = datetime(2026, 12, 1, 9, 30, 15)
    rows = [
        ("=SUM(A1)", " lead", "a\x00b\x1fc", True, 7, -2.5, when, None, "<&>\"'", "末尾 "),
    ]
    header = [f"h{i}" for i in range(len(rows[0]))]
    data = b"".join(xlsx_stream.stream_xlsx("a/b:c*?[d]", header, rows))
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["a_b_c___d_"]
    got = list(book.active.iter_rows(values_only=True))
    assert got[0] == tuple(header)
    assert book.active["A1"].font.b
    assert got[1][:6] == ("=SUM(A1)", " lead", "abc", True, 7, -2.5)
    assert abs((got[1][6] - when).total_seconds()) < 0.01
    assert got[1][7:] == (None, "<&>\"'", "末尾 ")
    assert book.active["A2"].data_type == "s"  # text, not a formula


def test_rows_past_a_sheets_limit_go_on_in_new_sheets_with_the_header() -> None:
    # Excel holds 1,048,576 rows a sheet; a bigger tier (10 M customers) goes on in a new
    # sheet. Checked with a limit of 4 rows (the header and 3 members) a sheet.
    rows = [(f"wm{n}", n) for n in range(7)]
    data = b"".join(xlsx_stream.stream_xlsx("客户价值-高价值", ["id", "n"], rows, max_rows=4))
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["客户价值-高价值", "客户价值-高价值 (2)", "客户价值-高价值 (3)"]
    sheets = [list(book[name].iter_rows(values_only=True)) for name in book.sheetnames]
    assert [len(s) for s in sheets] == [4, 4, 2]
    assert all(s[0] == ("id", "n") for s in sheets)
    assert [r for s in sheets for r in s[1:]] == rows
    # Exactly full: no empty sheet after it.
    full = b"".join(xlsx_stream.stream_xlsx("t", ["id", "n"], rows[:6], max_rows=4))
    assert load_workbook(io.BytesIO(full)).sheetnames == ["t", "t (2)"]
    assert xlsx_stream.MAX_ROWS == 1_048_576
