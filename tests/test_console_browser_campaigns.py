"""触达 and 流失 in headless Chromium: preview then launch from the page → 群发 tasks in WeCom.

Its own `tagbot serve` (the shared one has no campaigns), on the session's browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.db import Database
from bot.db.models import CampaignDelivery
from bot.db.types import utcnow
from tests.support.console import HOSTILE, Seeded, seed_overview
from tests.support.console_browser import (
    PHONE,
    Served,
    Tab,
    screenshot,
    serving,
    sign_in_with_token,
)
from tests.support.console_campaigns import seed_measured_run
from tests.support.waiting import wait_for
from wecom_sim import Simulator

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser

NAME = "老客关怀"
CAMPAIGN_TOML = f"""
[outreach]
quiet_hours = ""

[[outreach.campaigns]]
name = "{NAME}"
action = "group_message"
dimension = "value"
tiers = ["高价值", "普通"]
holdout_pct = 0
cost_per_delivery = 0.5
text = "{{staff}}为您准备了会员礼遇"
"""


def _prepare(db: Database, sim: Simulator) -> Seeded:
    seeded = seed_overview(db, now=utcnow(), tz=ZoneInfo("Asia/Shanghai"))
    seed_measured_run(db, NAME)  # 40 days ago: 效果评估 and ROI to draw
    # The seeded customers are friends of alice and bob in WeCom too.
    for ext, userid in (("wm000", "alice"), ("wm001", "alice"), ("wm001", "bob")):
        sim.add_relation(userid, ext)
    for ext in ("wm002", "wm003"):
        sim.add_relation("bob", ext)
    sim.add_relation("alice", "wm006")
    return seeded


@pytest.fixture(scope="module")
def campaigns_served(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Served]:
    with serving(
        tmp_path_factory.mktemp("console-campaigns"),
        sqlite_template,
        staff=(("boss", "老板"), ("alice", "爱丽丝"), ("bob", "鲍勃")),
        prepare=_prepare,
        extra_toml=CAMPAIGN_TOML,
    ) as found:
        yield found


def _senders(db_url: str, run_id: int) -> set[str]:
    db = Database(db_url)
    try:
        with db.read() as session:
            return {
                u
                for u in session.scalars(
                    select(CampaignDelivery.staff_userid).where(
                        CampaignDelivery.arm == "treatment", CampaignDelivery.run_id == run_id
                    )
                )
                if u
            }
    finally:
        db.dispose()


def test_a_campaign_previewed_then_launched_from_the_page_creates_its_tasks(
    tab: Tab, campaigns_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    served = campaigns_served
    page = tab.page
    sign_in_with_token(page, served.url)
    page.click("nav a:has-text('触达')")
    page.click(f"tr[data-campaign='{NAME}'] a")
    page.click("#preview")
    treated = int(page.get_attribute("#count-treatment .stat-value", "data-value") or -1)
    staff = int(page.get_attribute("#count-staff .stat-value", "data-value") or -1)
    assert treated == 4  # 高价值 1 + 普通 3, no holdout
    assert staff == 2
    assert f"将触达 {treated} 位客户" in page.inner_text("#launch-summary")
    assert served.sim.group_msgs == {}  # a preview sends nothing
    screenshot(page, "campaign-preview", capsys)
    form = page.evaluate(
        "() => Object.fromEntries(new FormData(document.querySelector('#launch-form')))"
    )
    page.check("#launch-confirm")
    with page.expect_navigation():
        page.click("#launch-button")
    assert "/admin/campaigns/runs/" in page.url
    wait_for(lambda: len(served.sim.group_msgs) == staff, what="the 群发 tasks in WeCom")
    assert {m.sender for m in served.sim.group_msgs.values()} == _senders(
        served.db_url, int(page.url.rsplit("/", 1)[1])
    )
    page.reload()
    assert page.locator("tr.delivery").count() == treated
    assert page.locator("#by-staff tr[data-staff]").count() == staff
    # The same confirmation posted again (a resubmit): refused, no new task.
    again = page.evaluate(
        """async ([url, fields]) => {
            const r = await fetch(url, {method: 'POST', body: new URLSearchParams(fields)});
            return {status: r.status, text: await r.text()};
        }""",
        [f"/admin/campaigns/{NAME}/launch", form],
    )
    assert again["status"] == 409
    assert "不会重复发送" in again["text"]
    assert len(served.sim.group_msgs) == staff
    page.goto(served.url + "/admin/campaigns")
    assert "已" in page.inner_text(f"tr[data-campaign='{NAME}']")
    assert tab.errors == []
    screenshot(page, "campaigns", capsys)


def test_the_loss_page_lists_losses_and_draws_the_trend(
    tab: Tab, campaigns_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    served = campaigns_served
    page = tab.page
    sign_in_with_token(page, served.url)
    page.goto(served.url + "/admin/loss")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')]"
        ".every(el => window.echarts && echarts.getInstanceByDom(el))"
    )
    series = page.evaluate(
        "() => echarts.getInstanceByDom(document.querySelector('[data-chart=loss-trend]'))"
        ".getOption().series.map(s => [s.name, s.data])"
    )
    trend = dict(series)
    assert trend["客户删员工"][-1] == served.seeded.lost_by_customer
    assert trend["员工删客户"][-1] == served.seeded.lost_by_staff
    assert page.locator("#lost-by-customer tr.lost").count() == served.seeded.lost_by_customer
    assert page.locator("#lost-by-staff tr.lost").count() == served.seeded.lost_by_staff
    assert page.locator("#lost-by-customer td.staff-name").first.inner_text() == HOSTILE
    assert page.locator("main img").count() == 0
    assert tab.errors == []
    screenshot(page, "loss", capsys)


def test_the_campaign_pages_fit_a_phone(
    browser: Any, campaigns_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    try:
        page = context.new_page()
        sign_in_with_token(page, campaigns_served.url)
        for path in ("/admin/campaigns", f"/admin/campaigns/{NAME}/preview", "/admin/loss"):
            page.goto(campaigns_served.url + path)
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, path
        screenshot(page, "loss-phone", capsys)
    finally:
        context.close()


def test_the_evaluation_draws_uplift_and_roi_intervals(
    tab: Tab, campaigns_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    served = campaigns_served
    page = tab.page
    sign_in_with_token(page, served.url)
    page.goto(f"{served.url}/admin/campaigns/{NAME}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')]"
        ".every(el => window.echarts && echarts.getInstanceByDom(el))"
    )
    charts = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map(el => {
            const option = echarts.getInstanceByDom(el).getOption();
            return [el.dataset.chart, {
                categories: option.xAxis[0].data,
                series: option.series.map(s => [s.type, s.data]),
            }];
        }))"""
    )
    assert set(charts) == {"uplift", "roi"}
    uplift = charts["uplift"]
    assert uplift["categories"] == ["普通", "高价值"]
    points = dict(zip(uplift["categories"], uplift["series"][0][1], strict=True))
    assert points["高价值"] == pytest.approx(15.0)  # 12/40 − 6/40 in percentage points
    bars = uplift["series"][1]
    assert bars[0] == "custom"
    assert all(
        low < point < high for (_, low, high), point in zip(bars[1], points.values(), strict=True)
    )
    roi = dict(zip(charts["roi"]["categories"], charts["roi"]["series"][0][1], strict=True))
    shown = float(
        page.get_attribute("#roi-table tr[data-tier='高价值'] .roi-value .est", "data-value") or 0
    )
    assert roi["高价值"] == pytest.approx(shown, abs=0.01)
    assert tab.errors == []
    screenshot(page, "campaign-evaluation", capsys)
