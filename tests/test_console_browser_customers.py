"""The 客户 pages in headless Chromium: search, open a customer, read the tier's reason."""

from __future__ import annotations

import pytest

from tests.support.console import HOSTILE
from tests.support.console_browser import PHONE, Served, Tab, screenshot, sign_in_with_token

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser


def test_search_then_open_a_customer_and_read_why_they_hold_their_tier(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
    page.click("nav.nav a[href='/admin/customers']")
    page.wait_for_selector("#customers")
    assert page.get_attribute("nav.nav a[href='/admin/customers']", "aria-current") == "page"
    page.fill("input[name=q]", "客户1")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    rows = page.locator("#customers tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-customer") == "wm001"
    with page.expect_navigation():
        page.click("#customers a.customer-name")
    assert page.url == served.url + "/admin/customers/wm001"
    assert page.locator("#error").count() == 0, page.inner_text("main")
    assert page.inner_text("#customer-name").startswith("客户1")
    assert page.get_attribute("nav.nav a[href='/admin/customers']", "aria-current") == "page"
    reasons = page.locator("#tier-reasons article[data-dimension=value]")
    assert reasons.is_visible()
    text = reasons.inner_text()
    assert "当前层级 普通" in text
    assert "spend_365d >= 1000" in text  # 高价值's rule, not met ...
    assert "spend_365d = 50 < 1000" in text  # ... by this value
    assert "spend_365d = 50 ≥ 0" in text  # 普通's rule, met
    assert reasons.locator("tr.chosen").get_attribute("data-tier") == "普通"
    assert page.locator("#timeline li").count() >= 3
    screenshot(page, "customer", capsys)
    assert tab.errors == []


def test_the_hostile_name_stays_text_and_the_page_fits_a_phone(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    page.set_viewport_size(PHONE)
    sign_in_with_token(page, served.url)
    answer = page.goto(served.url + "/admin/customers/wm000")
    assert answer is not None
    assert answer.status == 200, page.inner_text("main")
    assert page.inner_text("#customer-name").startswith(HOSTILE)
    assert page.locator("#profile img").count() == 0
    assert tab.dialogs == []
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    page.goto(served.url + "/admin/customers")
    assert page.locator("#customers tbody tr").count() == 7  # seed_overview's customers
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "customers-phone", capsys)
    assert tab.errors == []
