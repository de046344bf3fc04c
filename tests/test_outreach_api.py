"""Campaigns over HTTP: GET /api/outreach/campaigns and POST .../<name>/runs, simulator behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot.db import Database
from bot.db.models import CampaignDelivery, CampaignRun
from bot.outreach.plan import in_holdout
from tests.support.campaigns import (
    DIMENSIONS,
    assign,
    campaign,
    customer,
    relation,
    staff,
    table_counts,
)
from tests.support.configs import settings_for
from tests.support.corp import ADMIN_TOKEN
from tests.support.waiting import wait_for
from wecom_sim import Simulator

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NAME = "高价值关怀"
ADD = "externalcontact/add_msg_template"


@pytest.fixture
def api(db: Database, simulator: Simulator) -> Iterator[FlaskClient]:
    from handlers.app import EXTENSION_KEY, create_app

    settings = settings_for(
        db.url,
        simulator,
        tiering={"dimensions": DIMENSIONS},
        outreach={"campaigns": [campaign(NAME, holdout_pct=50)], "quiet_hours": ""},
    )
    with db.write() as s:
        zhang = staff(s, "zhang")
        for i in range(1, 7):
            c = customer(s, f"wm_{i}", f"客户{i}")
            relation(s, c, zhang, days_ago=20)
            assign(s, c, "value", "高价值")
    simulator.add_staff("zhang")
    for i in range(1, 7):
        simulator.add_relation("zhang", f"wm_{i}", name=f"客户{i}")
    app: Flask = create_app(settings)
    yield app.test_client()
    app.extensions[EXTENSION_KEY].close()


def test_campaigns_are_listed_with_their_last_run(api: FlaskClient) -> None:
    assert api.get("/api/outreach/campaigns").status_code == 401
    body = api.get("/api/outreach/campaigns", headers=AUTH).get_json()
    assert [(c["name"], c["action"], c["tiers"], c["last_run"]) for c in body["campaigns"]] == [
        (NAME, "group_message", ["高价值"], None)
    ]


def test_a_dry_run_answers_the_plan_and_writes_and_calls_nothing(
    api: FlaskClient, db: Database, simulator: Simulator
) -> None:
    before = table_counts(db)
    answer = api.post(f"/api/outreach/campaigns/{NAME}/runs", json={"dry_run": True}, headers=AUTH)
    assert answer.status_code == 200
    plan = answer.get_json()
    held = sorted(f"wm_{i}" for i in range(1, 7) if in_holdout(NAME, f"wm_{i}", 50))
    assert plan["run_id"] is None
    assert plan["counts"]["holdout"] == len(held)
    assert plan["counts"]["treatment"] == 6 - len(held)
    [share] = plan["by_staff"]
    assert share["staff_userid"] == "zhang"
    assert sorted(p["external_userid"] for p in share["holdout"]) == held
    assert table_counts(db) == before
    assert simulator.calls.get(ADD, 0) == 0


def test_a_run_is_recorded_then_sent_once(
    api: FlaskClient, db: Database, simulator: Simulator
) -> None:
    answer = api.post(f"/api/outreach/campaigns/{NAME}/runs", headers=AUTH)
    assert answer.status_code == 201
    run_id = answer.get_json()["run_id"]

    def done() -> bool:
        with db.read() as s:
            return s.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id)) == "done"

    wait_for(done, what="the run to be sent")
    assert simulator.calls[ADD] == 1  # one 群发 task for the one staff member
    with db.read() as s:
        statuses = sorted(s.scalars(select(CampaignDelivery.status)))
    treated = answer.get_json()["counts"]["treatment"]
    assert statuses.count("created") == treated
    assert statuses.count("holdout") == 6 - treated
    listed = api.get("/api/outreach/campaigns", headers=AUTH).get_json()["campaigns"][0]
    assert (listed["last_run"]["id"], listed["last_run"]["status"]) == (run_id, "done")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"dry_run": "yes"}, 422, "dry_run"),
        ({"dryrun": True}, 422, "dryrun"),
        ([1, 2], 422, "JSON"),
    ],
)
def test_bad_run_requests_are_refused_with_the_reason(
    api: FlaskClient, db: Database, body: object, status: int, message: str
) -> None:
    before = table_counts(db)
    answer = api.post(f"/api/outreach/campaigns/{NAME}/runs", json=body, headers=AUTH)
    assert answer.status_code == status
    assert message in answer.get_json()["message"]
    assert table_counts(db) == before


def test_an_unknown_campaign_is_404(api: FlaskClient) -> None:
    answer = api.post("/api/outreach/campaigns/春节活动/runs", headers=AUTH)
    assert answer.status_code == 404
    assert NAME in answer.get_json()["message"]  # names the configured ones
