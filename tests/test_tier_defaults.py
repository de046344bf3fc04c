"""The default tiers are one text: config.example.toml and the demo carry it verbatim."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.tiering.defaults import default_tiering, default_tiers_text
from tests.support.configs import FILLED_IN

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "# >>> bot/tiering/default_tiers.toml"
END = "# <<< bot/tiering/default_tiers.toml"


def _block(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index("\n", text.index(BEGIN)) + 1
    return text[start : text.index(END)]


@pytest.mark.parametrize("path", ["config.example.toml", "tagbot/demo/demo.toml"])
def test_config_files_carry_the_default_tiers_verbatim(path: str) -> None:
    assert _block(ROOT / path) == default_tiers_text()


def test_example_dimensions_are_the_defaults_and_pass_the_checks() -> None:
    # load_settings runs every check `tagbot check-config` runs, tier rules included.
    settings = load_settings(ROOT / "config.example.toml", environ=FILLED_IN)
    assert settings.tiering.dimensions == default_tiering().dimensions
    assert len(settings.tiering.dimensions) == 13
    assert settings.tiering.schedule == "0 3 * * *"
