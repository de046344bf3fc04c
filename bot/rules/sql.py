"""Compile a checked rule to a SQL boolean expression (DuckDB; standard SQL where it can be).

Names become quoted identifiers (`"spend_365d"`, `"profile.region"`, `"tier.value"`),
`group.<群名>` a membership test on the frame's `group_names` list (true or false);
strings become literals with quotes doubled (the grammar admits no NUL), numbers are
written from the parsed value, so rule text never reaches the SQL as such. SQL's NULL
carries the three-valued logic unchanged; a profile attribute compared with a number is
read through `TRY_CAST` only when its whole text is a plain number (the same pattern the
Python evaluator uses), else it is NULL: unknown.
"""

from __future__ import annotations

from bot.rules.evaluate import NUMERIC_TEXT, numeric_pair
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
)
from bot.rules.vocabulary import GROUP_NAMES_COLUMN, GROUP_PREFIX

_SQL_OPS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def quote_ident(name: str) -> str:
    """Return `name` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_string(value: str) -> str:
    """Return `value` as a single-quoted SQL string literal."""
    if "\x00" in value:
        raise ValueError("NUL in a SQL string")
    return "'" + value.replace("'", "''") + "'"


def _number(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _column(name: str, table: str | None) -> str:
    if name.startswith(GROUP_PREFIX):
        names = _column(GROUP_NAMES_COLUMN, table)
        group = quote_string(name[len(GROUP_PREFIX) :])
        return f"coalesce(list_contains({names}, {group}), FALSE)"
    return f"{quote_ident(table)}.{quote_ident(name)}" if table else quote_ident(name)


def name_sql(name: str, *, table: str | None = None) -> str:
    """Return the SQL reading a rule name's value (a column, or a group membership test)."""
    return _column(name, table)


def _operand(node: Operand, *, numeric: bool, table: str | None) -> str:
    match node:
        case Name(name=name, kind=kind):
            col = _column(name, table)
            if kind == "text" and numeric:
                pattern = quote_string(NUMERIC_TEXT)
                return (
                    f"(CASE WHEN regexp_full_match({col}, {pattern}) "
                    f"THEN TRY_CAST({col} AS DOUBLE) END)"
                )
            return col
        case Number(value=value):
            return _number(value)
        case String(value=value):
            return quote_string(value)
        case Bool(value=value):
            return "TRUE" if value else "FALSE"


def compile_condition(expr: Expr, *, table: str | None = None) -> str:
    """Return a SQL boolean expression for a checked rule; `table` qualifies the columns."""
    match expr:
        case Compare(op=op, left=left, right=right):
            numeric = numeric_pair(left, right)
            a = _operand(left, numeric=numeric, table=table)
            b = _operand(right, numeric=numeric, table=table)
            return f"({a} {_SQL_OPS[op]} {b})"
        case InList(operand=operand, items=items, negated=negated):
            numeric = isinstance(items[0], Number)
            value = _operand(operand, numeric=numeric, table=table)
            listed = ", ".join(_operand(i, numeric=numeric, table=table) for i in items)
            return f"({value} {'NOT IN' if negated else 'IN'} ({listed}))"
        case IsMissing(name=name, negated=negated):
            return f"({_column(name.name, table)} IS {'NOT NULL' if negated else 'NULL'})"
        case Not(operand=operand):
            return f"(NOT {compile_condition(operand, table=table)})"
        case And(left=left, right=right):
            return f"({compile_condition(left, table=table)} AND {compile_condition(right, table=table)})"
        case Or(left=left, right=right):
            return f"({compile_condition(left, table=table)} OR {compile_condition(right, table=table)})"
        case Name(name=name):
            return _column(name, table)
        case Bool(value=value):
            return "TRUE" if value else "FALSE"
    raise TypeError(f"not a condition: {expr!r}")  # the checker refuses these
