"""Explain in Chinese, for one customer, which tier a dimension gives and why (or why not)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.rules.dimension import (
    OTHER_TAG,
    Assignment,
    Dimension,
    TagFromDimension,
    TieredDimension,
    assign_tier,
    tag_value,
)
from bot.rules.evaluate import (
    Row,
    Truth,
    evaluate,
    list_values,
    numeric_pair,
    operand_values,
    text_number,
    value_of,
)
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
from bot.wecom_limits import TAG_NAME_MAX

TRUTH_WORDS = {True: "满足", False: "未满足", None: "未知"}
_SHOWN = {"==": "=", "!=": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_NEGATED = {"==": "≠", "!=": "=", "<": "≥", "<=": ">", ">": "≤", ">=": "<"}


def format_value(value: Any) -> str:
    """Render a metric value for operators: 3200, 0.25, "抖音", 是/否."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int | float):
        number = float(value)
        return str(int(number)) if number.is_integer() else f"{number:g}"
    if isinstance(value, str):
        return '"' + value + '"'
    return str(value)


def _literal(node: Operand) -> str:
    match node:
        case Number(value=value) | Bool(value=value):
            return format_value(value)
        case String(value=value):
            return format_value(value)
        case Name(name=name):
            return name
    return ""


def _missing(nodes: list[Operand], row: Row) -> list[str]:
    return [
        f"{n.name} 缺失" for n in nodes if isinstance(n, Name) and value_of(row, n.name) is None
    ]


def _not_numeric(nodes: list[Operand], row: Row) -> list[str]:
    return [
        f"{n.name} = {format_value(value_of(row, n.name))}（不是数字）"
        for n in nodes
        if isinstance(n, Name)
        and n.kind == "text"
        and value_of(row, n.name) is not None
        and text_number(value_of(row, n.name)) is None
    ]


def _compare_reason(node: Compare, truth: Truth, row: Row) -> list[str]:
    sides = [node.left, node.right]
    if truth is None:
        missing = _missing(sides, row)
        return missing or (_not_numeric(sides, row) if numeric_pair(*sides) else [])
    a, b = operand_values(node.left, node.right, row)
    relation = _SHOWN[node.op] if truth else _NEGATED[node.op]
    left = (
        f"{node.left.name} = {format_value(a)}"
        if isinstance(node.left, Name)
        else _literal(node.left)
    )
    right = (
        f"{node.right.name}（{format_value(b)}）"
        if isinstance(node.right, Name)
        else _literal(node.right)
    )
    return [f"{left} {relation} {right}"]


def explain_condition(expr: Expr, row: Row) -> tuple[Truth, list[str]]:
    """Return the condition's truth and the facts about this row that decide it."""
    truth = evaluate(expr, row)
    match expr:
        case Compare():
            return truth, _compare_reason(expr, truth, row)
        case InList(operand=operand, items=items):
            if truth is None:
                return truth, _missing([operand], row) or _not_numeric([operand], row)
            value, _ = list_values(expr, row)
            listed = "[" + ", ".join(_literal(i) for i in items) + "]"
            inside = (value is not None) and (truth != expr.negated)
            where = "在" if inside else "不在"
            return truth, [f"{_literal(operand)} = {format_value(value)} {where} {listed} 中"]
        case IsMissing(name=name):
            value = value_of(row, name.name)
            return truth, [
                f"{name.name} 缺失" if value is None else f"{name.name} = {format_value(value)}"
            ]
        case Name(name=name):
            value = value_of(row, name)
            return truth, [f"{name} 缺失" if value is None else f"{name} = {format_value(value)}"]
        case Bool(value=value):
            return truth, ["恒为真" if value else "恒为假"]
        case Not(operand=operand):
            return truth, explain_condition(operand, row)[1]
        case And(left=left, right=right) | Or(left=left, right=right):
            parts = [explain_condition(left, row), explain_condition(right, row)]
            # The value that decides: a False part for `and`, a True part for `or`.
            decisive: Truth = None if truth is None else isinstance(expr, Or)
            if (isinstance(expr, And) and truth is True) or (
                isinstance(expr, Or) and truth is False
            ):
                chosen = parts  # every part agreed
            else:
                chosen = [p for p in parts if p[0] is decisive] or parts
            return truth, [reason for _, reasons in chosen for reason in reasons]
    return truth, []


@dataclass(frozen=True)
class Explanation:
    """One dimension's result for one customer, with the lines that explain it."""

    dimension: str
    tag: str | None
    lines: tuple[str, ...]
    reason: str = ""  # how the tag was reached, the end of the first line

    def render(self) -> str:
        return "\n".join(self.lines)


def _how(dim: TieredDimension, a: Assignment, cur_tier: str | None, since: int | None) -> str:
    match a.step:
        case "first_match":
            return "首个满足条件的层级"
        case "earlier":
            return f"排在当前层级 {cur_tier} 之前的层级满足条件，立即调整"
        case "kept":
            return f"保持 {cur_tier}（{'满足保留条件 stay' if a.used_stay else '仍满足条件'}）"
        case "dwelling":
            return f"保持 {cur_tier}：进入 {since} 天，未满最短停留 {dim.min_dwell_days} 天"
        case "later":
            return f"离开 {cur_tier}，进入之后的层级"
    return f"离开 {cur_tier}，没有满足条件的层级" if cur_tier else "没有满足条件的层级"


def _explain_tiers(
    dim: TieredDimension, row: Row, cur_tier: str | None, since: int | None
) -> Explanation:
    a = assign_tier(dim, row, cur_tier=cur_tier, cur_since_days=since)
    how = _how(dim, a, cur_tier, since)
    lines = [f"{dim.name}：{a.tag or '无'} — {how}"]
    last = dim.tags.index(a.tag) if a.tag and a.step != "dwelling" else len(dim.tiers) - 1
    for tier in dim.tiers[: last + 1]:
        stay = tier.tag == cur_tier and tier.stay is not None
        rule = tier.stay if stay and tier.stay is not None else tier.when
        truth, reasons = explain_condition(rule, row)
        label = f"{tier.tag}（保留条件）" if stay else tier.tag
        lines.append(f"  {label}：{TRUTH_WORDS[truth]} — {'；'.join(reasons)}")
    return Explanation(dim.name, a.tag, tuple(lines), how)


def _explain_tag_from(dim: TagFromDimension, row: Row, assigned: str | None) -> Explanation:
    source = dim.source.name
    raw = value_of(row, source)
    value = tag_value(dim, row)
    if value is None:
        why = f"{source} 缺失" if raw is None else f"{source} 为空"
        return Explanation(dim.name, None, (f"{dim.name}：无 — {why}",), why)
    how = f"取自 {source} = {format_value(raw)}"
    if len(str(raw).strip(" ")) > TAG_NAME_MAX:
        how += f"（超过 {TAG_NAME_MAX} 字，截断为 {value}）"
    if assigned == OTHER_TAG and value != OTHER_TAG:
        how += f"；不在客户数最多的前 {dim.max_tags - 1} 个取值中，归入 {OTHER_TAG}"
    line = f"{dim.name}：{assigned or value} — {how}"
    return Explanation(dim.name, assigned or value, (line,), how)


def explain_dimension(
    dim: Dimension,
    row: Row,
    *,
    cur_tier: str | None = None,
    cur_since_days: int | None = None,
    assigned: str | None = None,
) -> Explanation:
    """Explain one dimension for one customer's values (and current tier, for hysteresis).

    For a `tag_from` dimension pass the tag the run `assigned` (it may be 其他, which only
    the whole population decides).
    """
    if isinstance(dim, TagFromDimension):
        return _explain_tag_from(dim, row, assigned)
    return _explain_tiers(dim, row, cur_tier, cur_since_days)
