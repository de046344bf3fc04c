"""The console in headless Chromium against a real `tagbot serve` and the WeCom simulator.

Debian's chromium driven by Playwright (never `playwright install`). Screenshots go to
tmp/artifacts/console/ (or $TAGBOT_ARTIFACTS/console/); their paths are printed.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot.db import Database
from bot.db.models import AuthFailure, TierAssignment
from tests.support.console import HOSTILE
from tests.support.console_browser import (
    DESKTOP,
    PHONE,
    Served,
    Tab,
    screenshot,
    sign_in_with_token,
    sign_in_with_wecom,
)
from tests.support.corp import ADMIN_TOKEN

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser


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
    screenshot(page, "login", capsys)
    before = _failures(served.db_url)
    sign_in_with_token(page, served.url, "not-the-admin-token-000")
    assert "管理令牌不正确" in page.inner_text("[role=alert]")
    assert page.url == served.url + "/admin/login"
    assert _failures(served.db_url) == before + 1
    sign_in_with_token(page, served.url)
    assert page.url == served.url + "/admin/"
    assert page.inner_text(".who .badge") == "管理员"
    assert ADMIN_TOKEN not in page.content()
    assert tab.errors == []


def test_the_overview_shows_the_database_numbers_and_a_chart_with_data(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
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
                categories: option.xAxis ? option.xAxis[0].data : null,  // sankey: none
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
    screenshot(page, "overview", capsys)


def test_the_overview_fits_a_phone(
    browser: Any, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    try:
        page = context.new_page()
        sign_in_with_token(page, served.url)
        page.wait_for_selector("[data-chart] canvas")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        screenshot(page, "overview-phone", capsys)
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
            sign_in_with_wecom(page, served.url, userid)
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
    sign_in_with_wecom(page, served.url, "watcher")
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
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/system")
    page.evaluate("() => document.querySelector(\"#sessions input[name='csrf_token']\").remove()")
    with page.expect_navigation():
        page.click("#sessions button[type=submit]")
    assert "请求缺少有效的安全令牌" in page.inner_text("#error")
    page.goto(served.url + "/admin/system")
    assert page.locator(".audit-row[data-action='sessions_revoked']").count() == 0


def test_htmx_loads_more_audit_rows_under_the_csp(tab: Tab, served: Served) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/system")
    shown = page.locator(".audit-row").count()
    assert shown == 50
    page.click("#audit-more button")
    page.wait_for_function(f"() => document.querySelectorAll('.audit-row').length > {shown}")
    assert page.locator(".audit-row").count() > shown
    assert tab.errors == []
