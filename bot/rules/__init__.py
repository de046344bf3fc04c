"""The tier rule language: parse, type-check, compile to SQL, evaluate and explain."""

from bot.rules.check import Scope, check_rule, parse_and_check
from bot.rules.dimension import (
    OTHER_TAG,
    Assignment,
    Dimension,
    TagFromDimension,
    Tier,
    TieredDimension,
    assign_tier,
    build_dimensions,
    compile_dimension,
    compile_tag_from,
    load_dimensions,
    rule_problems,
    tag_value,
    tag_value_sql,
)
from bot.rules.errors import RuleError
from bot.rules.evaluate import Row, Truth, evaluate, text_number
from bot.rules.explain import Explanation, explain_condition, explain_dimension
from bot.rules.nodes import Expr, names_in
from bot.rules.parse import parse_rule
from bot.rules.sql import compile_condition, name_sql, quote_ident, quote_string

__all__ = [
    "OTHER_TAG",
    "Assignment",
    "Dimension",
    "Explanation",
    "Expr",
    "Row",
    "RuleError",
    "Scope",
    "TagFromDimension",
    "Tier",
    "TieredDimension",
    "Truth",
    "assign_tier",
    "build_dimensions",
    "check_rule",
    "compile_condition",
    "compile_dimension",
    "compile_tag_from",
    "evaluate",
    "explain_condition",
    "explain_dimension",
    "load_dimensions",
    "name_sql",
    "names_in",
    "parse_and_check",
    "parse_rule",
    "quote_ident",
    "quote_string",
    "rule_problems",
    "tag_value",
    "tag_value_sql",
    "text_number",
]
