"""The 分层 page in headless Chromium against the served bot: charts with data, 规则试算."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot.db import Database
from bot.db.models import TierAssignment
from tests.support.console_browser import PHONE, Served, Tab, screenshot, sign_in_with_token

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser

CHARTS = """() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map(el => {
    const option = echarts.getInstanceByDom(el).getOption();
    return [el.dataset.chart, {
        x: option.xAxis[0].data,
        y: option.yAxis[0].data || null,
        series: option.series.map(s => [s.name, s.type, s.data]),
    }];
}))"""


def _sizes(db_url: str) -> dict[str, int]:
    db = Database(db_url)
    try:
        with db.read() as session:
            rows = session.execute(
                select(TierAssignment.tier, func.count())
                .where(TierAssignment.dimension == "value")
                .group_by(TierAssignment.tier)
            ).all()
    finally:
        db.dispose()
    return {t: int(n) for t, n in rows}


def test_the_tiers_page_draws_sizes_history_and_the_matrix(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
    page.click("nav.nav a[href='/admin/tiers']")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')]"
        ".every(el => window.echarts && echarts.getInstanceByDom(el))"
    )
    sizes = _sizes(served.db_url)
    charts = page.evaluate(CHARTS)
    assert set(charts) == {"tier-sizes", "tier-series", "tier-matrix"}
    assert charts["tier-sizes"]["x"] == ["高价值", "普通"]
    assert charts["tier-sizes"]["series"][0][2] == [sizes["高价值"], sizes["普通"]]
    history = {name: data for name, _, data in charts["tier-series"]["series"]}
    assert history["高价值"][-1] == sizes["高价值"]
    assert history["普通"][-1] == sizes["普通"]
    assert {kind for _, kind, _ in charts["tier-series"]["series"]} == {"line"}
    ((_name, kind, cells),) = charts["tier-matrix"]["series"]
    assert kind == "heatmap"
    x, y = charts["tier-matrix"]["x"], charts["tier-matrix"]["y"]
    moves = {(y[c[1]], x[c[0]]): c[2] for c in cells}
    assert moves == {("无", "高价值"): sizes["高价值"], ("无", "普通"): sizes["普通"]}
    # Every number carries its ⓘ; the matrix table links each cell to its customers.
    assert page.locator(".info").count() >= 6
    link = page.get_attribute("td[data-from='无'][data-to='普通'] a", "href")
    assert link is not None
    assert link.startswith("/admin/customers?dimension=value&run=")
    assert tab.errors == []
    screenshot(page, "tiers", capsys)


def test_the_rule_trial_answers_in_place_with_htmx(tab: Tab, served: Served) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/tiers")
    page.fill("#when", "spend_365d >= 1000")
    page.click("#trial button[type=submit]")
    page.wait_for_selector("#trial-matched")
    assert page.url == served.url + "/admin/tiers"  # swapped in place, no navigation
    assert page.get_attribute("#trial-matched", "data-value") == str(served.seeded.high_value)
    assert page.locator("#trial-sample tbody tr").count() == served.seeded.high_value
    assert page.locator("#trial-sample img").count() == 0  # the hostile name stays text
    page.fill("#when", "spend_365d >=")
    page.click("#trial button[type=submit]")
    page.wait_for_selector("#trial-error")
    assert "^" in page.inner_text("#trial-error pre")
    assert tab.dialogs == []
    assert tab.errors == []


def test_the_tiers_page_fits_a_phone(
    browser: Any, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    try:
        page = context.new_page()
        sign_in_with_token(page, served.url)
        page.goto(served.url + "/admin/tiers")
        page.wait_for_selector("[data-chart=tier-matrix] canvas")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        screenshot(page, "tiers-phone", capsys)
    finally:
        context.close()
