"""What an import file contains, written from `bot.ingest.rows.COLUMNS` for help and README.

`tagbot import --help` shows `help_text()`; the README holds `readme_text()` between
markers; `python -m bot.ingest.docs` prints the README part. tests/test_import_docs.py
checks both, so the documentation cannot drift from what the readers accept.
"""

from __future__ import annotations

from bot.ingest.rows import COLUMNS, EXAMPLES, KINDS, Kind

TITLES: dict[Kind, str] = {
    "orders": "orders 订单",
    "events": "events 互动",
    "profiles": "profiles 客户属性",
}
_NEED = {"required": "必填", "one_of": "二选一", "optional": "可选"}
PROFILE_ATTRIBUTES = (
    "其余每一列是一个属性（列名即属性名，≤64 字符；值按文本保存，空单元格不写入），"
    "规则中写作 profile.<列名>，如 profile.会员等级（列名含空格或标点时写"
    ' profile["会员 等级"]）；至少一列属性'
)
ONE_OF_NOTE = "external_userid 与 unionid 两列至少有一列，每行至少填一个"


def example_csv(kind: Kind) -> str:
    """Return the example file of `kind`: its header and one row, as CSV lines."""
    header, row = EXAMPLES[kind]
    return f"{','.join(header)}\n{','.join(row)}\n"


def help_text() -> str:
    """Return the column reference for `tagbot import --help` (click keeps \\b blocks as is)."""
    parts = []
    for kind in KINDS:
        width = max(len(c.name) for c in COLUMNS[kind])
        lines = ["\b", f"{TITLES[kind]}:"]
        for c in COLUMNS[kind]:
            need = _NEED[c.need]
            pad = " " * (6 - 2 * len(need))  # the labels are 2 or 3 full-width characters
            lines.append(f"  {c.name.ljust(width)}  {need}{pad}  {c.meaning}")
        if kind == "profiles":
            lines.append(f"  {PROFILE_ATTRIBUTES}")
        lines.append("  例 example:")
        lines.extend(f"    {line}" for line in example_csv(kind).splitlines())
        parts.append("\n".join(lines))
    parts.append(f"\b\n{ONE_OF_NOTE}。")
    return "\n\n".join(parts)


def readme_text() -> str:
    """Return the README's import reference: a column table and an example per kind."""
    out = []
    for kind in KINDS:
        out.append(f"**{TITLES[kind]}** (`tagbot import {kind} FILE`)\n")
        out.append("| column | need | meaning |\n|---|---|---|")
        for c in COLUMNS[kind]:
            out.append(f"| `{c.name}` | {_NEED[c.need]} | {c.meaning} |")
        if kind == "profiles":
            out.append(f"| *any other* | 属性 | {PROFILE_ATTRIBUTES} |")
        out.append(f"\n```csv\n{example_csv(kind)}```\n")
    out.append(f"{ONE_OF_NOTE}。\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(readme_text(), end="")
