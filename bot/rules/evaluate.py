"""Evaluate a checked rule over one customer's values in Python, with SQL's three-valued logic.

The same semantics as the SQL from `bot.rules.sql` (a property test holds them
together): a comparison with a missing value is unknown (None), `not` unknown is unknown,
`and`/`or` follow Kleene's tables, and a condition holds only when it is True.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

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
    String,
    ValueKind,
)
from bot.rules.vocabulary import GROUP_NAMES_COLUMN, GROUP_PREFIX

Truth = bool | None  # None is SQL's UNKNOWN
Row = Mapping[str, Any]  # name -> value; an absent key or None is missing

# A profile attribute is numeric when its whole text is a plain decimal number (ASCII digits,
# optional sign, point and exponent, surrounding blanks). The SQL tests the same pattern, so
# "inf", "1_000" or full-width digits are text in both, never numbers.
NUMERIC_TEXT = r"[ \t\n\r]*[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?[ \t\n\r]*"
_NUMERIC_RE = re.compile(NUMERIC_TEXT)

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def text_number(value: object) -> float | None:
    """Return a profile attribute's text as a number, or None when it is not numeric."""
    if isinstance(value, str) and _NUMERIC_RE.fullmatch(value):
        return float(value)
    return None


def value_of(row: Row, name: str) -> Any:
    """Return a name's value in a row; `group.<群名>` is read from the row's group names."""
    if name.startswith(GROUP_PREFIX) and name not in row:
        return name[len(GROUP_PREFIX) :] in (row.get(GROUP_NAMES_COLUMN) or ())
    return row.get(name)


def _value(node: Operand, row: Row) -> Any:
    if isinstance(node, Name):
        return value_of(row, node.name)
    return node.value


def _kind(node: Operand) -> ValueKind:
    match node:
        case Name(kind=kind):
            assert kind is not None, "evaluate a checked tree"
            return kind
        case Number():
            return "number"
        case String():
            return "string"
        case Bool():
            return "boolean"


def _as(value: Any, kind: ValueKind, numeric: bool) -> Any:
    """Return the value as the comparison sees it: a float, a string or a bool (None: missing)."""
    if value is None:
        return None
    if kind == "text":
        return text_number(value) if numeric else str(value)
    if kind == "number":
        return float(value) if isinstance(value, int | float | Decimal) else value
    return value


def numeric_pair(left: Operand, right: Operand) -> bool:
    """Tell whether a comparison of these operands is numeric (profile text against a number)."""
    return "number" in (_kind(left), _kind(right))


def operand_values(left: Operand, right: Operand, row: Row) -> tuple[Any, Any]:
    """Return both operands' values as the comparison sees them."""
    numeric = numeric_pair(left, right)
    return (
        _as(_value(left, row), _kind(left), numeric),
        _as(_value(right, row), _kind(right), numeric),
    )


def list_values(node: InList, row: Row) -> tuple[Any, list[Any]]:
    """Return the `in` operand's value and the items, as the membership test sees them."""
    numeric = bool(node.items) and isinstance(node.items[0], Number)
    value = _as(_value(node.operand, row), _kind(node.operand), numeric)
    items = [float(i.value) if numeric else i.value for i in node.items]
    return value, items


def evaluate(expr: Expr, row: Row) -> Truth:
    """Return True, False or None (unknown) for a checked rule over one row of values."""
    match expr:
        case Compare(op=op, left=left, right=right):
            a, b = operand_values(left, right, row)
            return None if a is None or b is None else OPS[op](a, b)
        case InList(negated=negated):
            value, items = list_values(expr, row)
            if value is None:
                return None
            return (value in items) != negated
        case IsMissing(name=name, negated=negated):
            return (value_of(row, name.name) is None) != negated
        case Not(operand=operand):
            inner = evaluate(operand, row)
            return None if inner is None else not inner
        case And(left=left, right=right):
            a, b = evaluate(left, row), evaluate(right, row)
            if a is False or b is False:
                return False
            return None if a is None or b is None else True
        case Or(left=left, right=right):
            a, b = evaluate(left, row), evaluate(right, row)
            if a is True or b is True:
                return True
            return None if a is None or b is None else False
        case Name(name=name):
            value = value_of(row, name)
            return None if value is None else bool(value)
        case Bool(value=value):
            return value
    raise TypeError(f"not a condition: {expr!r}")  # the checker refuses these
