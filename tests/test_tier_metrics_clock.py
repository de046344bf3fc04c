"""Local-day arithmetic in SQL agrees with zoneinfo for zones with DST and odd offsets."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest

from bot.tiering.clock import Clock, offset_segments

ZONES = [
    "Asia/Shanghai",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # half-hour DST
    "Asia/Kathmandu",  # +05:45
    "America/Sao_Paulo",  # dropped DST in 2019
]


@pytest.mark.parametrize("tz", ZONES)
def test_days_ago_matches_zoneinfo(tz: str) -> None:
    as_of = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    clock = Clock(tz, as_of)
    rnd = random.Random(tz)
    # Recent instants (inlined offsets), instants near each transition, and old ones (ICU).
    instants = [as_of - timedelta(seconds=rnd.randrange(0, 86400 * 800)) for _ in range(300)]
    start = int((as_of - timedelta(days=800)).timestamp())
    for t, _ in offset_segments(tz, start, int(as_of.timestamp()))[1:]:
        for d in (-1, 0, 1, 3599, -3600):
            instants.append(datetime.fromtimestamp(t + d, UTC))
    instants += [datetime(1950 + i, 7, 1, 23, 59, tzinfo=UTC) for i in range(0, 60, 7)]
    zone = ZoneInfo(tz)
    expected = [(clock.as_of_day - i.astimezone(zone).date()).days for i in instants]
    con = duckdb.connect()
    con.execute("SET TimeZone = ?", [tz])
    con.execute("CREATE TABLE t (i INTEGER, ts TIMESTAMP)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?)",
        [(n, i.astimezone(UTC).replace(tzinfo=None)) for n, i in enumerate(instants)],
    )
    got = [r[0] for r in con.execute(f"SELECT {clock.days_ago('ts')} FROM t ORDER BY i").fetchall()]
    assert got == expected


def test_segments_find_each_transition_to_the_second() -> None:
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    segments = offset_segments("America/New_York", start, end)
    assert [(datetime.fromtimestamp(t, UTC), o) for t, o in segments] == [
        (datetime(2026, 1, 1, tzinfo=UTC), -5 * 3600),
        (datetime(2026, 3, 8, 7, 0, tzinfo=UTC), -4 * 3600),
        (datetime(2026, 11, 1, 6, 0, tzinfo=UTC), -5 * 3600),
    ]
    assert offset_segments("Asia/Shanghai", start, end) == [(start, 8 * 3600)]
