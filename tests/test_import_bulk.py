"""The column-by-column check of CSV chunks (bot/ingest/bulk.py) against the per-row validators.

A file's orders and events are checked a chunk at a time; every row must come out exactly
as the per-row validator makes it (the same stored values, the same refusals with the same
reasons and line numbers, the same repeats refused), whatever mix of rows a chunk holds.
"""

from __future__ import annotations

import random
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.ingest.rows import EVENT_COLUMNS, ORDER_COLUMNS, Kind
from bot.ingest.service import Ingestor

TIMES = [
    "2025-06-03 08:01:18",
    "2025-06-03T08:01:18",
    "2025-06-03T08:01:18.5",
    "2025-06-03T08:01:18.123456",
    "2025-06-03",
    "2025-06-03 08:01",
    "2025-06-03T08:01:18Z",
    "2025-06-03T08:01:18+08:00",
    "2025-06-03T08:01:18-03:30",
    "20250603T080118",
    " 2025-06-03 08:01:18 ",
    "2025-03-09 02:30:00",  # New York: in the spring gap
    "2025-11-02 01:30:00",  # New York: the autumn fold
    "2025-07-01 12:00:00",  # New York: summer time
    "1999-12-31 23:00:00",  # before 2000 in UTC
    "2000-01-01 07:59:59",  # before 2000 in UTC from Shanghai
    "2999-01-01 00:00:00",  # after tomorrow
    "0001-01-01 00:00:00",  # overflows on the way to UTC east of Greenwich
    "9999-12-31 23:59:59",
    "05/01/2026",
    "",
    "not a time",
]
AMOUNTS = [
    "396.44",
    "5",
    "5.5",
    "0",
    "0.00",
    "1,299.00",
    " 12.3 ",
    "5.",
    ".5",
    "-1",
    "1e3",
    "99999999.99",
    "100000000",
    "１００",
    "",
    "1.234",
]
STATUSES = ["paid", "refunded", "PAID", " refunded ", "pending", ""]
FLAGS = ["0", "1", "", "是", "否", "true", "maybe", " 1 "]
IDS = ["wm_1", "", " wm_2 ", "x" * 65, "a\x00b", "客户甲", "un_1"]
KINDS = ["view", "cart", "", "k" * 33, " click "]


def _order_rows(rnd: random.Random, n: int) -> list[list[str]]:
    rows = []
    for i in range(n):
        order_id = rnd.choice([f"O{i}", f"O{i}", f"O{i}", f"O{rnd.randrange(i + 1)}", "", " O "])
        rows.append(
            [
                order_id,
                rnd.choice(IDS),
                rnd.choice(IDS),
                rnd.choice(AMOUNTS),
                rnd.choice(TIMES),
                rnd.choice(STATUSES),
                rnd.choice(["服饰", "", " 美妆 ", "c" * 65]),
                rnd.choice(FLAGS),
            ]
        )
    return rows


def _event_rows(rnd: random.Random, n: int) -> list[list[str]]:
    return [
        [
            rnd.choice([f"E{i}", f"E{i}", f"E{rnd.randrange(i + 1)}", ""]),
            rnd.choice(IDS),
            rnd.choice(IDS),
            rnd.choice(KINDS),
            rnd.choice(TIMES),
        ]
        for i in range(n)
    ]


def _outcome(ingestor: Ingestor) -> tuple[Any, ...]:
    rejected = [
        (r.error.index, r.error.field, r.error.reason, dict(r.raw))
        for r in ingestor.result.rejected
    ]
    return ingestor.result.rows, ingestor.pending, rejected, ingestor.seen


def _both(kind: Kind, rows: list[list[str]], tz: tzinfo, chunk: int) -> None:
    columns = list(ORDER_COLUMNS if kind == "orders" else EVENT_COLUMNS)
    numbers = [i + 2 for i in range(len(rows))]  # line numbers as a CSV file gives them
    one_by_one = Ingestor(kind, tz)
    for number, values in zip(numbers, rows, strict=True):
        one_by_one.feed(number, dict(zip(columns, values, strict=True)))
    chunked = Ingestor(kind, tz)
    for start in range(0, len(rows), chunk):
        chunked.feed_chunk(numbers[start : start + chunk], rows[start : start + chunk], columns)
    assert _outcome(chunked) == _outcome(one_by_one)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "UTC"])
@pytest.mark.parametrize("chunk", [1, 7, 600])  # 1: a clean row is a chunk on its own
def test_mixed_chunks_come_out_as_row_by_row(zone: str, chunk: int) -> None:
    rnd = random.Random(chunk)
    tz = ZoneInfo(zone)
    _both("orders", _order_rows(rnd, 600), tz, chunk=chunk)
    _both("events", _event_rows(rnd, 600), tz, chunk=chunk)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
def test_clean_chunks_take_the_column_path_with_the_same_values(zone: str) -> None:
    """Chunks with no row to refuse (the column path end to end), across a DST change."""
    rnd = random.Random(11)
    rows = [
        [
            f"O{i}",
            f"wm_{i % 50}",
            "",
            f"{rnd.randrange(1, 10**6) / 100:.2f}",
            # A chunk within summer time, then chunks across New York's DST changes.
            f"2025-{rnd.randrange(6, 9) if i < 500 else rnd.randrange(1, 13):02d}"
            f"-{rnd.randrange(1, 29):02d} 1{i % 10}:00:00",
            "paid",
            "服饰",
            rnd.choice(["0", "1", ""]),
        ]
        for i in range(2000)
    ]
    _both("orders", rows, ZoneInfo(zone), chunk=500)


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("size", [1, 2, 5, 100])
def test_chunks_number_rows_as_the_row_reader_does(tmp_path: Path, ending: str, size: int) -> None:
    """Line numbers with quoted line breaks, blank lines and rows of only commas."""
    from bot.ingest.readers import open_csv

    lines = [
        "order_id,amount",
        "A1,1",
        "",
        '"A2\nsecond line",2',
        ",",
        '"A3\r\nthird\rfourth",3',
        "A4,4",
        "",
        "",
        "A5,5,extra",
        "A6,6",
    ]
    path = tmp_path / "lines.csv"
    path.write_bytes(ending.join(lines).encode() + ending.encode())
    with open_csv(path) as table:
        expected = list(table.rows)
    with open_csv(path) as table:
        assert table.chunks is not None
        got = [
            (number, values)
            for numbers, rows in table.chunks(size)
            for number, values in zip(numbers, rows, strict=True)
        ]
    assert got == expected
    assert [n for n, _ in expected] == [2, 5, 9, 10, 13, 14]
