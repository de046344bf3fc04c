"""What `tagbot check-config` finds beyond loading the file: channels against the last sync.

Reads only. The CLI and the console's 系统 page both call `channel_findings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot.channels.declared import staff_problems
from bot.config import Settings, channel_example_values

NOT_CHECKED = "channels: staff not checked against WeCom (未核对接待成员) — "


@dataclass(frozen=True)
class Findings:
    """Problems (check-config exits non-zero) and warnings, each naming its key."""

    problems: list[str]
    warnings: list[str]


def channel_findings(settings: Settings, *, session: Session) -> Findings:
    """Check `[[channels]]`: example links, and staff the last sync did not list."""
    warnings = channel_example_values(settings)
    if not settings.channels:
        return Findings([], warnings)
    problems = staff_problems(settings.channels, session=session)
    if problems is None:
        no_sync = NOT_CHECKED + "no sync yet: run `tagbot sync`, then `tagbot staff list`"
        return Findings([], [*warnings, no_sync])
    return Findings(problems, warnings)
