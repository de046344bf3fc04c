"""Cross-key checks of `[[outreach.campaigns]]`: dimension, tiers, `when`, text placeholders.

Run by `bot.config` as it loads, and used by bot/outreach to parse a `when`. It reads the
settings through protocols and builds only on bot/rules, so config imports it without a
cycle (outreach, which reads config, could not hold it).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from bot.rules import Expr, RuleError, Scope, parse_and_check
from bot.rules.dimension import DimensionConfig

# The placeholders each action fills, for one text shared by all of a task's customers.
PLACEHOLDERS: Mapping[str, frozenset[str]] = {
    "group_message": frozenset({"staff"}),
    "group_invite": frozenset({"staff"}),
    "group_broadcast": frozenset({"staff"}),  # the group's owner
    "follow_up": frozenset({"staff"}),
}
_PLACEHOLDER_RE = re.compile(r"\{([^{}\s]*)\}")


class CampaignConfig(Protocol):
    """A campaign as configured (bot.config.CampaignSettings)."""

    @property
    def name(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def dimension(self) -> str: ...
    @property
    def tiers(self) -> Sequence[str]: ...
    @property
    def on_enter(self) -> str | None: ...
    @property
    def when(self) -> str | None: ...
    @property
    def text(self) -> str: ...


def campaign_scope(dimensions: Sequence[DimensionConfig]) -> Scope:
    """Return what a campaign's `when` may read: metrics and every dimension's tier."""
    return Scope(
        earlier={
            d.name: (None if d.tag_from else frozenset(t.tag for t in d.tiers)) for d in dimensions
        }
    )


def parse_when(text: str, dimensions: Sequence[DimensionConfig], *, key: str = "") -> Expr:
    """Parse and type-check a campaign's `when`; raise RuleError (with `key`) when bad."""
    return parse_and_check(text, scope=campaign_scope(dimensions), key=key)


def _suggest(wrong: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(wrong, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _tier_problems(key: str, campaign: CampaignConfig, dim: DimensionConfig | None) -> list[str]:
    if dim is None or dim.tag_from:  # unknown dimension: said once; tag_from: any value
        return []
    tags = [t.tag for t in dim.tiers]
    named = [(f"{key}.tiers", t) for t in campaign.tiers]
    if campaign.on_enter:
        named.append((f"{key}.on_enter", campaign.on_enter))
    return [
        f"{where}: dimension {dim.name!r} has no tier {tier!r}{_suggest(tier, tags)}"
        f" (its tiers: {', '.join(tags)})"
        for where, tier in named
        if tier not in tags
    ]


def _text_problems(key: str, campaign: CampaignConfig) -> list[str]:
    allowed = PLACEHOLDERS.get(campaign.action)
    if allowed is None:  # a webhook's text is a note passed on as is
        return []
    problems = []
    for found in dict.fromkeys(_PLACEHOLDER_RE.findall(campaign.text)):
        if found in allowed:
            continue
        if campaign.action in ("group_message", "group_invite") and found == "name":
            why = (
                "a 群发 task carries one text for all of a staff member's customers, so a"
                " per-customer {name} cannot be filled; only {staff} can"
            )
        else:
            known = ", ".join("{" + p + "}" for p in sorted(allowed))
            why = f"unknown placeholder; a {campaign.action} text knows only {known}"
        problems.append(f"{key}.text: {{{found}}} — {why}")
    return problems


def campaign_problems(
    campaigns: Sequence[CampaignConfig], dimensions: Sequence[DimensionConfig]
) -> list[str]:
    """Return every campaign problem as `key: reason` (a bad `when` with its caret)."""
    by_name = {d.name: d for d in dimensions}
    problems: list[str] = []
    for i, campaign in enumerate(campaigns):
        key = f"outreach.campaigns[{i}]"
        dim = by_name.get(campaign.dimension)
        if dim is None and campaign.dimension:  # "" only by a group_broadcast by group code
            listed = ", ".join(by_name) or "none configured"
            problems.append(
                f"{key}.dimension: unknown dimension {campaign.dimension!r}"
                f"{_suggest(campaign.dimension, list(by_name))} (dimensions: {listed})"
            )
        problems += _tier_problems(key, campaign, dim)
        if campaign.when is not None:
            try:
                parse_when(campaign.when, dimensions, key=f"{key}.when")
            except RuleError as exc:
                problems.append(str(exc))
        problems += _text_problems(key, campaign)
    return problems
