"""Settings and config.toml text for tests that talk to the simulator."""

from __future__ import annotations

import json
from typing import Any

from bot.config import Settings, settings_from_mapping
from tests.conftest import base_config
from wecom_sim import Simulator


def settings_for(db_url: str, sim: Simulator, **extra: Any) -> Settings:
    """Settings pointing at the simulator, with extra top-level sections."""
    return settings_from_mapping(
        {**base_config(db_url, api_base=sim.api_base), **extra}, environ={}
    )


def toml_text(data: dict[str, Any]) -> str:
    """Render a two-level config mapping as TOML text."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"
