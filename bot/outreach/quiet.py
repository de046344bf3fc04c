"""Quiet hours: a daily "HH:MM-HH:MM" window in the [app] time zone when nothing is created.

The window may wrap midnight ("22:00-08:00"); it includes its start and excludes its end.
An empty setting, or a start equal to its end, means no quiet hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.config import Settings


def _clock_time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class QuietHours:
    """One daily quiet window in a time zone."""

    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, spec: str, zone: ZoneInfo) -> QuietHours | None:
        """Read "HH:MM-HH:MM" (validated by the config); None for no quiet hours."""
        if not spec:
            return None
        first, _, last = spec.partition("-")
        start, end = _clock_time(first), _clock_time(last)
        return None if start == end else cls(start, end, zone)

    def is_quiet(self, now: datetime) -> bool:
        """Tell whether `now` (aware) falls inside the window."""
        local = now.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # wraps midnight

    def ends_at(self, now: datetime) -> datetime:
        """Return when the window holding `now` ends (UTC); `now` itself when not quiet."""
        if not self.is_quiet(now):
            return now
        local = now.astimezone(self.zone)
        day = local.date()
        for _ in range(2):  # today's end, else tomorrow's (a window wrapping midnight)
            end = datetime.combine(day, self.end, tzinfo=self.zone).astimezone(UTC)
            if end > now:
                return end
            day += timedelta(days=1)
        return end


def quiet_hours(settings: Settings) -> QuietHours | None:
    """Return the configured quiet hours, or None."""
    return QuietHours.parse(settings.outreach.quiet_hours, settings.tz)
