"""Type-check a parsed rule against the vocabulary and the dimensions listed before it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from bot.rules.errors import RuleError
from bot.rules.nodes import (
    And,
    Bool,
    Compare,
    Expr,
    InList,
    IsMissing,
    Name,
    Not,
    Number,
    Operand,
    Or,
    Span,
    String,
    ValueKind,
)
from bot.rules.parse import parse_rule
from bot.rules.vocabulary import BY_NAME, GROUP_PREFIX, PROFILE_PREFIX, TIER_PREFIX

_ORDERING = frozenset({"<", "<=", ">", ">="})
_KIND_WORDS: dict[ValueKind, str] = {
    "number": "a number",
    "string": "a string",
    "boolean": "true/false",
    "text": "a profile attribute (text)",
}

_PLURAL: dict[ValueKind, str] = {"number": "numbers", "string": "strings"}  # list items


@dataclass(frozen=True)
class Scope:
    """The names a rule may use: metrics, profile attributes and the earlier dimensions.

    `earlier` maps each dimension listed before this one to its tier tags, or to None when
    it takes its tags from a value (`tag_from`: any string may appear). `later` names the
    dimensions at or after this one, for a precise message when a rule looks ahead.
    """

    earlier: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    later: frozenset[str] = frozenset()
    metrics: Mapping[str, ValueKind] = field(
        default_factory=lambda: {m.name: m.kind for m in BY_NAME.values()}
    )

    def candidates(self) -> list[str]:
        """Return every name a rule could spell, for 'did you mean' suggestions."""
        return [*self.metrics, *(TIER_PREFIX + d for d in self.earlier)]


class _Checker:
    def __init__(self, text: str, scope: Scope) -> None:
        self.text = text
        self.scope = scope

    def fail(self, message: str, span: Span) -> RuleError:
        return RuleError(message, text=self.text, start=span[0], end=span[1])

    def _suggest(self, wrong: str, options: Iterable[str]) -> str:
        close = difflib.get_close_matches(wrong, list(options), n=1, cutoff=0.6)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def name(self, node: Name) -> Name:
        name = node.name
        if name.startswith(PROFILE_PREFIX):
            return replace(node, kind="text")
        if name.startswith(GROUP_PREFIX):
            # Any group name: groups come and go in WeCom, so one nobody is in is false.
            return replace(node, kind="boolean")
        if name.startswith(TIER_PREFIX):
            dim = name[len(TIER_PREFIX) :]
            if dim in self.scope.earlier:
                return replace(node, kind="string")
            if dim in self.scope.later:
                raise self.fail(
                    f"{name!r}: dimension {dim!r} is not listed before this one; "
                    "tier.<name> reads only earlier dimensions",
                    node.span,
                )
            options = [TIER_PREFIX + d for d in self.scope.earlier]
            raise self.fail(
                f"{name!r}: no dimension {dim!r} is listed before this one"
                + self._suggest(name, options),
                node.span,
            )
        kind = self.scope.metrics.get(name)
        if kind is None:
            suggestion = self._suggest(name, self.scope.candidates())
            raise self.fail(f"unknown name {name!r}{suggestion}", node.span)
        return replace(node, kind=kind)

    def operand(self, node: Operand) -> tuple[Operand, ValueKind]:
        match node:
            case Name():
                checked = self.name(node)
                assert checked.kind is not None
                return checked, checked.kind
            case Number():
                return node, "number"
            case String():
                return node, "string"
            case Bool():
                return node, "boolean"

    def _describe(self, node: Operand, kind: ValueKind) -> str:
        if isinstance(node, Name):
            return f"{node.name!r} is {_KIND_WORDS[kind]}"
        return f"{self.text[node.span[0] : node.span[1]]} is {_KIND_WORDS[kind]}"

    def _tier_values(self, node: Operand, values: Iterable[Operand]) -> None:
        """Refuse a tier name the referenced earlier dimension does not have."""
        if not (isinstance(node, Name) and node.name.startswith(TIER_PREFIX)):
            return
        dim = node.name[len(TIER_PREFIX) :]
        tags = self.scope.earlier.get(dim)
        if tags is None:
            return
        for value in values:
            if isinstance(value, String) and value.value not in tags:
                raise self.fail(
                    f"dimension {dim!r} has no tier {value.value!r}"
                    + self._suggest(value.value, sorted(tags)),
                    value.span,
                )

    def compare(self, node: Compare) -> Compare:
        left, lk = self.operand(node.left)
        right, rk = self.operand(node.right)
        kinds = {lk, rk}
        if node.op in _ORDERING:
            culprits = [(o, k) for o, k in ((left, lk), (right, rk)) if k != "number"]
            if culprits and (len(culprits) == 2 or culprits[0][1] != "text"):
                what = "; ".join(self._describe(o, k) for o, k in culprits)
                raise self.fail(
                    f"{node.op!r} compares numbers only, but {what} (use == or in for text)",
                    node.span,
                )
        elif (lk != rk and "text" not in kinds) or ("text" in kinds and "boolean" in kinds):
            raise self.fail(
                f"cannot compare: {self._describe(left, lk)} and {self._describe(right, rk)}",
                node.span,
            )
        self._tier_values(left, [right])
        self._tier_values(right, [left])
        return replace(node, left=left, right=right)

    def in_list(self, node: InList) -> InList:
        operand, kind = self.operand(node.operand)
        item_kinds = {self.operand(item)[1] for item in node.items}
        if len(item_kinds) > 1:
            raise self.fail(
                "the list mixes " + " and ".join(_KIND_WORDS[k] for k in sorted(item_kinds)),
                (node.items[0].span[0], node.items[-1].span[1]),
            )
        (item_kind,) = item_kinds
        if item_kind == "boolean":
            raise self.fail("a list holds numbers or strings, not true/false", node.span)
        if kind == "boolean" or (kind != "text" and kind != item_kind):
            raise self.fail(
                f"{self._describe(operand, kind)} but the list holds {_PLURAL[item_kind]}",
                node.span,
            )
        self._tier_values(operand, node.items)
        return replace(node, operand=operand)

    def condition(self, node: Expr) -> Expr:
        match node:
            case Compare():
                return self.compare(node)
            case InList():
                return self.in_list(node)
            case IsMissing(name=name):
                return replace(node, name=self.name(name))
            case Not(operand=operand):
                return replace(node, operand=self.condition(operand))
            case And(left=left, right=right) | Or(left=left, right=right):
                return replace(node, left=self.condition(left), right=self.condition(right))
            case Bool():
                return node
            case Name() | Number() | String():
                checked, kind = self.operand(node)
                if kind == "boolean":
                    return checked
                hint = (
                    f", e.g. {node.name} > 0" if kind == "number" and isinstance(node, Name) else ""
                )
                raise self.fail(
                    f"{self._describe(checked, kind)}, not a condition; compare it{hint}",
                    node.span,
                )


def check_rule(expr: Expr, *, text: str, scope: Scope | None = None) -> Expr:
    """Return the tree with every name typed; raise RuleError (no key) on a type problem."""
    return _Checker(text, scope or Scope()).condition(expr)


def parse_and_check(text: str, *, scope: Scope | None = None, key: str = "") -> Expr:
    """Parse and type-check one rule; a RuleError carries `key` when given."""
    try:
        return check_rule(parse_rule(text), text=text, scope=scope)
    except RuleError as exc:
        raise exc.with_key(key) if key else exc from None


def check_name(node: Name, *, text: str, scope: Scope | None = None) -> Name:
    """Return the name with its kind; raise RuleError (no key) when it is unknown."""
    return _Checker(text, scope or Scope()).name(node)
