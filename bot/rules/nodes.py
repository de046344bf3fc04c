"""The typed tree a tier rule parses into: operands, comparisons and logic, with positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What a name or literal holds. "text" is a profile attribute: untyped imported text that
# compares as a number against a number and as text against a string.
ValueKind = Literal["number", "string", "boolean", "text"]
CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
Span = tuple[int, int]  # [start, end) character offsets into the rule text


@dataclass(frozen=True)
class Name:
    """A metric, `profile.<attribute>` or `tier.<dimension>`; `kind` is set by the checker."""

    name: str
    span: Span
    kind: ValueKind | None = None


@dataclass(frozen=True)
class Number:
    value: int | float
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


Literal_ = Number | String | Bool
Operand = Name | Number | String | Bool


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Operand
    right: Operand
    span: Span


@dataclass(frozen=True)
class InList:
    operand: Operand
    items: tuple[Literal_, ...]
    negated: bool
    span: Span


@dataclass(frozen=True)
class IsMissing:
    name: Name
    negated: bool
    span: Span


@dataclass(frozen=True)
class Not:
    operand: Expr
    span: Span


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr
    span: Span


# A bare operand used as a condition (a boolean metric, `true`); the checker refuses others.
Expr = Compare | InList | IsMissing | Not | And | Or | Name | Number | String | Bool


def names_in(expr: Expr) -> frozenset[str]:
    """Return every name the expression reads (for recording the values a rule used)."""
    match expr:
        case Name(name=name):
            return frozenset({name})
        case Compare(left=left, right=right):
            return names_in(left) | names_in(right)
        case InList(operand=operand):
            return names_in(operand)
        case IsMissing(name=name):
            return frozenset({name.name})
        case Not(operand=operand):
            return names_in(operand)
        case And(left=left, right=right) | Or(left=left, right=right):
            return names_in(left) | names_in(right)
    return frozenset()
