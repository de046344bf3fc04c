"""渠道活码 in headless Chromium: the list, a channel created from the page, its page."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.db import Database
from bot.db.models import Channel
from tests.support.console_browser import PHONE, Served, Tab, screenshot, sign_in_with_token

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser


def _member_in_wecom(served: Served) -> None:
    """Make alice (a member the seeded database already lists) a member of the simulated corp.

    No `tagbot sync` here: the served database is shared with the other browser modules,
    and a sync against a corp without the seeded customers would mark them lost.
    """
    served.sim.add_staff("alice", "Alice")


def _channel(served: Served, name: str) -> Channel | None:
    db = Database(served.db_url)
    try:
        with db.read() as session:
            return session.scalars(select(Channel).where(Channel.name == name)).one_or_none()
    finally:
        db.dispose()


def _series_lengths(page: Any) -> list[int]:
    return list(
        page.evaluate(
            """() => {
              const el = document.querySelector('[data-chart="trend"]');
              const chart = el && window.echarts.getInstanceByDom(el);
              return chart ? chart.getOption().series.map(s => s.data.length) : [];
            }"""
        )
    )


def test_a_channel_created_from_the_page_exists_in_the_simulator(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    _member_in_wecom(served)
    page = tab.page
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/channels")
    assert page.inner_text("h1") == "渠道活码"
    assert page.locator("#channels tbody tr").count() == 2  # the seeded 门店码 and VIP群码
    seeded = page.locator("#channels tbody tr", has_text="门店码")
    assert seeded.locator("[data-key=added_today]").inner_text() == str(served.seeded.added_today)
    bar = seeded.locator(".stack .seg")
    tiers = {bar.nth(i).get_attribute("data-tier") for i in range(bar.count())}
    assert set(served.seeded.tiers) <= tiers  # the seeded tiers, drawn as segments
    widths = [bar.nth(i).bounding_box()["width"] for i in range(bar.count())]
    assert all(w > 0 for w in widths)
    screenshot(page, "channels", capsys)
    page.click("#new-channel")
    page.fill("#name", "浏览器建的码")
    page.fill("#staff", "alice")
    page.fill("#tags", "来源/浏览器")
    page.check("input[name=create_tags]")
    page.fill("#welcome", "欢迎 {name}")
    screenshot(page, "channel-form", capsys)
    with page.expect_navigation():
        page.click("#save")
    assert "渠道活码已创建" in page.inner_text("#done")
    assert page.inner_text("#channel-name") == "浏览器建的码"
    channel = _channel(served, "浏览器建的码")
    assert channel is not None
    ways = {w.state: w for w in served.sim.contact_ways.values()}
    assert ways[channel.state].user == ["alice"]
    assert ways[channel.state].config_id == channel.config_id
    assert "浏览器" in served.sim.tag_catalogue()["来源"]
    # The QR image came through the bot from WeCom and drew.
    width = page.evaluate("() => document.querySelector('img.qr').naturalWidth")
    assert width > 0
    assert _series_lengths(page) == [7, 7, 7, 7]  # 近7天 first
    page.click("[data-range-for=trend][data-range='30']")
    assert _series_lengths(page) == [30, 30, 30, 30]
    screenshot(page, "channel-page", capsys)

    page.set_viewport_size(PHONE)
    page.goto(served.url + "/admin/channels")
    assert page.locator("#channels tbody tr").count() == 3
    screenshot(page, "channels-phone", capsys)
    assert tab.errors == []
