"""The staff sidebar's test corp: settings, a seeded database, and OAuth sign-in helpers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from bot.config import Settings, settings_from_mapping
from bot.db import Database
from bot.db.models import (
    Campaign,
    CampaignDelivery,
    CampaignRun,
    CampaignTask,
    Customer,
    Staff,
)
from tests.support.console import (
    DIMENSION,
    Seeded,
    console_config,
    seed_groups,
    seed_overview,
)
from wecom_sim import Simulator

HINTS = {"高价值": "重点维护：优先回复，节日问候。", "普通": "关注复购：推荐相关商品。"}
FOLLOW_UP_TEXT = "问问上次买的面包机用得怎么样"
HOLDOUT_CAMPAIGN = "沉睡唤醒"


def sidebar_config(db_url: str, sim: Simulator) -> dict[str, Any]:
    """The console's test config, OAuth at the simulator, talking points on the tiers."""
    cfg = console_config(db_url, sim)
    dimension = dict(DIMENSION)
    dimension["tiers"] = [{**t, "hint": HINTS[t["tag"]]} for t in DIMENSION["tiers"]]
    cfg["tiering"] = {"dimensions": [dimension]}
    return cfg


def sidebar_settings(db_url: str, sim: Simulator, **server: Any) -> Settings:
    """Settings for the sidebar tests."""
    cfg = sidebar_config(db_url, sim)
    cfg["server"].update(server)
    return settings_from_mapping(cfg, environ={})


def seed_sidebar(db: Database, *, now: datetime, tz: Any) -> Seeded:
    """`seed_overview`'s corp (alice follows wm000, hostile name, 高价值; bob follows wm002),
    plus a follow-up task for alice on wm000 and wm001 in a campaign's holdout."""
    seeded = seed_overview(db, now=now, tz=tz)
    seed_groups(db, now=now, tz=tz)
    with db.write() as session:
        ids = dict(session.execute(select(Customer.external_userid, Customer.id)).all())
        follow_up = Campaign(name="老客关怀", action="follow_up", dimension="value")
        holdout = Campaign(name=HOLDOUT_CAMPAIGN, action="group_message", dimension="value")
        session.add_all([follow_up, holdout])
        session.flush()
        runs = [
            CampaignRun(campaign_id=c.id, action=c.action, status="done", as_of=now)
            for c in (follow_up, holdout)
        ]
        session.add_all(runs)
        session.flush()
        task = CampaignTask(
            run_id=runs[0].id,
            campaign_id=follow_up.id,
            kind="follow_up",
            sender="alice",
            text=FOLLOW_UP_TEXT,
            status="sent",
        )
        session.add(task)
        session.flush()
        session.add_all(
            [
                CampaignDelivery(
                    run_id=runs[0].id,
                    campaign_id=follow_up.id,
                    customer_id=ids["wm000"],
                    arm="treatment",
                    staff_userid="alice",
                    task_id=task.id,
                    status="notified",
                    created_at=now - timedelta(hours=1),
                ),
                CampaignDelivery(
                    run_id=runs[1].id,
                    campaign_id=holdout.id,
                    customer_id=ids["wm001"],
                    arm="holdout",
                    staff_userid="alice",
                    status="holdout",
                    created_at=now - timedelta(days=2),
                ),
            ]
        )
        assert session.scalar(select(Staff.id).where(Staff.userid == "alice")) is not None
    return seeded


def authorize_query(location: str) -> dict[str, str]:
    """Return the query of a redirect to the OAuth2 authorize URL."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def pick_member(sim: Simulator, userid: str | None, *, outsider: bool = False) -> None:
    """Sign the simulated WeCom client in as `userid`, through the control API."""
    body: dict[str, Any] = {"userid": userid, "outsider": outsider}
    answer = requests.put(sim.url + "/control/oauth_member", json=body, timeout=5)
    assert answer.status_code == 200, answer.text


def through_wecom(sim: Simulator, location: str) -> str:
    """Follow the bot's redirect to WeCom's authorize URL; return where WeCom sends the browser."""
    answer = requests.get(location.split("#", 1)[0], allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def local_path(url: str) -> str:
    """Return an absolute URL's path and query, for the Flask test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def sign_in(client: FlaskClient, sim: Simulator, userid: str) -> TestResponse:
    """Open /sidebar/ as `userid` in the WeCom client: the OAuth round trip; return the shell."""
    pick_member(sim, userid)
    first = client.get("/sidebar/")
    assert first.status_code == 302
    back = client.get(local_path(through_wecom(sim, first.headers["Location"])))
    assert back.status_code == 302, back.text
    assert back.headers["Location"] == "/sidebar/"
    shell = client.get("/sidebar/")
    assert shell.status_code == 200
    return shell
