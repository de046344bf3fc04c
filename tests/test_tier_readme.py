"""The README's metric and default-dimension tables are the ones the code writes."""

from __future__ import annotations

from pathlib import Path

from bot.rules.vocabulary import METRICS
from bot.tiering.readme import dimension_table, metric_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_metric_table_is_the_vocabulary() -> None:
    assert metric_table() in README
    for m in METRICS:
        assert f"| `{m.name}` |" in README


def test_readme_dimension_table_is_the_defaults() -> None:
    assert dimension_table() in README
