"""Customer groups (客户群) in headless Chromium: a customer's groups, a group code's row and page."""

from __future__ import annotations

import pytest

from tests.support.console import SeededGroups
from tests.support.console_browser import PHONE, Served, Tab, screenshot, sign_in_with_token

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser

SEEDED = SeededGroups()


def test_a_customer_page_lists_their_groups_in_and_left(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/customers/wm000")
    rows = page.locator("#groups tbody tr")
    assert rows.count() == 2
    now_in, left = rows.nth(0), rows.nth(1)  # still in first
    assert now_in.get_attribute("data-current") == "true"
    assert now_in.locator(".group-name").inner_text() == SEEDED.group
    assert now_in.locator(".channel-name").inner_text() == SEEDED.channel
    assert "扫描群二维码入群" in now_in.inner_text()
    assert now_in.locator(".group-state").inner_text() == "在群中"
    assert left.get_attribute("data-current") == "false"
    assert left.locator(".group-name").inner_text() == SEEDED.other_group
    assert left.locator(".channel-name").inner_text() == "—"
    assert "通过邀请链接入群" in left.inner_text()
    assert left.locator(".group-state").inner_text().startswith("被移出群聊")
    screenshot(page, "customer-groups", capsys)
    # A customer in no group says so.
    page.goto(served.url + "/admin/customers/wm003")
    assert page.locator("#groups tbody tr").count() == 0
    assert "不在任何客户群中" in page.inner_text("#groups")
    assert tab.errors == []


def test_the_group_code_row_counts_joins_leaves_members_and_their_tiers(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/channels")
    row = page.locator("#channels tbody tr", has_text=SEEDED.channel)
    assert row.count() == 1
    assert "群活码" in row.locator(".staff").inner_text()
    assert SEEDED.group in row.locator(".staff").inner_text()  # the group's synced name

    def key(name: str) -> str:
        return str(row.locator(f"[data-key={name}]").first.inner_text().strip())

    assert key("customers").split()[1] == str(SEEDED.joined_total)
    assert key("members") == str(SEEDED.members_now)
    assert key("added_today").split()[0] == str(SEEDED.joined_today)
    assert key("joined_7d") == key("joined_30d") == str(SEEDED.joined_7d)
    assert key("left_7d") == key("left_30d") == str(SEEDED.left_today)
    assert key("lost_by_customer") == str(SEEDED.left_today)
    assert key("lost_by_staff") == "0"
    bar = row.locator(".stack .seg")
    drawn = {
        (bar.nth(i).get_attribute("data-tier"), int(bar.nth(i).get_attribute("data-customers")))
        for i in range(bar.count())
    }
    assert drawn == set(SEEDED.tiers)
    assert all(bar.nth(i).bounding_box()["width"] > 0 for i in range(bar.count()))
    screenshot(page, "channels-groups", capsys)

    with page.expect_navigation():
        row.locator(".channel-name a").click()
    assert page.inner_text("#channel-name") == SEEDED.channel
    assert page.inner_text("#kind") == "群活码（加入群聊）"

    def kpi(name: str) -> int:
        return int(page.get_attribute(f"#kpi-{name} .kpi-value", "data-value") or "-1")

    assert kpi("group_joined_total") == SEEDED.joined_total
    assert kpi("group_members_now") == SEEDED.members_now
    assert kpi("group_joined_today") == SEEDED.joined_today
    assert kpi("group_left_today") == SEEDED.left_today
    week = page.locator("#kpi-group-7d")
    assert week.locator("[data-key=joined]").get_attribute("data-value") == str(SEEDED.joined_7d)
    assert week.locator("[data-key=left]").get_attribute("data-value") == str(SEEDED.left_today)
    assert page.locator("#customers").count() == 0  # relations: none come through a group code
    series = page.evaluate(
        """() => {
          const el = document.querySelector('[data-chart="trend"]');
          const chart = el && window.echarts.getInstanceByDom(el);
          return chart ? chart.getOption().series.map(s => [s.name, s.data.length]) : [];
        }"""
    )
    assert series == [["入群", 7], ["主动退群", 7], ["被移出", 7]]
    today = page.locator("#report-table tbody tr").first.locator("td")
    assert [today.nth(i).inner_text() for i in (1, 2, 6)] == [
        str(SEEDED.joined_today),
        str(SEEDED.left_today),
        str(SEEDED.members_now),
    ]
    page.set_viewport_size(PHONE)
    screenshot(page, "channel-group-phone", capsys)
    assert tab.errors == []
