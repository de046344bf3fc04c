"""Three-valued logic, profile numbers and injection safety, in Python and in real DuckDB alike."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.rules import (
    compile_condition,
    evaluate,
    names_in,
    parse_and_check,
    quote_ident,
    quote_string,
    text_number,
)
from bot.rules.vocabulary import GROUP_NAMES_COLUMN
from tests.tier_rules_support import select, table

T, F, U = True, False, None
# spend_365d > 0 is true for 1, false for -1, unknown for NULL; likewise orders_365d.
VALUE_OF = {T: 1, F: -1, U: None}
AND = {(T, T): T, (T, F): F, (T, U): U, (F, F): F, (F, U): F, (U, U): U}
OR = {(T, T): T, (T, F): T, (T, U): T, (F, F): F, (F, U): U, (U, U): U}


def both(text: str, rows: list[dict[str, Any]]) -> list[Any]:
    """Evaluate a rule with the Python evaluator and in DuckDB; assert they agree."""
    expr = parse_and_check(text)
    names = sorted(names_in(expr))
    python = [evaluate(expr, row) for row in rows]
    sql = select(compile_condition(expr), rows, names)
    assert python == sql, (text, rows, compile_condition(expr))
    return python


@pytest.mark.parametrize(("op", "table_"), [("and", AND), ("or", OR)])
def test_and_or_follow_kleene_truth_tables(op: str, table_: dict[tuple[Any, Any], Any]) -> None:
    cases = [*table_.items(), *(((b, a), r) for (a, b), r in table_.items())]
    rows = [{"spend_365d": VALUE_OF[a], "orders_365d": VALUE_OF[b]} for (a, b), _ in cases]
    got = both(f"spend_365d > 0 {op} orders_365d > 0", rows)
    assert got == [r for _, r in cases]


def test_not_unknown_is_unknown() -> None:
    rows = [{"spend_365d": VALUE_OF[v]} for v in (T, F, U)]
    assert both("not spend_365d > 0", rows) == [F, T, U]
    assert both("not not spend_365d > 0", rows) == [T, F, U]


def test_every_comparison_with_a_missing_value_is_unknown() -> None:
    rows = [{}]
    for text in (
        "spend_365d == 0",
        "spend_365d != 0",
        "spend_365d < 0",
        "spend_365d >= 0",
        'channel == "a"',
        'channel != "a"',
        'channel in ["a"]',
        'channel not in ["a"]',
        "intent_no_buy_30d",
        "intent_no_buy_30d == false",
        "spend_365d > orders_365d",
        "profile.age >= 1",
        'profile.region == "华东"',
    ):
        assert both(text, rows) == [U], text


def test_is_missing_is_never_unknown() -> None:
    rows = [{"spend_365d": None}, {"spend_365d": 0}]
    assert both("spend_365d is missing", rows) == [T, F]
    assert both("spend_365d is not missing", rows) == [F, T]
    assert both("not spend_365d is missing", rows) == [F, T]


def test_boolean_metric_as_condition_and_compared() -> None:
    rows = [{"intent_no_buy_30d": v} for v in (True, False, None)]
    assert both("intent_no_buy_30d", rows) == [T, F, U]
    assert both("intent_no_buy_30d == false", rows) == [F, T, U]
    assert both("true and intent_no_buy_30d", rows) == [T, F, U]
    assert both("false or not intent_no_buy_30d", rows) == [F, T, U]


def test_and_binds_tighter_than_or_and_parentheses_regroup() -> None:
    row = [{"spend_365d": 1, "orders_365d": -1, "aov_365d": -1}]
    assert both("spend_365d > 0 or orders_365d > 0 and aov_365d > 0", row) == [T]
    assert both("(spend_365d > 0 or orders_365d > 0) and aov_365d > 0", row) == [F]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("31", T),
        (" 31 ", T),
        ("31.5", T),
        ("3.1e1", T),
        ("+40", T),
        ("29", F),
        ("-5", F),
        ("abc", U),
        ("", U),
        ("inf", U),
        ("nan", U),
        ("1_000", U),
        ("３１", U),  # full-width digits are text
        ("0x1F", U),
        (None, U),
    ],
)
def test_profile_attribute_compares_as_a_number_only_when_numeric(
    value: str | None, expected: bool | None
) -> None:
    assert both("profile.age >= 30", [{"profile.age": value}]) == [expected]


def test_profile_attribute_compares_as_text_against_a_string() -> None:
    rows = [{"profile.age": "30"}, {"profile.age": "30.0"}, {"profile.age": "abc"}]
    assert both('profile.age == "30"', rows) == [T, F, F]
    assert both("profile.age == 30", rows) == [T, T, U]
    assert both("profile.age in [30, 31]", rows) == [T, T, U]
    assert both('profile.age in ["abc"]', rows) == [F, F, T]


def test_text_number_matches_the_sql_pattern() -> None:
    assert text_number(" 12 ") == 12.0
    assert text_number("1e3") == 1000.0
    assert text_number("inf") is None
    assert text_number("١٢") is None  # Arabic-Indic digits


HOSTILE = [
    "'; DROP TABLE metrics; --",
    "a'b",
    "''",
    '"',
    "\\",
    "\\'",
    "x' OR '1'='1",
    "公众号'); DELETE FROM metrics; --",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_are_literals_not_sql(value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    expr = parse_and_check(f'channel == "{escaped}" or channel in ["{escaped}", "z"]')
    rows = [{"channel": value}, {"channel": "other"}, {"channel": value + "x"}]
    con = duckdb.connect()
    table(con, rows, ["channel"])
    got = [
        r[0]
        for r in con.execute(
            f"SELECT {compile_condition(expr)} FROM metrics ORDER BY customer_id"
        ).fetchall()
    ]
    assert got == [True, False, False]
    assert con.execute("SELECT count(*) FROM metrics").fetchone() == (3,)
    assert [evaluate(expr, r) for r in rows] == got


def test_identifiers_and_literals_are_quoted_by_doubling() -> None:
    assert quote_ident('a"b') == '"a""b"'
    assert quote_string("a'b") == "'a''b'"
    with pytest.raises(ValueError, match="NUL"):
        quote_string("a\x00b")
    sql = compile_condition(parse_and_check('profile.区域 == "华东"'), table="m")
    assert sql == """("m"."profile.区域" = '华东')"""


def test_nul_cannot_enter_a_rule() -> None:
    from bot.rules import RuleError

    with pytest.raises(RuleError):
        parse_and_check('channel == "a\x00b"')


# --- the property: Python's evaluator and DuckDB agree on random rules over random rows ----

NUMBER_NAMES = ["spend_365d", "orders_365d"]
STRING_NAMES = ["channel", "gender"]
TEXT_NAMES = ["profile.a", "profile.b"]
BOOL_NAMES = ["intent_no_buy_30d"]
ALL_NAMES = NUMBER_NAMES + STRING_NAMES + TEXT_NAMES + BOOL_NAMES
NUMBER_LITERALS = ["-1", "0", "0.5", "1", "2", "1000.25"]
STRINGS = ["", "a", "b", "华东", "a'b", "30"]
TEXTS = [None, "", "1", " 2 ", "1e3", "abc", "inf", "1_000", "0.5", "a", "华东", "-0", "30"]
OPS = ["==", "!=", "<", "<=", ">", ">="]
EQ = ["==", "!="]


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


numbers = st.sampled_from(NUMBER_LITERALS)
strings = st.sampled_from(STRINGS).map(_q)
atoms = st.one_of(
    st.builds(
        "{} {} {}".format, st.sampled_from(NUMBER_NAMES + TEXT_NAMES), st.sampled_from(OPS), numbers
    ),
    st.builds("{} {} {}".format, numbers, st.sampled_from(OPS), st.sampled_from(NUMBER_NAMES)),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(NUMBER_NAMES),
        st.sampled_from(OPS),
        st.sampled_from(NUMBER_NAMES),
    ),
    st.builds(
        "{} {} {}".format, st.sampled_from(STRING_NAMES + TEXT_NAMES), st.sampled_from(EQ), strings
    ),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(STRING_NAMES + TEXT_NAMES),
        st.sampled_from(EQ),
        st.sampled_from(STRING_NAMES + TEXT_NAMES),
    ),
    st.builds(
        "{} {} [{}]".format,
        st.sampled_from(NUMBER_NAMES + TEXT_NAMES),
        st.sampled_from(["in", "not in"]),
        st.lists(numbers, min_size=1, max_size=3).map(", ".join),
    ),
    st.builds(
        "{} {} [{}]".format,
        st.sampled_from(STRING_NAMES + TEXT_NAMES),
        st.sampled_from(["in", "not in"]),
        st.lists(strings, min_size=1, max_size=3).map(", ".join),
    ),
    st.builds(
        "{} {}".format,
        st.sampled_from(ALL_NAMES),
        st.sampled_from(["is missing", "is not missing"]),
    ),
    st.sampled_from(["intent_no_buy_30d", "true", "false", "intent_no_buy_30d != true"]),
    # group.<群名>: true or false from the row's group names, never unknown.
    st.sampled_from(
        ["group.甲", "group.乙", "group.甲 is missing", "group.乙 == intent_no_buy_30d"]
    ),
)
rules = st.recursive(
    atoms,
    lambda inner: st.one_of(
        inner.map("not ({})".format),
        st.builds("({}) and ({})".format, inner, inner),
        st.builds("({}) or ({})".format, inner, inner),
        st.builds("{} and {} or {}".format, inner, inner, inner),
    ),
    max_leaves=8,
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "spend_365d": st.sampled_from([None, -1, 0, 0.5, 1, 2, 1000.25, 5000]),
            "orders_365d": st.sampled_from([None, 0, 1, 2, 3]),
            "channel": st.sampled_from([None, *STRINGS]),
            "gender": st.sampled_from([None, *STRINGS]),
            "profile.a": st.sampled_from(TEXTS),
            "profile.b": st.sampled_from(TEXTS),
            "intent_no_buy_30d": st.sampled_from([None, True, False]),
            "group_names": st.sampled_from([None, [], ["甲"], ["乙", "甲"]]),
        }
    ),
    min_size=1,
    max_size=8,
)

_CON = duckdb.connect()


@settings(max_examples=300, deadline=None, database=None)
@given(text=rules, data=rows)
def test_python_evaluator_and_duckdb_sql_agree(text: str, data: list[dict[str, Any]]) -> None:
    expr = parse_and_check(text)
    table(_CON, data, [*ALL_NAMES, GROUP_NAMES_COLUMN])
    sql = compile_condition(expr)
    got = [r[0] for r in _CON.execute(f"SELECT {sql} FROM metrics ORDER BY customer_id").fetchall()]
    assert got == [evaluate(expr, row) for row in data], sql
