"""The console's 触达 pages with the Flask client: list, run page, preview → launch, ROI."""

from __future__ import annotations

import json
import re
import statistics
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from scipy.stats import t as student_t
from sqlalchemy import func, select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import (
    CampaignDelivery,
    CampaignRun,
    CampaignTask,
    ConsoleAudit,
    Lease,
)
from bot.db.types import utcnow
from bot.errors import ConfigError
from bot.outreach.plan import plan_run
from bot.outreach.report import campaign_results
from bot.outreach.service import get_campaign
from bot.reports import campaigns as reports
from bot.reports.campaign_roi import roi_by_tier
from bot.runtime import Runtime
from handlers.app import EXTENSION_KEY, create_app
from tests.support.campaigns import assign, campaign, customer, relation, staff
from tests.support.console import (
    HOSTILE,
    console_config,
    csrf_of,
    sign_in_with_token,
    sign_in_with_wecom,
)
from tests.support.console_campaigns import REACHED, SPEND, seed_measured_run
from tests.support.waiting import wait_for
from wecom_sim import Simulator

NAME = "高价值关怀"
ADD = "externalcontact/add_msg_template"
COST = 2.0
CUSTOMERS = 10  # 4 of them fall in the treatment at holdout_pct 50
LAUNCH = re.compile(r'name="launch_token" value="([^"]+)"')


def _config(db_url: str, sim: Simulator, **keys: Any) -> dict[str, Any]:
    cfg = console_config(db_url, sim)
    cfg["outreach"] = {
        "quiet_hours": "",
        "campaigns": [campaign(NAME, **{"holdout_pct": 50, "cost_per_delivery": COST, **keys})],
    }
    return cfg


@pytest.fixture
def console(db: Database, simulator: Simulator) -> Iterator[Flask]:
    """Ten 高价值 customers of zhang (one with a hostile name), in the DB and the simulator."""
    for userid in ("boss", "watcher", "zhang"):
        simulator.add_staff(userid)
    with db.write() as s:
        zhang = staff(s, "zhang")
        for i in range(1, CUSTOMERS + 1):
            name = HOSTILE if i == 1 else f"客户{i}"
            c = customer(s, f"wm_{i}", name)
            relation(s, c, zhang, days_ago=20)
            assign(s, c, "value", "高价值")
            simulator.add_relation("zhang", f"wm_{i}", name=name)
    app = create_app(settings_from_mapping(_config(db.url, simulator), environ={}))
    yield app
    for thread in threading.enumerate():  # a launch sends from a thread: let it finish
        if thread.name.startswith("outreach-run-"):
            thread.join(timeout=30)
    app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def web(console: Flask) -> FlaskClient:
    return console.test_client()


def _rt(app: Flask) -> Runtime:
    rt: Runtime = app.extensions[EXTENSION_KEY]
    return rt


def _values(page: str) -> dict[str, int]:
    """The preview's counts by element id."""
    return {
        k: int(v) for k, v in re.findall(r'id="count-([a-z-]+)">.*?data-value="(\d+)"', page, re.S)
    }


def _preview(web: FlaskClient) -> tuple[str, str, str]:
    page = web.get(f"/admin/campaigns/{NAME}/preview").get_data(as_text=True)
    found = LAUNCH.search(page)
    assert found, "no launch form"
    return page, csrf_of(page), found.group(1)


def _runs(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(CampaignRun)) or 0)


def _launch(web: FlaskClient, csrf: str, token: str) -> Any:
    return web.post(
        f"/admin/campaigns/{NAME}/launch", data={"csrf_token": csrf, "launch_token": token}
    )


def test_the_campaign_list_shows_the_config_and_the_last_run(
    web: FlaskClient, console: Flask, db: Database
) -> None:
    sign_in_with_token(web)
    page = web.get("/admin/campaigns").get_data(as_text=True)
    assert NAME in page
    assert "客户群发" in page
    assert "value：高价值" in page
    assert "50%" in page
    assert "从未运行" in page
    rt = _rt(console)
    plan = plan_run(
        get_campaign(rt.settings, NAME), db=rt.db, settings=rt.settings, as_of=datetime.now(UTC)
    )
    page = web.get("/admin/campaigns").get_data(as_text=True)
    assert "从未运行" not in page
    assert f"/admin/campaigns/runs/{plan.run_id}" in page
    assert re.search(rf'last-treatment">{len(plan.treatment)}<', page)
    assert re.search(rf'last-holdout">{len(plan.holdout)}<', page)
    assert "ⓘ" in page


def test_the_preview_shows_the_plans_counts_and_writes_nothing(
    web: FlaskClient, console: Flask, db: Database, simulator: Simulator
) -> None:
    sign_in_with_token(web)
    page, _, _ = _preview(web)
    rt = _rt(console)
    plan = plan_run(
        get_campaign(rt.settings, NAME),
        db=rt.db,
        settings=rt.settings,
        as_of=datetime.now(UTC),
        dry_run=True,
    )
    assert _values(page) == {
        "audience": plan.audience,
        "treatment": len(plan.treatment),
        "holdout": len(plan.holdout),
        "capped": 0,
        "cooling": 0,
        "unreachable": 0,
        "staff": 1,
    }
    assert 0 < len(plan.treatment) < CUSTOMERS  # the hash split both ways
    assert f"将触达 <strong>{len(plan.treatment)}</strong> 位客户" in page
    assert _runs(db) == 0
    assert simulator.calls.get(ADD, 0) == 0


def test_a_launch_creates_the_tasks_in_wecom_once_and_is_audited(
    web: FlaskClient, db: Database, simulator: Simulator
) -> None:
    sign_in_with_token(web)
    page, csrf, token = _preview(web)
    treated = _values(page)["treatment"]
    answer = _launch(web, csrf, token)
    assert answer.status_code == 303
    run_id = int(answer.headers["Location"].rsplit("/", 1)[1])

    def done() -> bool:
        with db.read() as s:
            return s.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id)) == "done"

    wait_for(done, what="the launched run to be sent")
    msgs = list(simulator.group_msgs.values())
    assert len(msgs) == 1  # one 群发 task for the one staff member
    assert msgs[0].sender == "zhang"
    assert simulator.calls[ADD] == 1
    # The same preview's form again (a double click, a resubmit): refused, nothing new.
    again = _launch(web, csrf, token)
    assert again.status_code == 409
    assert "不会重复发送" in again.get_data(as_text=True)
    assert _runs(db) == 1
    assert simulator.calls[ADD] == 1
    with db.read() as s:
        audited = s.execute(
            select(
                ConsoleAudit.actor, ConsoleAudit.action, ConsoleAudit.target, ConsoleAudit.after
            ).where(ConsoleAudit.action == "campaign_launched")
        ).all()
    assert [(a, b, c) for a, b, c, _ in audited] == [("admin-token", "campaign_launched", NAME)]
    assert audited[0][3]["run_id"] == run_id
    assert audited[0][3]["treatment"] == treated
    run_page = web.get(f"/admin/campaigns/runs/{run_id}").get_data(as_text=True)
    assert "待员工确认" in run_page
    assert run_page.count('class="delivery"') == CUSTOMERS
    assert HOSTILE not in run_page  # the hostile name is escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in run_page
    # The system page names the action.
    assert "启动触达活动" in web.get("/admin/system").get_data(as_text=True)


def test_a_launch_deletes_the_expired_leases_of_spent_launch_tokens(
    web: FlaskClient, db: Database
) -> None:
    past = utcnow() - timedelta(days=1)
    with db.write() as s:
        s.add_all(
            [
                Lease(name="console-launch:" + "o" * 32, owner="x", expires_at=past),
                Lease(
                    name="console-launch:" + "n" * 32,
                    owner="x",
                    expires_at=utcnow() + timedelta(days=1),
                ),
                Lease(name="scheduler", owner="x", expires_at=past),  # not a launch's
            ]
        )
    sign_in_with_token(web)
    _, csrf, token = _preview(web)
    assert _launch(web, csrf, token).status_code == 303
    with db.read() as s:
        names = set(s.scalars(select(Lease.name)))
    assert names == {"console-launch:" + "n" * 32, "console-launch:" + token, "scheduler"}


def test_a_viewer_sees_the_preview_but_cannot_launch(
    web: FlaskClient, db: Database, simulator: Simulator
) -> None:
    sign_in_with_wecom(web, simulator, "watcher")
    page = web.get(f"/admin/campaigns/{NAME}/preview").get_data(as_text=True)
    assert "只读账号只能预览" in page
    assert LAUNCH.search(page) is None
    answer = _launch(web, csrf_of(page), "a" * 32)
    assert answer.status_code == 403
    assert "只读账号不能修改" in answer.get_data(as_text=True)
    assert _runs(db) == 0
    assert simulator.calls.get(ADD, 0) == 0


def test_a_launch_without_csrf_or_without_a_preview_is_refused(
    web: FlaskClient, db: Database, simulator: Simulator
) -> None:
    sign_in_with_token(web)
    _, csrf, token = _preview(web)
    no_csrf = web.post(f"/admin/campaigns/{NAME}/launch", data={"launch_token": token})
    assert no_csrf.status_code == 403
    assert "CSRF" in no_csrf.get_data(as_text=True)
    no_token = web.post(f"/admin/campaigns/{NAME}/launch", data={"csrf_token": csrf})
    assert no_token.status_code == 400
    assert "请先试运行" in no_token.get_data(as_text=True)
    assert _launch(web, csrf, "short").status_code == 400
    assert _runs(db) == 0
    assert simulator.calls.get(ADD, 0) == 0
    assert _launch(web, csrf, token).status_code == 303  # the preview's token still works


def test_unknown_campaigns_runs_and_states_are_clear_errors(web: FlaskClient) -> None:
    sign_in_with_token(web)
    for url in ("/admin/campaigns/春节活动", "/admin/campaigns/春节活动/preview"):
        answer = web.get(url)
        assert answer.status_code == 404
        assert "春节活动" in answer.get_data(as_text=True)
    assert web.get("/admin/campaigns/runs/999").status_code == 404
    csrf = csrf_of(web.get("/admin/campaigns").get_data(as_text=True))
    answer = web.post(
        "/admin/campaigns/春节活动/launch", data={"csrf_token": csrf, "launch_token": "a" * 32}
    )
    assert answer.status_code == 404


def test_the_run_page_counts_per_staff_and_pages_customers(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    rt = _rt(console)
    plan = plan_run(
        get_campaign(rt.settings, NAME), db=rt.db, settings=rt.settings, as_of=datetime.now(UTC)
    )
    assert plan.run_id is not None
    # WeCom's answers: one not a friend any more, one over quota, the rest sent.
    with db.write() as s:
        treated = s.scalars(
            select(CampaignDelivery)
            .where(CampaignDelivery.run_id == plan.run_id, CampaignDelivery.arm == "treatment")
            .order_by(CampaignDelivery.id)
        ).all()
        states = ["not_friend", "over_quota"] + ["sent"] * (len(treated) - 2)
        for d, state in zip(treated, states, strict=True):
            d.status = state
    with db.read() as s:
        detail = reports.run_detail(plan.run_id, session=s, per_page=2)
        second = reports.run_detail(plan.run_id, session=s, per_page=2, page=2)
        sent_only = reports.run_detail(plan.run_id, session=s, status="sent")
    assert detail is not None
    assert second is not None
    assert sent_only is not None
    [zhang] = detail.staff
    assert (zhang.expected, zhang.sent, zhang.not_sent) == (len(treated), len(treated) - 2, 2)
    assert dict(zhang.reasons()) == {"已不是好友": 1, "客户接收达上限": 1}
    assert detail.holdout == len(plan.holdout)
    assert detail.pages == CUSTOMERS // 2
    assert len(detail.customers) == 2
    assert not {c.external_userid for c in detail.customers} & {
        c.external_userid for c in second.customers
    }
    assert {c.status for c in sent_only.customers} == {"sent"}
    sign_in_with_token(web)
    page = web.get(f"/admin/campaigns/runs/{plan.run_id}").get_data(as_text=True)
    assert "已不是好友 1" in page
    assert "客户接收达上限 1" in page
    assert re.search(rf'id="count-sent">.*?data-value="{len(treated) - 2}"', page, re.S)
    filtered = web.get(f"/admin/campaigns/runs/{plan.run_id}?status=over_quota")
    assert filtered.get_data(as_text=True).count('class="delivery"') == 1
    assert web.get(f"/admin/campaigns/runs/{plan.run_id}?status=nonsense").status_code == 400
    assert web.get(f"/admin/campaigns/runs/{plan.run_id}?page=99").status_code == 200
    # A task WeCom refused: its reason is shown beside the member.
    with db.write() as s:
        run = s.get(CampaignRun, plan.run_id)
        assert run is not None
        s.add(
            CampaignTask(
                run_id=run.id,
                campaign_id=run.campaign_id,
                kind="group_message",
                sender="zhang",
                status="failed",
                last_error="41048: 发送的客户已超出限制",
            )
        )
    page = web.get(f"/admin/campaigns/runs/{plan.run_id}").get_data(as_text=True)
    assert "企业微信：41048: 发送的客户已超出限制" in page


@pytest.mark.parametrize("value", [0, -1, "两元", float("inf")])
def test_a_bad_cost_per_delivery_is_a_config_error(
    db: Database, simulator: Simulator, value: object
) -> None:
    with pytest.raises((ConfigError, ValueError), match="cost_per_delivery"):
        settings_from_mapping(_config(db.url, simulator, cost_per_delivery=value), environ={})


# --- 效果评估 and ROI --------------------------------------------------------------------


def _welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean difference and its 95 % Welch interval, by hand."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    d = statistics.mean(a) - statistics.mean(b)
    half = float(student_t.ppf(0.975, df)) * (va + vb) ** 0.5
    return d, d - half, d + half


def _expected_roi(treated: list[float], held: list[float], reached: int) -> tuple[float, ...]:
    d, low, high = _welch(treated, held)
    scale = len(treated) / (COST * reached)
    return d * scale, low * scale, high * scale


def test_roi_per_tier_matches_a_hand_computation(console: Flask, db: Database) -> None:
    seed_measured_run(db, NAME)
    with db.read() as s:
        results = campaign_results(NAME, session=s)
    rows = {r.tier: r for r in roi_by_tier(results, COST)}
    for tier, (treated, held) in SPEND.items():
        roi = rows[tier].roi
        assert roi is not None
        assert roi.low is not None
        assert roi.high is not None
        assert (roi.value, roi.low, roi.high) == pytest.approx(
            _expected_roi(treated, held, REACHED[tier]), rel=1e-9
        )
        assert rows[tier].cost == pytest.approx(COST * REACHED[tier])
        assert rows[tier].incremental_revenue is not None
        assert rows[tier].incremental_revenue.value == pytest.approx(
            (statistics.mean(treated) - statistics.mean(held)) * len(treated)
        )
    # 高价值: 12/40 vs 6/40 buyers at 100 yuan: +15 yuan a customer, ×40 / (2 × 30) = 10.
    assert rows["高价值"].roi is not None
    assert rows["高价值"].roi.value == pytest.approx(10.0)
    everyone = [x for t, _ in SPEND.values() for x in t], [x for _, h in SPEND.values() for x in h]
    overall = rows["全部"].roi
    assert overall is not None
    assert overall.value == pytest.approx(
        _expected_roi(*everyone, sum(REACHED.values()))[0], rel=1e-9
    )
    assert roi_by_tier(results, None) == []


def test_the_campaign_page_shows_uplift_intervals_and_roi(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    seed_measured_run(db, NAME)
    sign_in_with_token(web)
    page = web.get(f"/admin/campaigns/{NAME}").get_data(as_text=True)
    assert "效果评估" in page
    assert "ROI（按层级）" in page
    shown = {
        tier: float(value)
        for tier, value in re.findall(
            r'<tr data-tier="([^"]+)">.*?roi-value"><span class="est" data-value="([^"]+)"',
            page,
            re.S,
        )
    }
    for tier, (treated, held) in SPEND.items():
        assert shown[tier] == pytest.approx(_expected_roi(treated, held, REACHED[tier])[0])
    assert 'data-chart="uplift"' in page
    assert 'data-chart="roi"' in page
    charts = re.search(r'id="chart-data">(.*?)</script>', page, re.S)
    assert charts
    spec = json.loads(charts.group(1))
    assert spec["roi"]["categories"] == ["普通", "高价值"]
    assert spec["uplift"]["kind"] == "interval"
    # 高价值 30-day conversion: 12/40 − 6/40 = +15 percentage points.
    at = spec["uplift"]["categories"].index("高价值")
    assert spec["uplift"]["values"][at] == pytest.approx(15.0)
    assert spec["uplift"]["low"][at] < 15.0 < spec["uplift"]["high"][at]
    assert "整体 ROI" in page


def test_no_cost_means_no_roi_and_a_fresh_install_says_what_to_do(
    db: Database, simulator: Simulator
) -> None:
    cfg = console_config(db.url, simulator)
    app = create_app(settings_from_mapping(cfg, environ={}))
    try:
        web = app.test_client()
        sign_in_with_token(web)
        page = web.get("/admin/campaigns").get_data(as_text=True)
        assert 'id="empty-state"' in page
        assert "[[outreach.campaigns]]" in page
    finally:
        app.extensions[EXTENSION_KEY].close()
    cfg["outreach"] = {"quiet_hours": "", "campaigns": [campaign(NAME)]}
    app = create_app(settings_from_mapping(cfg, environ={}))
    try:
        web = app.test_client()
        sign_in_with_token(web)
        page = web.get(f"/admin/campaigns/{NAME}").get_data(as_text=True)
        assert "还没有运行过" in page
        assert "设置 <code>cost_per_delivery</code>" in page
    finally:
        app.extensions[EXTENSION_KEY].close()
