"""Settings and config.toml text for tests that talk to the simulator."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, settings_from_mapping
from bot.tiering.defaults import default_tiers_text
from tests.support.corp import base_config
from wecom_sim import Simulator


def settings_for(db_url: str, sim: Simulator, **extra: Any) -> Settings:
    """Settings pointing at the simulator, with extra top-level sections."""
    return settings_from_mapping(
        {**base_config(db_url, api_base=sim.api_base), **extra}, environ={}
    )


def write_config(
    folder: Path,
    db_url: str,
    *,
    api_base: str | None = None,
    default_tiers: bool = False,
    wecom: dict[str, Any] | None = None,
) -> Path:
    """Write folder/config.toml: base_config logging at WARNING; return its path.

    `api_base` points WeCom at the simulator (else a closed port), `default_tiers` adds the
    default tier dimensions, `wecom` overrides keys of the [wecom] section.
    """
    data = base_config(db_url) if api_base is None else base_config(db_url, api_base=api_base)
    data["app"] = {"log_level": "WARNING"}
    data["wecom"].update(wecom or {})
    text = toml_text(data) + ("[tiering]\n" + default_tiers_text() if default_tiers else "")
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def toml_text(data: dict[str, Any]) -> str:
    """Render a config mapping of flat sections as TOML text (JSON strings are TOML strings)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(
                f"{json.dumps(key, ensure_ascii=False)} = {json.dumps(value, ensure_ascii=False)}"
            )
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # fail here, not in the CLI, if the writer is wrong
    return text


# Real-looking values for the example config's placeholders (check-config refuses those).
FILLED_IN = {
    "TAGBOT_WECOM__CORP_ID": "ww7f3a9c1e5b2d4860",
    "TAGBOT_WECOM__SECRET": "Xk2m9Qp4Rt7Vw1Yz3Bc6Df8Gh0Jk5Lm",
    "TAGBOT_WECOM__TOKEN": "k3Jd9sLq2Vx7",
    "TAGBOT_WECOM__ENCODING_AES_KEY": "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V",
    "TAGBOT_SERVER__ADMIN_TOKEN": "Zq8sK2nV5xR9tW3yB7mC",
}


def filled_in_example(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Copy config.example.toml to folder/config.toml, its placeholders set by FILLED_IN."""
    path = folder / "config.toml"
    shutil.copy(Path(__file__).resolve().parents[2] / "config.example.toml", path)
    for name, value in FILLED_IN.items():
        monkeypatch.setenv(name, value)
    return path
