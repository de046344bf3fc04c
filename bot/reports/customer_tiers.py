"""分层与原因: a customer's tier explanation (bot.tiering.why) laid out for the console.

`why.explain_customer` gives each dimension's tier, since when, how it was reached and the
values its rules read; this adds, per tier of the dimension, its rule as configured and
whether this customer's values meet it (the facts against the thresholds), and each value
with its definition, so the page reads as a table instead of log lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.rules import Dimension
from bot.rules.dimension import TagFromDimension, TieredDimension
from bot.rules.explain import TRUTH_WORDS, explain_condition, format_value
from bot.rules.vocabulary import BY_NAME, GROUP_PREFIX, PROFILE_PREFIX, TIER_PREFIX
from bot.tiering.why import TierView


@dataclass(frozen=True)
class RuleCheck:
    """One tier's rule and whether this customer's values meet it."""

    tier: str
    kind: str  # when | stay (the current tier's condition to stay)
    rule: str  # as configured
    truth: bool | None  # None: unknown (a value is missing)
    verdict: str  # 满足 / 未满足 / 未知
    facts: tuple[str, ...]  # "spend_365d = 3200 ≥ 2000"
    chosen: bool  # the tier the customer holds now


@dataclass(frozen=True)
class MetricValue:
    """A value the dimension's rules read, with what it means."""

    name: str
    value: str  # formatted; 缺失 for none
    definition: str


@dataclass(frozen=True)
class TierReason:
    """One dimension for one customer, readable."""

    dimension: str
    tag_group: str
    tier: str | None  # stored by the last run
    since: datetime | None
    since_days: int | None
    reason: str  # how the tier was reached, or why none was
    matched: bool  # a tier's rule matched (or a tag_from value gave the tag)
    next_tier: str | None  # what a run would give now
    changed: bool  # the data changed since the run: the next run gives `next_tier`
    checks: tuple[RuleCheck, ...]
    metrics: tuple[MetricValue, ...]
    source: str  # tag_from: the name the tag is read from; "" for tiers
    rank_note: str = ""  # which day's 客户总体 the ranks count against, when not today's


def define_name(name: str) -> str:
    """Return what a rule name means, in Chinese."""
    if name in BY_NAME:
        return BY_NAME[name].definition
    if name.startswith(PROFILE_PREFIX):
        return f"导入的客户属性“{name[len(PROFILE_PREFIX) :]}”"
    if name.startswith(GROUP_PREFIX):
        return f"当前是否在名为“{name[len(GROUP_PREFIX) :]}”的客户群中"
    if name.startswith(TIER_PREFIX):
        return f"维度 {name[len(TIER_PREFIX) :]} 的层级（同一次分层中先算出的维度）"
    return ""


def _checks(dim: TieredDimension, view: TierView, row: dict[str, Any]) -> tuple[RuleCheck, ...]:
    out: list[RuleCheck] = []
    for tier in dim.tiers:
        holds = tier.tag == view.tier
        out.append(_check(tier.tag, "when", tier.when_text, tier.when, row, holds))
        if holds and tier.stay is not None and tier.stay_text is not None:
            out.append(_check(tier.tag, "stay", tier.stay_text, tier.stay, row, holds))
    return tuple(out)


def _check(
    tag: str, kind: str, text: str, rule: Any, row: dict[str, Any], chosen: bool
) -> RuleCheck:
    truth, facts = explain_condition(rule, row)
    return RuleCheck(tag, kind, text, truth, TRUTH_WORDS[truth], tuple(facts), chosen)


def readable_tiers(
    views: Sequence[TierView], dims: Sequence[Dimension], *, now: datetime, tz: ZoneInfo
) -> list[TierReason]:
    """Lay out each dimension's explanation: rules with verdicts, values with definitions."""
    by_name = {d.name: d for d in dims}
    out: list[TierReason] = []
    for view in views:
        dim = by_name.get(view.dimension)
        row = dict(view.metrics)
        checks: tuple[RuleCheck, ...] = ()
        source = ""
        if isinstance(dim, TieredDimension):
            checks = _checks(dim, view, row)
        elif isinstance(dim, TagFromDimension):
            source = dim.source.name
        since_days = (
            None
            if view.since is None
            else (now.astimezone(tz).date() - view.since.astimezone(tz).date()).days
        )
        out.append(
            TierReason(
                dimension=view.dimension,
                tag_group=view.tag_group,
                tier=view.tier,
                since=view.since,
                since_days=since_days,
                reason=view.reason,
                matched=view.tier is not None,
                next_tier=view.now,
                changed=view.now != view.tier,
                checks=checks,
                metrics=tuple(
                    MetricValue(
                        name, "缺失" if value is None else format_value(value), define_name(name)
                    )
                    for name, value in view.metrics.items()
                ),
                source=source,
                rank_note=view.rank_note,
            )
        )
    return out
