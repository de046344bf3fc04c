"""`tagbot import orders|events|profiles FILE` on real CSV (UTF-8, BOM, GBK) and .xlsx files."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from bot.db import Database
from bot.db.models import InteractionEvent, Order, ProfileAttribute
from tagbot.cli import main
from tests.support.corp import ADMIN_TOKEN, AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN

ORDER_HEADER = [
    "order_id",
    "external_userid",
    "unionid",
    "amount",
    "paid_at",
    "status",
    "category",
    "is_new_product",
]


@pytest.fixture
def config(tmp_path: Path, db: Database) -> Path:
    """A config file on the test database."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[wecom]
corp_id = "{CORP_ID}"
secret = "{SECRET}"
agent_id = {AGENT_ID}
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
api_base = "http://127.0.0.1:9/cgi-bin/"
[database]
url = "{db.url}"
[server]
admin_token = "{ADMIN_TOKEN}"
[app]
log_level = "WARNING"
""",
        encoding="utf-8",
    )
    return path


def _write_csv(path: Path, rows: list[list[Any]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "import", *args])


def _counts(out: str) -> dict[str, int]:
    found = {}
    for line in out.splitlines():
        for key in ("inserted", "updated", "unchanged", "rejected"):
            if f" {key}:" in line:
                found[key] = int(line.rsplit(":", 1)[1])
    return found


def _rejects(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


ORDER_ROWS: list[list[Any]] = [
    ORDER_HEADER,
    ["O1", "wm_1", "un_1", "199.90", "2026-05-01 10:00:00", "paid", "美妆", "是"],
    ["O2", "", "un_2", "50", "2026-05-01T10:00:00Z", "refunded", "", "0"],
    ["O3", "wm_3", "", "12,00", "2026-05-01", "paid", "", ""],  # bad amount
    ["O4", "wm_4", "", "10", "2026-05-01", "pending", "", ""],  # unknown status
    ["O5", "wm_5", "", "10", "05/01/2026", "paid", "", ""],  # unparseable date
    ["", "wm_6", "", "10", "2026-05-01", "paid", "", ""],  # missing id
    ["O1", "wm_1", "un_1", "1.00", "2026-05-02", "paid", "", ""],  # same id twice
    ["O8", "wm_8", "", "10", "2026-05-01", "paid", "", "maybe"],  # bad boolean
]


def test_orders_csv_with_bom_bad_rows_and_an_idempotent_reimport(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write_csv(tmp_path / "orders.csv", ORDER_ROWS, encoding="utf-8-sig")
    assert _run(config, "orders", str(source)) == 0
    out = capsys.readouterr().out
    assert _counts(out) == {"inserted": 2, "updated": 0, "unchanged": 0, "rejected": 6}
    rejects = _rejects(tmp_path / "orders.rejects.csv")
    by_row = {r["row"]: (r["field"], r["reason"]) for r in rejects}
    assert sorted(by_row, key=int) == ["4", "5", "6", "7", "8", "9"]
    assert by_row["4"][0] == "amount"
    assert by_row["5"][0] == "status"
    assert by_row["6"][0] == "paid_at"
    assert by_row["7"] == ("order_id", "缺少必填值")
    assert by_row["8"][0] == "order_id"
    assert "序号 2" in by_row["8"][1]  # points at the first occurrence's line
    assert by_row["9"][0] == "is_new_product"
    assert rejects[0]["order_id"] == "O3"  # the original values are kept beside the reason
    assert rejects[0]["amount"] == "12,00"

    with db.read() as session:
        orders = {o.order_id: o for o in session.scalars(select(Order))}
    assert set(orders) == {"O1", "O2"}
    assert orders["O1"].amount == Decimal("199.90")
    assert orders["O1"].paid_at == datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    assert orders["O1"].is_new_product is True
    assert orders["O2"].status == "refunded"

    assert _run(config, "orders", str(source), "--rejects", str(tmp_path / "r2.csv")) == 0
    out = capsys.readouterr().out
    assert _counts(out) == {"inserted": 0, "updated": 0, "unchanged": 2, "rejected": 6}
    assert len(_rejects(tmp_path / "r2.csv")) == 6
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 2


def test_a_refund_file_updates_the_order(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    first = [ORDER_HEADER, ["R1", "wm_1", "", "10.00", "2026-05-01", "paid", "", ""]]
    refund = [ORDER_HEADER, ["R1", "wm_1", "", "10.00", "2026-05-01", "refunded", "", ""]]
    assert _run(config, "orders", str(_write_csv(tmp_path / "a.csv", first))) == 0
    assert _run(config, "orders", str(_write_csv(tmp_path / "b.csv", refund))) == 0
    out = capsys.readouterr().out
    assert "更新 updated:    1" in out
    assert not (tmp_path / "b.rejects.csv").exists()
    with db.read() as session:
        assert session.scalar(select(Order.status)) == "refunded"


def test_gbk_csv_is_decoded_and_said_so(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["external_userid", "unionid", "地区", "会员等级"], ["wm_1", "", "华东", "金卡"]]
    source = _write_csv(tmp_path / "profiles.csv", rows, encoding="gbk")
    assert _run(config, "profiles", str(source)) == 0
    captured = capsys.readouterr()
    assert "GBK" in captured.err
    assert _counts(captured.out)["inserted"] == 1
    with db.read() as session:
        attrs = dict(session.execute(select(ProfileAttribute.name, ProfileAttribute.value)).all())
    assert attrs == {"地区": "华东", "会员等级": "金卡"}


def test_unreadable_files_are_refused_and_nothing_is_written(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    good = "O1,wm_1,,10,2026-05-01,paid,,\n"
    latin = tmp_path / "latin.csv"
    latin.write_bytes((",".join(ORDER_HEADER) + "\n" + good).encode() + b"O2,caf\xe9,,1,x,paid,,\n")
    assert _run(config, "orders", str(latin)) == 1
    assert "无法识别的文件编码" in capsys.readouterr().err

    missing = _write_csv(tmp_path / "missing.csv", [["order_id", "external_userid"], ["O1", "w"]])
    assert _run(config, "orders", str(missing)) == 1
    err = capsys.readouterr().err
    assert "缺少必需的列" in err
    assert "amount" in err

    assert _run(config, "orders", str(tmp_path / "nope.csv")) == 1
    assert "文件不存在" in capsys.readouterr().err
    wrong = tmp_path / "orders.json"
    wrong.write_text("[]")
    assert _run(config, "orders", str(wrong)) == 1
    assert "只支持 .csv 和 .xlsx" in capsys.readouterr().err
    fake = tmp_path / "fake.xlsx"
    fake.write_text("not a workbook")
    assert _run(config, "orders", str(fake)) == 1
    assert "无法作为 .xlsx 打开" in capsys.readouterr().err
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0


def test_unknown_columns_are_ignored_with_a_warning(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        ["event_id", "External_UserID", "kind", "occurred_at", "channel"],
        ["E1", "wm_1", "visit", "2026-05-01T08:00:00+08:00", "小程序"],
        ["E2", "wm_1", "click", "2026-05-01T09:00:00+08:00", "小程序", "extra"],
    ]
    assert _run(config, "events", str(_write_csv(tmp_path / "events.csv", rows))) == 0
    captured = capsys.readouterr()
    assert "unknown columns ignored: channel" in captured.err
    assert _counts(captured.out) == {"inserted": 1, "updated": 0, "unchanged": 0, "rejected": 1}
    with db.read() as session:
        event = session.scalars(select(InteractionEvent)).one()
    assert event.occurred_at == datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
    assert _rejects(tmp_path / "events.rejects.csv")[0]["reason"].startswith("该行有 6 列")


def test_xlsx_orders_and_profiles(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(ORDER_HEADER)
    ws.append([1001, "wm_1", None, 199.9, datetime(2026, 5, 1, 10, 0), "paid", "服饰", True])
    ws.append(["X2", "wm_2", None, 0.1 + 0.2, "2026-05-01 10:00", "PAID", None, 0])
    ws.append(["X3", "wm_3", None, "abc", datetime(2026, 5, 1), "paid", None, None])
    ws.append([None] * 8)  # blank rows Excel leaves behind are skipped
    wb.save(tmp_path / "orders.xlsx")
    assert _run(config, "orders", str(tmp_path / "orders.xlsx")) == 0
    assert _counts(capsys.readouterr().out) == {
        "inserted": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
    }
    with db.read() as session:
        orders = {o.order_id: o for o in session.scalars(select(Order))}
    assert orders["1001"].amount == Decimal("199.90")
    assert orders["1001"].paid_at == datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    assert orders["1001"].is_new_product is True
    assert orders["X2"].amount == Decimal("0.30")
    assert _rejects(tmp_path / "orders.rejects.csv")[0]["row"] == "4"

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["external_userid", "unionid", "region", "age", "member_level", "occupation"])
    ws.append(["wm_1", "un_1", "华东", 31, "金卡", "教师"])
    ws.append([None, "un_9", "华南", 45, None, None])
    wb.save(tmp_path / "profiles.xlsx")
    for expected in ({"inserted": 2, "updated": 0}, {"inserted": 0, "updated": 0, "unchanged": 2}):
        assert _run(config, "profiles", str(tmp_path / "profiles.xlsx")) == 0
        counts = _counts(capsys.readouterr().out)
        assert {k: counts[k] for k in expected} == expected
    with db.read() as session:
        attrs = {(p.subject, p.name): p.value for p in session.scalars(select(ProfileAttribute))}
    assert attrs == {
        ("wm_1", "region"): "华东",
        ("wm_1", "age"): "31",
        ("wm_1", "member_level"): "金卡",
        ("wm_1", "occupation"): "教师",
        ("unionid:un_9", "region"): "华南",
        ("unionid:un_9", "age"): "45",
    }


def test_a_huge_cell_after_the_first_batch_is_a_rejected_row_not_half_an_import(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.ingest.service import FILE_BATCH

    rows: list[list[Any]] = [ORDER_HEADER]
    rows += [[f"H{i}", "wm_h", "", "1", "2026-05-01", "paid", "", ""] for i in range(FILE_BATCH)]
    rows.append(["H-huge", "wm_h", "", "1", "2026-05-01", "paid", "x" * 200_000, ""])
    source = _write_csv(tmp_path / "huge.csv", rows)
    assert _run(config, "orders", str(source)) == 0
    assert _counts(capsys.readouterr().out)["rejected"] == 1
    assert _rejects(tmp_path / "huge.rejects.csv")[0]["field"] == "category"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == FILE_BATCH


def test_a_rejects_path_that_cannot_be_written_loses_no_rejected_row(
    tmp_path: Path, config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[list[Any]] = [
        ORDER_HEADER,
        ["R1", "wm_r", "", "1", "2026-05-01", "paid", "", ""],
        ["R2", "wm_r", "", "-1", "2026-05-01", "paid", "", ""],
    ]
    source = _write_csv(tmp_path / "r.csv", rows)
    # A directory that does not exist: refused before anything is stored.
    missing = tmp_path / "no-such-dir" / "r.rejects.csv"
    assert _run(config, "orders", str(source), "--rejects", str(missing)) == 2
    assert "no such directory" in capsys.readouterr().err
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
    # A place no one can write to (not even root): the rejects go to a temporary file.
    assert _run(config, "orders", str(source), "--rejects", "/proc/r.rejects.csv") == 0
    out, err = capsys.readouterr()
    assert "/proc/r.rejects.csv" in err
    written = Path(out.rsplit("rejects written to: ", 1)[1].strip())
    try:
        assert [r["row"] for r in _rejects(written)] == ["3"]
    finally:
        written.unlink()


def _large_orders(tag: str) -> list[list[Any]]:
    """1,300 rows: linked by external_userid, by unionid or to nobody, with bad rows."""
    rows: list[list[Any]] = [ORDER_HEADER]
    for i in range(1300):
        c = i % 40
        ext, union = (f"wm_big_{c}", "") if c % 3 else ("", f"un_big_{c}")
        if c >= 30:
            ext = f"wm_stranger_{c}"  # nobody we know: stored without a customer
        status = "refunded" if (tag == "second" and i % 7 == 0) else "paid"
        amount = f"{(i % 500) + 0.5:.2f}"
        rows.append([f"B{i:05d}", ext, union, amount, "2026-05-01 10:00:00", status, "美妆", i % 2])
    rows[5][3] = "-3"  # a negative amount
    rows[7][6] = 'tab\there, back\\slash, "quote"\nnew line, \\N'  # COPY's special bytes
    rows[600][5] = "pending"  # an unknown status
    rows[900] = [*rows[12][:1], *rows[900][1:]]  # B00011 twice: the later one is refused
    if tag == "second":
        rows.append(["B99999", "wm_big_1", "", "88.00", "2026-05-02 10:00:00", "paid", "", "0"])
    return rows


def _import_twice(db: Database, first: Path, second: Path, batch: int) -> list[Any]:
    """Import two files into emptied orders and marks; return what each did and stored."""
    from bot.db.models import TouchedCustomer
    from bot.ingest.service import import_file

    with db.write() as session:
        session.execute(Order.__table__.delete())
        session.execute(TouchedCustomer.__table__.delete())
    seen: list[Any] = []
    for path in (first, second):
        result = import_file("orders", path, db=db, tz=UTC, batch=batch)
        with db.read() as session:
            stored = sorted(
                session.execute(
                    select(
                        Order.order_id,
                        Order.customer_id,
                        Order.external_userid,
                        Order.unionid,
                        Order.amount,
                        Order.paid_at,
                        Order.status,
                        Order.category,
                        Order.is_new_product,
                    )
                ).all()
            )
            touched = set(session.scalars(select(TouchedCustomer.customer_id)))
        rejected = [(r.error.index, r.error.field, r.error.reason) for r in result.rejected]
        counts = (result.rows, result.inserted, result.updated, result.unchanged)
        seen.append((counts, rejected, stored, touched))
    return seen


def test_large_batches_store_the_same_as_small_ones(tmp_path: Path, db: Database) -> None:
    """PostgreSQL writes a large batch by COPY and a small one by a multi-row INSERT;
    both give the same rows, links, counts, rejects and touched marks (SQLite: one path)."""
    from sqlalchemy import event

    from bot.db.models import Customer
    from bot.ingest.store import COPY_MIN_ROWS

    with db.write() as session:
        for c in range(30):
            session.add(Customer(external_userid=f"wm_big_{c}", unionid=f"un_big_{c}"))
    first = _write_csv(tmp_path / "first.csv", _large_orders("first"))
    second = _write_csv(tmp_path / "second.csv", _large_orders("second"))

    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    small = _import_twice(db, first, second, batch=COPY_MIN_ROWS // 5)
    copied_small = sum("_tagbot_import_stage" in s for s in statements)
    large = _import_twice(db, first, second, batch=10_000)
    copied = sum("_tagbot_import_stage" in s for s in statements) - copied_small

    assert small == large
    (counts, rejected, stored, touched), (counts2, rejected2, stored2, _) = large
    assert counts == (1300, 1297, 0, 0)
    assert [r[:2] for r in rejected] == [
        (6, "amount"),
        (602, "status"),
        (902, "order_id"),
    ]  # row 8 spans two lines
    assert len(stored) == 1297
    linked = {s.order_id: s.customer_id for s in stored}
    assert linked["B00001"] is not None
    assert linked["B00035"] is None  # wm_stranger_35: nobody we know
    assert [s.category for s in stored if s.order_id == "B00006"] == [
        'tab\there, back\\slash, "quote"\nnew line, \\N'
    ]
    assert touched == {c for c in linked.values() if c is not None}
    refunds = sum(1 for s in stored2 if s.status == "refunded")
    assert counts2 == (1301, 1, refunds, 1297 - refunds)
    assert {r[:2] for r in rejected2} == {r[:2] for r in rejected}
    if db.engine.dialect.name == "postgresql":
        assert copied_small == 0
        assert copied > 0  # the large batches really went by COPY


def test_an_unchanged_reimport_leaves_postgresql_rows_alone(tmp_path: Path, db: Database) -> None:
    """A re-sent file writes nothing: PostgreSQL's ON CONFLICT DO UPDATE would lock (and so
    write) every conflicting row even when its WHERE is false; unchanged rows never get there."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    from sqlalchemy import text

    from bot.ingest.service import import_file

    source = _write_csv(tmp_path / "again.csv", _large_orders("first"))
    import_file("orders", source, db=db, tz=UTC, batch=10_000)
    result = import_file("orders", source, db=db, tz=UTC, batch=10_000)
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 1297)
    with db.read() as session:
        # A row locked or updated since its insert carries a transaction id in xmax.
        touched = session.scalar(text("SELECT count(*) FROM orders WHERE xmax::text <> '0'"))
    assert touched == 0
