"""With no population stored for today, the CLI, API, console and sidebar give one answer.

Each ranks against the stored population of the last run's day, says which day in
Chinese, and none builds today's population in the request.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from flask import Flask

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.types import utcnow
from bot.rules import load_dimensions
from bot.tiering.defaults import default_tiers_text
from bot.tiering.run import retier
from bot.tiering.why import ExplainEngine
from handlers.app import create_app
from tagbot.cli import main
from tests.support.configs import write_config
from tests.support.console import sign_in_with_token
from tests.support.corp import ADMIN_TOKEN
from tests.support.sidebar import seed_sidebar, sidebar_config, sign_in
from wecom_sim import Simulator

NOTE = re.compile(r"[a-z_0-9、]+ 按 \d{4}-\d{2}-\d{2} 的客户总体排名（今天的客户总体尚未生成）")


@pytest.fixture
def app(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    for userid in ("alice", "bob", "carol"):
        simulator.add_staff(userid)
    cfg = sidebar_config(db_url, simulator) | tomllib.loads(default_tiers_text())
    app = create_app(settings_from_mapping(cfg, environ={}))
    yield app
    app.extensions["tagbot"].close()


def test_every_surface_ranks_against_the_stored_day_and_says_which(
    app: Flask,
    db: Database,
    simulator: Simulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rt = app.extensions["tagbot"]
    now = utcnow()
    seed_sidebar(db, now=now, tz=rt.settings.tz)
    dims = load_dimensions(rt.settings.tiering.dimensions)
    day = (now - timedelta(days=3)).astimezone(rt.settings.tz).date()
    # The last run stored its population three days ago: none serves today.
    retier(db, dims, tz=rt.settings.app.timezone, as_of=now - timedelta(days=3))
    # The process's engine, without its background build, so all four answer from the
    # same stored population (the build itself: test_tier_explain_stale).
    rt.explain.close()
    rt.explain = ExplainEngine(background=False)

    config = write_config(tmp_path, db.url, default_tiers=True)
    assert main(["--config", str(config), "customer", "show", "wm000"]) == 0
    cli = sorted(set(NOTE.findall(capsys.readouterr().out)))

    api = rt_client = app.test_client()
    body = api.get("/api/customers/wm000", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert body.status_code == 200
    assert body.json is not None
    from_api = sorted({t["rank_note"] for t in body.json["tiers"] if t["rank_note"]})

    sign_in_with_token(rt_client)
    page = rt_client.get("/admin/customers/wm000")
    assert page.status_code == 200
    console = sorted(set(NOTE.findall(unescape(page.get_data(as_text=True)))))

    staff = app.test_client()
    sign_in(staff, simulator, "alice")
    why = staff.get("/sidebar/customer/wm000/why")
    assert why.status_code == 200
    sidebar = sorted(set(NOTE.findall(unescape(why.get_data(as_text=True)))))

    assert cli
    assert all(f"按 {day:%Y-%m-%d} 的客户总体" in n for n in cli)
    assert cli == from_api == console == sidebar
    assert rt.explain.request_builds == 0
