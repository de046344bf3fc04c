"""Group names in rules: `group.<群名>` / `group["群名"]` checked against the groups synced.

Static checks (bot.rules) accept any group name: groups come and go in WeCom. Where the
database is at hand — `tagbot check-config`, the console's 系统 page and 规则试算 — a
name that no live group has (a typo, a renamed or dismissed group) is an error naming it,
since such a rule is false for everyone.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.db.models import GroupChat
from bot.rules.errors import RuleError
from bot.rules.nodes import And, Compare, Expr, InList, IsMissing, Name, Not, Or
from bot.rules.parse import parse_rule
from bot.rules.vocabulary import GROUP_PREFIX

RULES_NOT_CHECKED = "tier rules: group names not checked (未核对规则中的群名) — "
NOT_CHECKED = (
    "tier rules: group names not checked (未核对规则中的群名) — no customer groups synced yet;"
    " run `tagbot sync`"
)


def group_names_in(expr: Expr) -> Iterator[Name]:
    """Yield every `group.<群名>` the expression reads, in order, with its place."""
    match expr:
        case Name(name=name) if name.startswith(GROUP_PREFIX):
            yield expr
        case Compare(left=left, right=right):
            yield from group_names_in(left)
            yield from group_names_in(right)
        case InList(operand=operand):
            yield from group_names_in(operand)
        case IsMissing(name=name):
            yield from group_names_in(name)
        case Not(operand=operand):
            yield from group_names_in(operand)
        case And(left=left, right=right) | Or(left=left, right=right):
            yield from group_names_in(left)
            yield from group_names_in(right)


def known_names(*, session: Session) -> frozenset[str] | None:
    """Return the names of the live customer groups; None when no group was ever stored."""
    if session.scalar(select(GroupChat.id).limit(1)) is None:
        return None
    return frozenset(
        session.scalars(
            select(GroupChat.name).where(GroupChat.dismissed_at.is_(None)).distinct()
        ).all()
    )


def check_group_names(expr: Expr, *, text: str, known: frozenset[str], key: str = "") -> None:
    """Raise RuleError at the first group name no live group has, naming it."""
    for node in group_names_in(expr):
        group = node.name[len(GROUP_PREFIX) :]
        if group in known:
            continue
        close = difflib.get_close_matches(group, sorted(known), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RuleError(
            f"no customer group named {group!r} (客户群“{group}”不存在、已改名或已解散){hint}",
            text=text,
            start=node.span[0],
            end=node.span[1],
            key=key,
        )


def _rules(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield every tier and campaign rule with its config key."""
    for i, dim in enumerate(settings.tiering.dimensions):
        for j, tier in enumerate(dim.tiers):
            yield f"tiering.dimensions[{i}].tiers[{j}].when", tier.when
            if tier.stay is not None:
                yield f"tiering.dimensions[{i}].tiers[{j}].stay", tier.stay
    for i, campaign in enumerate(settings.outreach.campaigns):
        if campaign.when:
            yield f"outreach.campaigns[{i}].when", campaign.when


def _reading_groups(settings: Settings) -> list[tuple[str, str, Expr]]:
    """Return the rules that name a group: key, text, tree."""
    out = []
    for key, text in _rules(settings):
        if GROUP_PREFIX.rstrip(".") not in text:
            continue
        try:
            expr = parse_rule(text)  # the config parsed it already: this does not fail
        except RuleError:
            continue
        if any(group_names_in(expr)):
            out.append((key, text, expr))
    return out


def reads_groups(settings: Settings) -> bool:
    """Tell whether any rule names a group (worth opening the database to check)."""
    return bool(_reading_groups(settings))


def rule_group_problems(settings: Settings, *, session: Session) -> list[str] | None:
    """Name, by key, each rule's group name no live group has (None: no group synced yet)."""
    rules = _reading_groups(settings)
    if not rules:
        return []
    known = known_names(session=session)
    if known is None:
        return None
    problems = []
    for key, text, expr in rules:
        try:
            check_group_names(expr, text=text, known=known, key=key)
        except RuleError as exc:
            problems.append(str(exc))
    return problems
