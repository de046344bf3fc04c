"""The console's web layer with the Flask client: sign-in, sessions, CSRF, roles, audit, pages."""

from __future__ import annotations

import ast
import json
import math
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, insert, select, update

from bot.db import Database
from bot.db.models import (
    AuthFailure,
    ChannelDay,
    ChannelTotal,
    ConsoleAudit,
    ConsoleSession,
    InboxEvent,
    OutboxOperation,
    TierAssignment,
    WeComBudgetSlot,
)
from bot.db.types import utcnow
from bot.reports.latest_adds import latest_adds
from handlers.app import create_app
from tests.support.console import (
    HOSTILE,
    console_settings,
    csrf_of,
    seed_overview,
    sign_in_with_token,
    sign_in_with_wecom,
    wecom_login_state,
)
from tests.support.corp import ADMIN_TOKEN, CORP_ID
from wecom_sim import Simulator


@pytest.fixture
def console(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    """The app with [console] admins = boss, viewers = watcher, logging in at the simulator."""
    for userid in ("boss", "watcher", "stranger"):
        simulator.add_staff(userid)
    app = create_app(console_settings(db_url, simulator))
    yield app
    app.extensions["tagbot"].close()


@pytest.fixture
def web(console: Flask) -> FlaskClient:
    return console.test_client()


def _audit(db: Database) -> list[tuple[str, str, str]]:
    with db.read() as session:
        rows = session.execute(
            select(ConsoleAudit.actor, ConsoleAudit.role, ConsoleAudit.action).order_by(
                ConsoleAudit.id
            )
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _sessions(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(ConsoleSession)) or 0)


def test_the_console_without_a_session_redirects_to_the_login_page(web: FlaskClient) -> None:
    answer = web.get("/admin/")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/admin/login"
    assert web.get("/admin/system").headers["Location"] == "/admin/login"


def test_the_admin_token_signs_in_as_admin_with_a_safe_cookie(
    web: FlaskClient, db: Database
) -> None:
    answer = sign_in_with_token(web)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/"
    cookie = next(
        c for c in answer.headers.getlist("Set-Cookie") if c.startswith("tagbot_console=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/admin" in cookie
    assert "Secure" not in cookie  # plain http, no https public_url
    value = cookie.split(";")[0].split("=", 1)[1]
    with db.read() as session:
        stored = session.scalars(select(ConsoleSession)).one()
    assert value not in (stored.id_hash, stored.csrf_token)  # the cookie holds a signed id only
    page = web.get("/admin/")
    assert page.status_code == 200
    assert "管理员" in page.get_data(as_text=True)
    assert ADMIN_TOKEN not in page.get_data(as_text=True)
    assert _audit(db) == [("admin-token", "admin", "login")]


def test_a_wrong_token_signs_in_nobody_and_counts_a_failure(web: FlaskClient, db: Database) -> None:
    answer = sign_in_with_token(web, "not-the-admin-token-at-all")
    assert answer.status_code == 401
    assert "管理令牌不正确" in answer.get_data(as_text=True)
    assert web.get("/admin/").status_code == 302
    assert _sessions(db) == 0
    with db.read() as session:
        failures = session.scalars(select(AuthFailure.scope)).all()
    assert failures == ["admin"]


def test_the_throttle_refuses_the_login_form_after_too_many_failures(
    db_url: str, simulator: Simulator
) -> None:
    settings = console_settings(db_url, simulator)
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"auth_failure_limit": 2})}
    )
    app = create_app(settings)
    try:
        web = app.test_client()
        assert sign_in_with_token(web, "wrong-token-number-one").status_code == 401
        assert sign_in_with_token(web, "wrong-token-number-two").status_code == 401
        refused = sign_in_with_token(web)  # even the right token now waits
        assert refused.status_code == 429
        assert "Retry-After" in refused.headers
        assert "尝试次数过多" in refused.get_data(as_text=True)
    finally:
        app.extensions["tagbot"].close()


def test_the_login_form_without_its_csrf_field_is_refused(web: FlaskClient, db: Database) -> None:
    web.get("/admin/login")
    answer = web.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 400
    assert "CSRF" in answer.get_data(as_text=True)
    assert _sessions(db) == 0


def test_a_post_without_the_session_csrf_token_is_refused(web: FlaskClient, db: Database) -> None:
    sign_in_with_token(web)
    answer = web.post("/admin/system/sessions/revoke")
    assert answer.status_code == 403
    assert "CSRF" in answer.get_data(as_text=True)
    wrong = web.post("/admin/system/sessions/revoke", headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    assert ("admin-token", "admin", "sessions_revoked") not in _audit(db)
    token = csrf_of(web.get("/admin/system").get_data(as_text=True))
    by_header = web.post("/admin/system/sessions/revoke", headers={"X-CSRF-Token": token})
    assert by_header.status_code == 303  # htmx sends the token in this header


def test_logout_deletes_the_session_and_is_audited(web: FlaskClient, db: Database) -> None:
    sign_in_with_token(web)
    token = csrf_of(web.get("/admin/").get_data(as_text=True))
    answer = web.post("/admin/logout", data={"csrf_token": token})
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/login"
    assert _sessions(db) == 0
    assert web.get("/admin/").status_code == 302
    assert _audit(db) == [("admin-token", "admin", "login"), ("admin-token", "admin", "logout")]
    system = web.get("/admin/system")
    assert system.status_code == 302  # signed out for good


def test_a_stolen_cookie_stops_working_after_logout(web: FlaskClient, console: Flask) -> None:
    sign_in_with_token(web)
    cookie = web.get_cookie("tagbot_console", path="/admin")
    assert cookie is not None
    token = csrf_of(web.get("/admin/").get_data(as_text=True))
    web.post("/admin/logout", data={"csrf_token": token})
    thief = console.test_client()
    thief.set_cookie("tagbot_console", cookie.value, path="/admin")
    assert thief.get("/admin/").status_code == 302


def test_a_forged_cookie_is_no_session(web: FlaskClient) -> None:
    web.set_cookie("tagbot_console", "not-a-signed-value", path="/admin")
    assert web.get("/admin/").status_code == 302


@pytest.mark.parametrize(("column", "age"), [("last_seen_at", 121), ("created_at", 60 * 24 + 1)])
def test_sessions_expire_idle_and_absolute(
    web: FlaskClient, db: Database, column: str, age: int
) -> None:
    sign_in_with_token(web)
    assert web.get("/admin/").status_code == 200
    old = utcnow() - timedelta(minutes=age)
    with db.write() as session:
        values = {column: old}
        if column == "created_at":
            values["last_seen_at"] = utcnow()
        session.execute(update(ConsoleSession).values(**values))
    assert web.get("/admin/").status_code == 302


def test_https_public_url_makes_the_cookie_secure(db_url: str, simulator: Simulator) -> None:
    settings = console_settings(db_url, simulator)
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"public_url": "https://bot.example"})}
    )
    app = create_app(settings)
    try:
        answer = sign_in_with_token(app.test_client())
        cookie = next(
            c for c in answer.headers.getlist("Set-Cookie") if c.startswith("tagbot_console=")
        )
        assert "Secure" in cookie
    finally:
        app.extensions["tagbot"].close()


def test_wecom_login_sends_the_browser_to_the_configured_login_page(
    web: FlaskClient, simulator: Simulator
) -> None:
    answer = web.get("/admin/login/wecom")
    assert answer.headers["Location"].startswith(simulator.web_login_url + "?")
    query = wecom_login_state(web)
    assert query["login_type"] == "CorpApp"
    assert query["appid"] == simulator.corp_id
    assert query["agentid"] == str(simulator.agent_id)
    assert query["redirect_uri"] == "http://localhost/admin/login/wecom/callback"
    assert len(query["state"]) >= 16


def test_wecom_login_signs_in_admins_and_viewers_and_refuses_the_rest(
    console: Flask, simulator: Simulator, db: Database
) -> None:
    boss, watcher, stranger = (console.test_client() for _ in range(3))
    assert sign_in_with_wecom(boss, simulator, "boss").status_code == 303
    assert sign_in_with_wecom(watcher, simulator, "watcher").status_code == 303
    refused = sign_in_with_wecom(stranger, simulator, "stranger")
    assert refused.status_code == 403
    assert "没有运营后台的权限" in refused.get_data(as_text=True)
    assert stranger.get("/admin/").status_code == 302
    assert "管理员" in boss.get("/admin/").get_data(as_text=True)
    assert "只读" in watcher.get("/admin/").get_data(as_text=True)
    assert _audit(db) == [
        ("boss", "admin", "login"),
        ("watcher", "viewer", "login"),
        ("stranger", "", "login_refused"),
    ]


def test_wecom_login_refuses_an_outsider_a_reused_code_and_a_foreign_state(
    web: FlaskClient, simulator: Simulator, db: Database
) -> None:
    outsider = sign_in_with_wecom(web, simulator, "")
    assert outsider.status_code == 403
    assert "非企业成员" in outsider.get_data(as_text=True)
    query = wecom_login_state(web)
    code = simulator.login_code("boss")
    foreign = web.get(f"/admin/login/wecom/callback?code={code}&state=someone-elses")
    assert foreign.status_code == 400
    assert simulator.calls.get("auth/getuserinfo", 0) == 1  # the outsider's, not this one
    first = web.get(f"/admin/login/wecom/callback?code={code}&state={query['state']}")
    assert first.status_code == 303
    other = web.application.test_client()
    query = wecom_login_state(other)
    reused = other.get(f"/admin/login/wecom/callback?code={code}&state={query['state']}")
    assert reused.status_code == 400
    assert "登录码无效" in reused.get_data(as_text=True)
    cancelled = other.get(f"/admin/login/wecom/callback?state={query['state']}")
    assert cancelled.status_code == 400
    assert _sessions(db) == 1


def test_a_viewer_may_look_but_not_change(
    console: Flask, simulator: Simulator, db: Database
) -> None:
    watcher = console.test_client()
    sign_in_with_wecom(watcher, simulator, "watcher")
    assert watcher.get("/admin/").status_code == 200
    system = watcher.get("/admin/system")
    assert system.status_code == 200
    token = csrf_of(system.get_data(as_text=True))
    refused = watcher.post("/admin/system/sessions/revoke", data={"csrf_token": token})
    assert refused.status_code == 403
    assert "只读账号不能修改" in refused.get_data(as_text=True)
    assert ("watcher", "viewer", "sessions_revoked") not in _audit(db)
    assert watcher.post("/admin/logout", data={"csrf_token": token}).status_code == 303


def test_an_admin_change_is_audited_with_before_and_after(
    console: Flask, simulator: Simulator, db: Database
) -> None:
    boss, watcher = console.test_client(), console.test_client()
    sign_in_with_wecom(watcher, simulator, "watcher")
    sign_in_with_wecom(boss, simulator, "boss")
    token = csrf_of(boss.get("/admin/system").get_data(as_text=True))
    assert boss.post("/admin/system/sessions/revoke", data={"csrf_token": token}).status_code == 303
    assert watcher.get("/admin/").status_code == 302  # their session ended
    with db.read() as session:
        entry = session.scalars(
            select(ConsoleAudit).where(ConsoleAudit.action == "sessions_revoked")
        ).one()
    assert (entry.actor, entry.role, entry.before, entry.after) == (
        "boss",
        "admin",
        {"sessions": 2},
        {"sessions": 1, "ended": 1},
    )
    page = boss.get("/admin/system").get_data(as_text=True)
    assert page.count('class="audit-row"') == 3  # 2 logins and the revocation
    assert "结束其他会话" in page


def test_the_audit_list_pages_with_htmx(web: FlaskClient, db: Database) -> None:
    from bot.console import audit

    with db.write() as session:
        for i in range(60):
            audit.record(session=session, actor=f"u{i}", role="admin", action="login")
    sign_in_with_token(web)
    page = web.get("/admin/system").get_data(as_text=True)
    assert page.count('class="audit-row"') == 50
    assert 'hx-get="/admin/system/audit?before=' in page
    oldest_shown = page.split('hx-get="/admin/system/audit?before=')[1].split('"')[0]
    more = web.get(f"/admin/system/audit?before={oldest_shown}").get_data(as_text=True)
    assert more.count('class="audit-row"') == 11  # the token login is the newest of 61


def test_pages_carry_the_security_headers(web: FlaskClient) -> None:
    for path in ("/admin/login", "/static/css/console.css"):
        answer = web.get(path)
        answer.close()  # a static file answers with an open file
        headers = answer.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-eval" not in csp
        assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    sign_in_with_token(web)
    page = web.get("/admin/")
    assert page.headers["Cache-Control"] == "no-store"
    body = page.get_data(as_text=True)
    assert "<script>" not in body  # every script has a src, or is a JSON data block
    assert body.count("<script") == body.count("<script src=") + body.count(
        '<script type="application/json"'
    )


def test_the_overview_counts_match_the_database_and_names_stay_text(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    rt = console.extensions["tagbot"]
    seeded = seed_overview(db, now=utcnow(), tz=rt.settings.tz)
    sign_in_with_token(web)
    page = web.get("/admin/").get_data(as_text=True)

    def kpi(key: str, attr: str = "data-value") -> int:
        return int(page.split(f'id="kpi-{key}"')[1].split(f'{attr}="')[1].split('"')[0])

    assert kpi("customers_total") == seeded.customers_total
    assert kpi("added_today") == seeded.added_today
    assert kpi("added_today", "data-delta") == seeded.added_today - seeded.added_yesterday
    assert kpi("lost_by_customer_today") == seeded.lost_by_customer
    assert kpi("lost_by_staff_today") == seeded.lost_by_staff
    assert kpi("lost_other_today") == 0
    assert kpi("net_today") == seeded.added_today - seeded.lost_by_customer - seeded.lost_by_staff
    assert kpi("high_value") == seeded.high_value
    assert 'id="kpi-churn_warning"' in page
    assert "未配置该层级" in page
    with db.read() as session:
        in_db = dict(
            session.execute(
                select(TierAssignment.tier, func.count()).group_by(TierAssignment.tier)
            ).all()
        )
    assert in_db == seeded.tiers
    for tier, n in seeded.tiers.items():
        assert f'data-tier="{tier}">{n}<' in page
    charts = json.loads(page.split('id="chart-data">')[1].split("</script>")[0])
    assert charts["tiers-value"]["values"] == [seeded.tiers["高价值"], seeded.tiers["普通"]]
    trend = {s["name"]: s["values"] for s in charts["trend"]["series"]}
    assert len(trend["新增"]) == 30
    assert trend["新增"][-2:] == [seeded.added_yesterday, seeded.added_today]
    assert trend["流失"][-1] == seeded.lost_by_customer + seeded.lost_by_staff
    assert 'data-range="7"' in page
    assert 'data-range="30"' in page
    assert 'id="push-queued"' in page
    assert 'id="inbox-dead"' in page
    assert 'id="outbox-dead"' in page
    assert "数据截至" in page
    assert "尚未汇总" not in page
    # Every number carries its definition: one ⓘ per KPI card and per 较昨日 at least.
    assert page.count("ⓘ") >= 2 * 8
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'id="empty-state"' not in page
    assert 'id="missed-welcomes"' not in page  # none missed


def test_a_fresh_install_says_what_to_do_next(web: FlaskClient) -> None:
    sign_in_with_token(web)
    page = web.get("/admin/").get_data(as_text=True)
    assert 'id="empty-state"' in page
    assert "tagbot sync" in page
    assert "还没有运行过分层" in page
    assert "尚未汇总" in page  # 数据截至: the rollup never ran, and the page says so
    assert 'data-value="0"' in page


def test_the_overview_before_the_first_rollup_says_so(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    rt = console.extensions["tagbot"]
    seed_overview(db, now=utcnow(), tz=rt.settings.tz)
    with db.write() as session:  # as if the channel-stats job had never run
        session.execute(delete(ChannelDay))
        session.execute(delete(ChannelTotal))
    sign_in_with_token(web)
    page = web.get("/admin/").get_data(as_text=True)
    assert "尚未汇总" in page
    assert 'id="empty-state"' not in page  # the re-tier and the adds are there
    assert 'data-chart="trend"' not in page


def test_missed_welcomes_show_on_the_overview(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    rt = console.extensions["tagbot"]
    sign_in_with_token(web)
    assert 'id="missed-welcomes"' not in web.get("/admin/").get_data(as_text=True)
    rt.missed_welcomes.add("expired")
    rt.missed_welcomes.add("failed")
    page = web.get("/admin/").get_data(as_text=True)
    section = page.split('id="missed-welcomes"')[1].split("</section>")[0]
    assert 'data-value="2"' in section
    assert "发送失败" in section


def test_browser_tests_say_why_they_skip_without_a_browser(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.support import browser

    assert browser.unavailable() is None or not browser.CHROMIUM.exists()
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    reason = browser.unavailable()
    assert reason is not None
    assert "ensure-browser.sh" in reason


def test_unknown_console_pages_answer_a_page_not_a_traceback(web: FlaskClient) -> None:
    sign_in_with_token(web)
    answer = web.post("/admin/", data={})
    assert answer.status_code in (403, 405)
    assert "Traceback" not in answer.get_data(as_text=True)


def test_the_vendored_files_are_served_with_their_licences(web: FlaskClient) -> None:
    root = Path(__file__).parents[1] / "handlers" / "static" / "vendor"
    for path in (
        "echarts-6.1.0/echarts.min.js",
        "echarts-6.1.0/LICENSE",
        "echarts-6.1.0/NOTICE",
        "htmx-2.0.11/htmx.min.js",
        "htmx-2.0.11/LICENSE",
        "wecom-jssdk-2.4.4/wecom.global.prod.js",
        "wecom-jssdk-2.4.4/LICENSE",
        "wecom-jssdk-2.4.4/package.json",
    ):
        assert (root / path).is_file()
        answer = web.get(f"/static/vendor/{path}")
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        answer.close()


def test_the_overview_shows_queues_and_wecom_calls_from_the_database(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    rt = console.extensions["tagbot"]
    minute = math.floor(time.time())
    with db.write() as session:
        for i, status in enumerate(["pending", "processing", "dead", "done"]):
            session.add(InboxEvent(dedup_key=f"k{i}", event="e", payload="", status=status))
        for status in ["pending", "in_flight", "dead", "dead", "done"]:
            session.add(OutboxOperation(kind="mark_tag", status=status))
        session.execute(
            insert(WeComBudgetSlot),
            [
                {
                    "corp_id": CORP_ID,
                    "api": "tag/mark",
                    "scale": "minute",
                    "slot": minute,
                    "bulk": 7,
                },
                {
                    "corp_id": CORP_ID,
                    "api": "tag/mark",
                    "scale": "hour",
                    "slot": minute // 60,
                    "bulk": 7,
                    "interactive": 4,
                },
            ],
        )
    sign_in_with_token(web)
    page = web.get("/admin/").get_data(as_text=True)

    def stat(key: str) -> int:
        return int(page.split(f'id="{key}"')[1].split('data-value="')[1].split('"')[0])

    assert [stat(k) for k in ("inbox-waiting", "inbox-dead", "outbox-queued", "outbox-dead")] == [
        2,
        1,
        2,
        2,
    ]
    limits = rt.settings.limits
    row = page.split('data-api="tag/mark"')[1].split("</tr>")[0]
    assert f"7 / {limits.calls_per_minute:,}" in row
    assert f"11 / {limits.calls_per_hour:,}" in row


def test_the_latest_adds_name_staff_by_their_display_names(console: Flask, db: Database) -> None:
    rt = console.extensions["tagbot"]
    seed_overview(db, now=utcnow(), tz=rt.settings.tz)
    with db.read() as session:
        adds = latest_adds(session=session, staff_names={"bob": "鲍勃（门店）"})
    names = {a.staff_name for a in adds}
    assert names == {"鲍勃（门店）", HOSTILE}  # bob by the [staff] name, alice by WeCom's
    assert [a.added_at for a in adds] == sorted((a.added_at for a in adds), reverse=True)
    assert len(adds) == 8  # of 8 relations with an add time


def test_the_lists_as_configured_now_decide_a_wecom_sessions_role(
    console: Flask, db_url: str, simulator: Simulator
) -> None:
    watcher, boss = console.test_client(), console.test_client()
    sign_in_with_wecom(watcher, simulator, "watcher")
    sign_in_with_wecom(boss, simulator, "boss")
    # The operator edits [console] and restarts: watcher is now an admin, boss is gone.
    changed = create_app(console_settings(db_url, simulator, admins=["watcher"], viewers=[]))
    try:
        for client in (watcher, boss):
            cookie = client.get_cookie("tagbot_console", path="/admin")
            assert cookie is not None
            again = changed.test_client()
            again.set_cookie("tagbot_console", cookie.value, path="/admin")
            answer = again.get("/admin/")
            if client is watcher:
                assert answer.status_code == 200
                assert "管理员" in answer.get_data(as_text=True)
            else:
                assert answer.status_code == 302
    finally:
        changed.extensions["tagbot"].close()


def test_every_audited_action_has_its_label_in_one_table() -> None:
    """Each action the code records is named in audit.ACTION_LABELS, which no page module edits."""
    from bot.console import audit

    root = Path(__file__).resolve().parent.parent
    recorded: set[str] = set()
    edits: list[str] = []
    for path in sorted([*root.glob("bot/**/*.py"), *root.glob("handlers/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            if func.endswith("audit.record"):
                recorded |= {
                    k.value.value
                    for k in node.keywords
                    if k.arg == "action" and isinstance(k.value, ast.Constant)
                }
            if func == "_record" and node.args and isinstance(node.args[0], ast.Constant):
                recorded.add(node.args[0].value)  # a page's helper around audit.record
            if func.endswith("audit.ACTION_LABELS.update") or func.endswith(
                "audit.ACTION_LABELS.setdefault"
            ):
                edits.append(f"{path.relative_to(root)}:{node.lineno}")
    assert recorded >= {"login", "logout", "channel_created", "campaign_launched"}
    assert recorded <= set(audit.ACTION_LABELS), recorded - set(audit.ACTION_LABELS)
    assert edits == []
