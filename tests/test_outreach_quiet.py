"""Quiet hours at their boundaries, wrapping midnight, in the configured time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.outreach.quiet import QuietHours

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("at", "quiet"),
    [
        (local(21, 59), False),
        (local(22, 0), True),  # the start is inside
        (local(23, 59), True),
        (local(0, 0), True),
        (local(7, 59), True),
        (local(8, 0), False),  # the end is outside
        (local(12, 0), False),
    ],
)
def test_a_window_wrapping_midnight(at: datetime, quiet: bool) -> None:
    hours = QuietHours.parse("22:00-08:00", SHANGHAI)
    assert hours is not None
    assert hours.is_quiet(at) is quiet
    assert hours.is_quiet(at.astimezone(UTC)) is quiet  # the zone, not the clock's, decides


def test_ends_at_is_the_next_end_of_the_window() -> None:
    hours = QuietHours.parse("22:00-08:00", SHANGHAI)
    assert hours is not None
    assert hours.ends_at(local(23, 30)) == local(8, 0, day=2)  # tomorrow morning
    assert hours.ends_at(local(3, 0)) == local(8, 0)  # this morning
    assert hours.ends_at(local(8, 0)) == local(8, 0)  # not quiet: now
    assert hours.ends_at(local(12, 0)) == local(12, 0)
    assert hours.ends_at(local(22, 0)).tzinfo == UTC


def test_a_window_within_one_day() -> None:
    hours = QuietHours.parse("12:00-13:30", SHANGHAI)
    assert hours is not None
    assert [hours.is_quiet(local(h, m)) for h, m in [(11, 59), (12, 0), (13, 29), (13, 30)]] == [
        False,
        True,
        True,
        False,
    ]
    assert hours.ends_at(local(12, 15)) == local(13, 30)


def test_no_quiet_hours() -> None:
    assert QuietHours.parse("", SHANGHAI) is None
    assert QuietHours.parse("09:00-09:00", SHANGHAI) is None


def test_the_zone_is_the_configured_one() -> None:
    hours = QuietHours.parse("22:00-08:00", ZoneInfo("Europe/Berlin"))
    assert hours is not None
    # 23:00 in Shanghai is 16:00 in Berlin (winter): not quiet there.
    assert hours.is_quiet(local(23, 0)) is False
    # A DST night: Berlin clocks jump 02:00 -> 03:00 on 2027-03-28; the end is 08:00 CEST.
    night = datetime(2027, 3, 28, 1, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert hours.ends_at(night) == datetime(2027, 3, 28, 6, 0, tzinfo=UTC)
