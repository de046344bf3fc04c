"""The default tier dimensions, shipped as bot/tiering/default_tiers.toml (the seed methodology)."""

from __future__ import annotations

import tomllib
from importlib.resources import files

from bot.config import TieringSettings


def default_tiers_text() -> str:
    """Return default_tiers.toml's text (what config.example.toml and the demo carry)."""
    return files("bot.tiering").joinpath("default_tiers.toml").read_text(encoding="utf-8")


def default_tiering() -> TieringSettings:
    """Return the default dimensions as parsed settings."""
    return TieringSettings.model_validate(tomllib.loads(default_tiers_text())["tiering"])
