"""The console in headless Chromium against a real `tagbot serve` and the WeCom simulator.

Debian's chromium driven by Playwright (never `playwright install`). Screenshots go to
tmp/artifacts/console/ (or $TAGBOT_ARTIFACTS/console/); their paths are printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.console import audit
from bot.db import Database
from bot.db.models import AuthFailure, TierAssignment
from bot.db.types import utcnow
from tests.support.browser import CHROMIUM, artifacts_dir, unavailable
from tests.support.configs import toml_text
from tests.support.console import DIMENSION, HOSTILE, Seeded, console_config, seed_overview
from tests.support.corp import ADMIN_TOKEN
from tests.support.processes import free_port, serve, wait_healthy
from tests.support.simulators import start_simulator
from wecom_sim import Simulator

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser

OLD_AUDIT_ROWS = 55  # more than one page of the 系统 page's audit list
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Served:
    """The bot served by `tagbot serve` on a seeded SQLite file, and its simulator."""

    url: str
    db_url: str
    sim: Simulator
    seeded: Seeded


@dataclass
class Tab:
    """A page in its own browser context, with what went wrong in it."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _dimension_toml() -> str:
    lines = ["[[tiering.dimensions]]"]
    lines += [f'{k} = "{v}"' for k, v in DIMENSION.items() if isinstance(v, str)]
    for tier in DIMENSION["tiers"]:
        lines += ["[[tiering.dimensions.tiers]]"]
        lines += [f'{k} = "{v}"' for k, v in tier.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def served(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("console")
    db_path = folder / "tagbot.db"
    shutil.copyfile(sqlite_template, db_path)
    db_url = f"sqlite:///{db_path}"
    sim = start_simulator()
    for userid, name in (("boss", "老板"), ("watcher", "观察员"), ("stranger", "路人")):
        sim.add_staff(userid, name)
    port = free_port()
    cfg = console_config(db_url, sim, dimensions=False)
    cfg["server"]["port"] = port
    cfg["app"] = {"log_level": "WARNING"}
    config = folder / "config.toml"
    config.write_text(toml_text(cfg) + _dimension_toml(), encoding="utf-8")
    db = Database(db_url)
    try:
        seeded = seed_overview(db, now=utcnow(), tz=ZoneInfo("Asia/Shanghai"))
        with db.write() as session:
            for i in range(OLD_AUDIT_ROWS):
                audit.record(session, actor=f"earlier{i}", role="admin", action="login")
    finally:
        db.dispose()
    proc: subprocess.Popen[bytes] = serve(config)
    try:
        wait_healthy(port)
        yield Served(f"http://127.0.0.1:{port}", db_url, sim, seeded)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        sim.stop()


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    found = Tab(page)

    def on_console(message: Any) -> None:
        # An answer's status (the wrong token's 401) is logged as an error too: not ours.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            found.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: found.errors.append(str(e)))

    def on_dialog(dialog: Any) -> None:
        found.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield found
    context.close()


def _screenshot(page: Any, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    with capsys.disabled():
        print(f"\n  screenshot: {path}")
    return path


def _sign_in_with_token(page: Any, url: str, token: str = ADMIN_TOKEN) -> None:
    page.goto(url + "/admin/login")
    page.fill("#token", token)
    with page.expect_navigation():  # through the redirect, to the page it ends on
        page.click("form[action='/admin/login'] button[type=submit]")


def _sign_in_with_wecom(page: Any, url: str, userid: str) -> None:
    page.goto(url + "/admin/login")
    with page.expect_navigation():
        page.click("#wecom-login")  # to the simulator's login page
    with page.expect_navigation():
        page.click(f"a[data-userid='{userid}']")  # this member scans; back with a code


def _failures(db_url: str) -> int:
    db = Database(db_url)
    try:
        with db.read() as session:
            return int(session.scalar(select(func.count()).select_from(AuthFailure)) or 0)
    finally:
        db.dispose()


def test_a_wrong_token_is_refused_and_the_right_one_signs_in(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    page.goto(served.url + "/admin/")
    assert page.url == served.url + "/admin/login"
    _screenshot(page, "login", capsys)
    before = _failures(served.db_url)
    _sign_in_with_token(page, served.url, "not-the-admin-token-000")
    assert "管理令牌不正确" in page.inner_text("[role=alert]")
    assert page.url == served.url + "/admin/login"
    assert _failures(served.db_url) == before + 1
    _sign_in_with_token(page, served.url)
    assert page.url == served.url + "/admin/"
    assert page.inner_text(".who .badge") == "管理员"
    assert ADMIN_TOKEN not in page.content()
    assert tab.errors == []


def test_the_overview_shows_the_database_numbers_and_a_chart_with_data(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    _sign_in_with_token(page, served.url)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')]"
        ".every(el => window.echarts && echarts.getInstanceByDom(el))"
    )
    shown = {
        key: int(page.inner_text(f"#kpi-{key} .kpi-value").replace(",", ""))
        for key in (
            "customers_total",
            "added_today",
            "lost_by_customer_today",
            "lost_by_staff_today",
            "net_today",
            "high_value",
        )
    }
    seeded = served.seeded
    lost = seeded.lost_by_customer + seeded.lost_by_staff
    assert shown == {
        "customers_total": seeded.customers_total,
        "added_today": seeded.added_today,
        "lost_by_customer_today": seeded.lost_by_customer,
        "lost_by_staff_today": seeded.lost_by_staff,
        "net_today": seeded.added_today - lost,
        "high_value": seeded.high_value,
    }
    delta = page.inner_text("#kpi-added_today .delta")
    assert int(delta) == seeded.added_today - seeded.added_yesterday
    db = Database(served.db_url)
    try:
        with db.read() as session:
            in_db = dict(
                session.execute(
                    select(TierAssignment.tier, func.count()).group_by(TierAssignment.tier)
                ).all()
            )
    finally:
        db.dispose()
    series = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map(el => {
            const option = echarts.getInstanceByDom(el).getOption();
            return [el.dataset.chart, {
                categories: option.xAxis[0].data,
                series: option.series.map(s => [s.name, s.data]),
            }];
        }))"""
    )
    assert series["tiers-value"]["categories"] == ["高价值", "普通"]
    assert [d for _, d in series["tiers-value"]["series"]] == [[in_db["高价值"], in_db["普通"]]]
    trend = dict(series["trend"]["series"])
    assert len(series["trend"]["categories"]) == 7  # 近7天 first
    assert trend["新增"][-2:] == [seeded.added_yesterday, seeded.added_today]
    assert trend["流失"][-1] == lost
    assert trend["净增"][-1] == seeded.added_today - lost
    page.click("button[data-range='30']")
    assert (
        len(
            page.evaluate(
                "() => echarts.getInstanceByDom("
                "document.querySelector('[data-chart=trend]')).getOption().xAxis[0].data"
            )
        )
        == 30
    )
    assert page.get_attribute("button[data-range='30']", "aria-pressed") == "true"
    assert "数据截至" in page.inner_text(".asof")
    assert page.locator(".info").count() >= 16  # every card's number and its 较昨日
    assert page.locator(".info").first.get_attribute("title")
    # The hostile customer and staff names are text on the page, never markup.
    recent = page.inner_text("#recent-adds")
    assert HOSTILE in recent
    assert page.locator("#recent-adds img").count() == 0
    assert tab.dialogs == []
    assert tab.errors == []  # no script error, no CSP violation
    _screenshot(page, "overview", capsys)


def test_the_overview_fits_a_phone(
    browser: Any, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    try:
        page = context.new_page()
        _sign_in_with_token(page, served.url)
        page.wait_for_selector("[data-chart] canvas")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        _screenshot(page, "overview-phone", capsys)
    finally:
        context.close()


def test_wecom_login_admits_admins_and_viewers_and_refuses_the_rest(
    browser: Any, served: Served
) -> None:
    roles = {}
    for userid in ("boss", "watcher", "stranger"):
        context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
        try:
            page = context.new_page()
            _sign_in_with_wecom(page, served.url, userid)
            if userid == "stranger":
                assert "没有运营后台的权限" in page.inner_text("#error")
                page.goto(served.url + "/admin/")
                assert page.url == served.url + "/admin/login"
            else:
                assert page.url == served.url + "/admin/"
                roles[page.inner_text(".who .actor")] = page.inner_text(".who .badge")
        finally:
            context.close()
    assert roles == {"boss": "管理员", "watcher": "只读"}


def test_a_viewers_post_is_refused(tab: Tab, served: Served) -> None:
    page = tab.page
    _sign_in_with_wecom(page, served.url, "watcher")
    page.goto(served.url + "/admin/system")
    assert page.locator("form[action='/admin/system/sessions/revoke']").count() == 0
    answer = page.evaluate(
        """async () => {
            const headers = JSON.parse(document.body.getAttribute('hx-headers'));
            const r = await fetch('/admin/system/sessions/revoke', {method: 'POST', headers});
            return {status: r.status, text: await r.text()};
        }"""
    )
    assert answer["status"] == 403
    assert "只读账号不能修改" in answer["text"]


def test_a_post_without_the_csrf_token_is_refused(tab: Tab, served: Served) -> None:
    page = tab.page
    _sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/system")
    page.evaluate("() => document.querySelector(\"#sessions input[name='csrf_token']\").remove()")
    with page.expect_navigation():
        page.click("#sessions button[type=submit]")
    assert "请求缺少有效的安全令牌" in page.inner_text("#error")
    page.goto(served.url + "/admin/system")
    assert page.locator(".audit-row[data-action='sessions_revoked']").count() == 0


def test_htmx_loads_more_audit_rows_under_the_csp(tab: Tab, served: Served) -> None:
    page = tab.page
    _sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/system")
    shown = page.locator(".audit-row").count()
    assert shown == 50
    page.click("#audit-more button")
    page.wait_for_function(f"() => document.querySelectorAll('.audit-row').length > {shown}")
    assert page.locator(".audit-row").count() > shown
    assert tab.errors == []
