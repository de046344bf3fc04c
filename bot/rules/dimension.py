"""Dimensions built from config: checked tiers, the hysteresis CASE, and `tag_from` tags.

Tiered dimension — exact semantics, for tiers T1..Tn in config order, a customer whose
current tier is `cur_tier`, entered `cur_since_days` days ago, and the dimension's
`min_dwell_days` D:

1. A tier's condition is its `when`; for the customer's current tier only, its `stay`
   (when it has one) replaces its `when`. A condition holds only when it is true (unknown,
   from a missing value, does not hold).
2. No current tier (none yet, or a tier no longer in this dimension's list): the first
   tier whose condition holds; none holds → no tier. Entering a tier never waits.
3. Current tier Tk:
   a. the first earlier tier Ti (i < k) whose `when` holds wins at once (moving up the
      list is immediate, whatever the dwell);
   b. else Tk's condition (stay or when) holds → stay in Tk;
   c. else, while `cur_since_days` < D (dwelling) → stay in Tk; a missing
      `cur_since_days` counts as dwelled long enough;
   d. else the first later tier Ti (i > k) whose `when` holds, or no tier.
   So with D = 7 a customer who entered on day 0 keeps Tk on day 6 and may leave on day 7.

`tag_from` dimension: the tag is the value of a text name (`profile.region`,
`top_category_365d`, `channel`), trimmed of spaces; empty or missing → no tag. Values are
cut to WeCom's 30-character tag limit on purpose (two values sharing their first 30
characters share a tag). At most `max_tags` tags are made: when more distinct values
appear, the `max_tags - 1` values held by most customers (ties: by value) keep their own
tag and every other value gets `其他`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bot.errors import ConfigError
from bot.rules.check import Scope, check_name, parse_and_check
from bot.rules.errors import RuleError
from bot.rules.evaluate import Row, Truth, evaluate
from bot.rules.nodes import Expr, Name, names_in
from bot.rules.parse import parse_rule
from bot.rules.sql import compile_condition, quote_ident, quote_string
from bot.wecom_limits import TAG_NAME_MAX

OTHER_TAG = "其他"


class TierConfig(Protocol):
    """A tier as configured (bot.config.TierSettings; a protocol so config may import us)."""

    @property
    def tag(self) -> str: ...
    @property
    def when(self) -> str: ...
    @property
    def stay(self) -> str | None: ...


class DimensionConfig(Protocol):
    """A dimension as configured (bot.config.DimensionSettings)."""

    @property
    def name(self) -> str: ...
    @property
    def tag_group(self) -> str: ...
    @property
    def min_dwell_days(self) -> int: ...
    @property
    def tiers(self) -> Sequence[TierConfig]: ...
    @property
    def tag_from(self) -> str | None: ...
    @property
    def max_tags(self) -> int: ...


@dataclass(frozen=True)
class Tier:
    tag: str
    when: Expr
    when_text: str
    stay: Expr | None = None
    stay_text: str | None = None


@dataclass(frozen=True)
class TieredDimension:
    name: str
    tag_group: str
    tiers: tuple[Tier, ...]
    min_dwell_days: int = 0

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(t.tag for t in self.tiers)

    def names_used(self) -> frozenset[str]:
        """Return every name any of its rules reads (the values to record on a move)."""
        out: frozenset[str] = frozenset()
        for tier in self.tiers:
            out |= names_in(tier.when) | (names_in(tier.stay) if tier.stay else frozenset())
        return out


@dataclass(frozen=True)
class TagFromDimension:
    name: str
    tag_group: str
    source: Name  # typed: kind "string" or "text"
    max_tags: int = 50

    def names_used(self) -> frozenset[str]:
        return frozenset({self.source.name})


Dimension = TieredDimension | TagFromDimension


# --- building from config -----------------------------------------------------------------


def _tag_from_source(text: str, scope: Scope) -> Name:
    node = parse_rule(text)
    if not isinstance(node, Name):
        raise RuleError(
            "tag_from takes one name (a text metric or profile.<attribute>)",
            text=text,
            start=0,
            end=len(text),
        )
    checked = check_name(node, text=text, scope=scope)
    if checked.kind not in ("string", "text"):
        raise RuleError(
            f"tag_from needs a text value; {checked.name!r} is a {checked.kind}",
            text=text,
            start=node.span[0],
            end=node.span[1],
        )
    return checked


def build_dimensions(
    dimensions: Sequence[DimensionConfig],
) -> tuple[tuple[Dimension, ...], list[str]]:
    """Check every rule of every dimension; return the usable dimensions and each problem.

    Problems are rendered `key: message` plus the rule line and a caret (multi-line).
    """
    built: list[Dimension] = []
    problems: list[str] = []
    all_names = [d.name for d in dimensions]
    seen: set[str] = set()
    for i, dim in enumerate(dimensions):
        key = f"tiering.dimensions[{i}]"
        if dim.name in seen:
            problems.append(f"{key}.name: duplicate dimension name {dim.name!r}")
        seen.add(dim.name)
        scope = Scope(
            earlier={
                d.name: (None if d.tag_from else frozenset(t.tag for t in d.tiers))
                for d in dimensions[:i]
            },
            later=frozenset(all_names[i:]),
        )
        if dim.tag_from:
            if dim.min_dwell_days:
                problems.append(f"{key}.min_dwell_days: applies to tiers only, not tag_from")
            try:
                source = _tag_from_source(dim.tag_from, scope)
            except RuleError as exc:
                problems.append(str(exc.with_key(f"{key}.tag_from")))
                continue
            built.append(TagFromDimension(dim.name, dim.tag_group, source, dim.max_tags))
            continue
        tiers: list[Tier] = []
        tags: set[str] = set()
        for j, tier in enumerate(dim.tiers):
            tkey = f"{key}.tiers[{j}]"
            if tier.tag in tags:
                problems.append(f"{tkey}.tag: duplicate tier {tier.tag!r} in this dimension")
            tags.add(tier.tag)
            try:
                when = parse_and_check(tier.when, scope=scope, key=f"{tkey}.when")
            except RuleError as exc:
                problems.append(str(exc))
                when = None
            stay = None
            if tier.stay is not None:
                try:
                    stay = parse_and_check(tier.stay, scope=scope, key=f"{tkey}.stay")
                except RuleError as exc:
                    problems.append(str(exc))
            if when is not None:
                tiers.append(Tier(tier.tag, when, tier.when, stay, tier.stay))
        if len(tiers) == len(dim.tiers):
            built.append(TieredDimension(dim.name, dim.tag_group, tuple(tiers), dim.min_dwell_days))
    return tuple(built), problems


def rule_problems(dimensions: Sequence[DimensionConfig]) -> list[str]:
    """Return every tier rule problem (bot.config runs this), each with key and caret."""
    return build_dimensions(dimensions)[1]


def load_dimensions(dimensions: Sequence[DimensionConfig]) -> tuple[Dimension, ...]:
    """Return the checked dimensions; raise ConfigError listing every rule problem."""
    built, problems = build_dimensions(dimensions)
    if problems:
        raise ConfigError(problems)
    return built


# --- SQL ----------------------------------------------------------------------------------


def compile_dimension(
    dim: TieredDimension,
    *,
    table: str | None = None,
    cur_tier: str = "cur_tier",
    cur_since_days: str = "cur_since_days",
) -> str:
    """Return one SQL CASE giving the tier tag (or NULL) with the module's hysteresis.

    It reads the metric columns (qualified by `table` when given), `"tier.<earlier>"` for
    earlier dimensions, and the current assignment columns `cur_tier` (tag or NULL) and
    `cur_since_days` (days since entering it).
    """
    whens = [compile_condition(t.when, table=table) for t in dim.tiers]
    tags = [quote_string(t.tag) for t in dim.tiers]
    cur = f"{quote_ident(table)}.{quote_ident(cur_tier)}" if table else quote_ident(cur_tier)
    since = (
        f"{quote_ident(table)}.{quote_ident(cur_since_days)}"
        if table
        else quote_ident(cur_since_days)
    )

    def arms(indices: range) -> list[str]:
        return [f"WHEN {whens[i]} THEN {tags[i]}" for i in indices]

    n = len(dim.tiers)
    fresh = "CASE " + " ".join(arms(range(n))) + " END"
    per_current = []
    for k, tier in enumerate(dim.tiers):
        keep = compile_condition(tier.stay, table=table) if tier.stay else whens[k]
        inner = [*arms(range(k)), f"WHEN {keep} THEN {tags[k]}"]
        if dim.min_dwell_days > 0:
            inner.append(f"WHEN {since} < {dim.min_dwell_days} THEN {tags[k]}")
        inner += arms(range(k + 1, n))
        per_current.append(f"WHEN {tags[k]} THEN (CASE {' '.join(inner)} END)")
    return f"(CASE {cur} {' '.join(per_current)} ELSE ({fresh}) END)"


def tag_value_sql(dim: TagFromDimension, *, table: str | None = None) -> str:
    """Return the SQL for one customer's raw tag value: trimmed, cut to 30, '' as NULL."""
    col = quote_ident(dim.source.name)
    if table:
        col = f"{quote_ident(table)}.{col}"
    return f"SUBSTRING(NULLIF(TRIM(CAST({col} AS VARCHAR)), ''), 1, {TAG_NAME_MAX})"


def compile_tag_from(
    dim: TagFromDimension, *, table: str = "metrics", key: str = "customer_id"
) -> str:
    """Return a SELECT of (customer_id, tag) over `table`, folding rare values into 其他."""
    k = dim.max_tags
    return (
        f"WITH v AS (SELECT {quote_ident(key)} AS customer_id, {tag_value_sql(dim)} AS value "
        f"FROM {quote_ident(table)}), "
        "c AS (SELECT value, COUNT(*) AS n FROM v WHERE value IS NOT NULL GROUP BY value), "
        "r AS (SELECT value, ROW_NUMBER() OVER (ORDER BY n DESC, value) AS pos, "
        "COUNT(*) OVER () AS distinct_values FROM c) "
        "SELECT v.customer_id AS customer_id, "
        f"CASE WHEN v.value IS NULL THEN NULL WHEN r.distinct_values <= {k} OR r.pos < {k} "
        f"THEN v.value ELSE {quote_string(OTHER_TAG)} END AS tag "
        "FROM v LEFT JOIN r ON r.value = v.value"
    )


# --- Python, for one customer --------------------------------------------------------------

Step = Literal["first_match", "earlier", "kept", "dwelling", "later", "none"]


@dataclass(frozen=True)
class Assignment:
    """Where one customer lands in a dimension, how, and what each tier's condition gave."""

    tag: str | None
    step: Step
    truths: tuple[Truth, ...]  # per tier, the condition as rule 1 defines it
    used_stay: bool = False  # the current tier's `stay` replaced its `when`


def assign_tier(
    dim: TieredDimension,
    row: Row,
    *,
    cur_tier: str | None = None,
    cur_since_days: int | None = None,
) -> Assignment:
    """Apply the module's hysteresis to one customer's values (the CASE's Python twin)."""
    tags = dim.tags
    k = tags.index(cur_tier) if cur_tier in tags else None
    truths = []
    for i, tier in enumerate(dim.tiers):
        rule = tier.stay if (i == k and tier.stay is not None) else tier.when
        truths.append(evaluate(rule, row))
    used_stay = k is not None and dim.tiers[k].stay is not None
    result = tuple(truths)
    if k is None:
        for i, truth in enumerate(truths):
            if truth is True:
                return Assignment(tags[i], "first_match", result)
        return Assignment(None, "none", result)
    for i in range(k):
        if truths[i] is True:
            return Assignment(tags[i], "earlier", result, used_stay)
    if truths[k] is True:
        return Assignment(tags[k], "kept", result, used_stay)
    if cur_since_days is not None and cur_since_days < dim.min_dwell_days:
        return Assignment(tags[k], "dwelling", result, used_stay)
    for i in range(k + 1, len(tags)):
        if truths[i] is True:
            return Assignment(tags[i], "later", result, used_stay)
    return Assignment(None, "none", result, used_stay)


def tag_value(dim: TagFromDimension, row: Row) -> str | None:
    """Return one customer's raw tag value as the SQL computes it (before the 其他 fold)."""
    value: Any = row.get(dim.source.name)
    if value is None:
        return None
    text = str(value).strip(" ")
    return text[:TAG_NAME_MAX] or None
