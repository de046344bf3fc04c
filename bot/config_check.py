"""What `tagbot check-config` finds beyond loading the file: channels against the last sync,
and the customer groups tier and campaign rules name against the groups synced.

Reads only. The CLI and the console's 系统 page both call `channel_findings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot.channels.declared import group_problems, staff_problems
from bot.config import Settings, channel_example_values
from bot.groups import names

NOT_CHECKED = "channels: staff not checked against WeCom (未核对接待成员) — "
GROUPS_NOT_CHECKED = (
    "channels: groups not checked against WeCom (未核对客户群) — no customer groups synced yet;"
    " serve checks each chat id with WeCom before creating the group code"
)


@dataclass(frozen=True)
class Findings:
    """Problems (check-config exits non-zero) and warnings, each naming its key."""

    problems: list[str]
    warnings: list[str]


def channel_findings(settings: Settings, *, session: Session) -> Findings:
    """Check `[[channels]]` (example links, staff and groups the last sync did not list) and
    the group names rules read."""
    warnings = channel_example_values(settings)
    found: list[str] = []
    groups_named = names.rule_group_problems(settings, session=session)
    if groups_named is None:
        warnings = [*warnings, names.NOT_CHECKED]
    else:
        found += groups_named
    if not settings.channels:
        return Findings(found, warnings)
    staffed = [c for c in settings.channels if not c.is_group]
    problems = staff_problems(settings.channels, session=session) if staffed else []
    if problems is None:
        no_sync = NOT_CHECKED + "no sync yet: run `tagbot sync`, then `tagbot staff list`"
        warnings = [*warnings, no_sync]
    else:
        found += problems
    if any(c.is_group for c in settings.channels):
        groups = group_problems(settings.channels, session=session)
        if groups is None:
            warnings = [*warnings, GROUPS_NOT_CHECKED]
        else:
            found += groups
    return Findings(found, warnings)
