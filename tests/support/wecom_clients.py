"""A WeCom client built from config the way the app does, aimed at the simulator."""

from __future__ import annotations

from typing import Any

from bot.config import settings_from_mapping
from bot.db import Database
from bot.wecom.client import WeComClient
from tests.support.corp import base_config
from wecom_sim import Simulator

FOLLOW = "externalcontact/get_follow_user_list"


def make_client(
    db: Database,
    sim: Simulator,
    *,
    wecom: dict[str, Any] | None = None,
    calls_per_minute: int = 10000,
    interactive_reserve: float = 0.0,
    **options: Any,
) -> WeComClient:
    """Build a client from a config the way the app does, aimed at the simulator."""
    config = base_config(db.url, api_base=sim.api_base)
    config["wecom"].update({"max_retries": 3, **(wecom or {})})
    config["limits"] = {
        "calls_per_minute": calls_per_minute,
        "interactive_reserve": interactive_reserve,
    }
    settings = settings_from_mapping(config, environ={})
    options.setdefault("backoff_base", 0.05)
    return WeComClient(settings.wecom, settings.limits, db=db, **options)
