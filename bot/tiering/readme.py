"""The README's tier tables, written from the vocabulary and the default dimensions.

`python -m bot.tiering.readme` prints them; tests/test_tier_readme.py checks the README
holds exactly these, so the documentation cannot drift from the code.
"""

from __future__ import annotations

from bot.rules.vocabulary import METRICS
from bot.tiering.defaults import default_tiering

_KIND = {"number": "数值", "string": "文本", "boolean": "是/否"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def metric_table() -> str:
    """Return the Markdown table of every metric: name, kind, definition."""
    lines = ["| name | kind | definition |", "|---|---|---|"]
    for m in METRICS:
        kind = _KIND[m.kind] + ("（计数，无则为 0）" if m.count else "")
        lines.append(f"| `{m.name}` | {kind} | {_cell(m.definition)} |")
    return "\n".join(lines) + "\n"


def dimension_table() -> str:
    """Return the Markdown table of the default dimensions with each tier's rules."""
    lines = ["| tag group (name) | dwell | tier | when | stay |", "|---|---|---|---|---|"]
    for dim in default_tiering().dimensions:
        head = f"{dim.tag_group} (`{dim.name}`)"
        dwell = f"{dim.min_dwell_days} 天" if dim.min_dwell_days else "—"
        if dim.tag_from:
            lines.append(
                f"| {head} | — | 取值即标签（最多 {dim.max_tags} 个，其余归入 其他） "
                f"| `tag_from = {dim.tag_from}` | — |"
            )
            continue
        for i, tier in enumerate(dim.tiers):
            stay = f"`{_cell(tier.stay)}`" if tier.stay else "—"
            lines.append(
                f"| {head if i == 0 else ''} | {dwell if i == 0 else ''} | {tier.tag} "
                f"| `{_cell(tier.when)}` | {stay} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(metric_table())
    print(dimension_table())
