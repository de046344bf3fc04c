"""The staff sidebar in headless Chromium at the WeCom pane's 360 px, with the JS-SDK stand-in.

A real `tagbot serve`, the simulator's OAuth2 redirect and its `ww` stand-in, which checks the
page's signatures as WeCom does: a member sees their customer's tiers and opens 为什么,
another member is refused, the holdout notice, the wrong-entry and outside-WeCom cards, and
a reused or expired OAuth code leads back through sign-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.db import Database
from bot.db.types import utcnow
from bot.wecom.client import WeComClient
from tests.support.console import HOSTILE, Seeded, SeededGroups, console_settings
from tests.support.console_browser import Served, Tab, screenshot, serving
from tests.support.sidebar import HOLDOUT_CAMPAIGN, pick_member, seed_sidebar
from tests.support.sidebar_browser import WEBVIEW, webview_tab
from wecom_sim import Simulator

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser


def _prepare(db: Database, _sim: Simulator) -> Seeded:
    from zoneinfo import ZoneInfo

    return seed_sidebar(db, now=utcnow(), tz=ZoneInfo("Asia/Shanghai"))


@pytest.fixture(scope="module")
def sidebar_served(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Served]:
    with serving(
        tmp_path_factory.mktemp("sidebar"),
        sqlite_template,
        staff=(("alice", "爱丽丝"), ("bob", "鲍勃")),
        prepare=_prepare,
    ) as found:
        yield found


@pytest.fixture
def webview(browser: Any, sidebar_served: Served) -> Iterator[Tab]:
    context, tab = webview_tab(browser, sidebar_served)
    yield tab
    context.close()


def _open(tab: Tab, served: Served) -> list[str]:
    """Open the sidebar as the WeCom client does; return the bot paths the page requested."""
    asked: list[str] = []
    base = served.url
    tab.page.on(
        "request", lambda r: asked.append(r.url[len(base) :]) if r.url.startswith(base) else None
    )
    tab.page.goto(base + "/sidebar/")
    return asked


def test_a_member_sees_their_customer_and_opens_why(
    webview: Tab, sidebar_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sidebar_served.sim.open_chat("alice", "wm000")
    asked = _open(webview, sidebar_served)
    page = webview.page
    page.wait_for_selector("#customer")
    # The browser keeps #wechat_redirect through the redirects; the signed URL drops it.
    assert page.url.split("#")[0] == sidebar_served.url + "/sidebar/"
    # One OAuth round trip, one signature request for both identities, one fragment.
    assert sum(p.startswith("/sidebar/oauth?") for p in asked) == 1
    assert asked.count("/sidebar/jssdk-sign") == 1
    assert asked.count("/sidebar/customer/wm000") == 1
    assert page.inner_text("#customer-name").startswith(HOSTILE)  # text, not an element
    assert page.locator("#customer img").count() == 0
    assert webview.dialogs == []
    assert page.locator("#why-1").count() == 0  # 为什么 is computed when first asked for
    badge = page.locator("#tier-badges button[data-dimension=value]")
    assert badge.inner_text() == "客户价值：高价值"
    badge.click()
    why = page.locator("#why-1")
    why.wait_for(state="visible")
    assert asked.count("/sidebar/customer/wm000/why") == 1
    assert badge.get_attribute("aria-expanded") == "true"
    text = why.inner_text()
    assert "为什么是“高价值”" in text
    assert "spend_365d >= 1000" in text
    assert "spend_365d = 1500 ≥ 1000" in text
    assert "的数据计算" in text
    assert "重点维护" not in text  # the hint lives under 该怎么做
    assert "老客关怀" in page.inner_text("#todo")
    assert page.evaluate("document.documentElement.scrollWidth") <= WEBVIEW["width"]
    screenshot(page, "sidebar", capsys)
    badge.click()
    why.wait_for(state="hidden")
    assert webview.errors == []


def test_another_member_is_refused_that_customer(
    webview: Tab, sidebar_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sidebar_served.sim.open_chat("bob", "wm000")  # alice's customer
    statuses: list[int] = []
    fragment = f"{sidebar_served.url}/sidebar/customer/wm000"
    webview.page.on("response", lambda r: statuses.append(r.status) if r.url == fragment else None)
    _open(webview, sidebar_served)
    page = webview.page
    page.wait_for_selector("#card-not_follower")
    assert statuses == [403]
    assert "你不是该客户的跟进人" in page.inner_text("#card-not_follower")
    html = page.content()
    for data in (HOSTILE, "&lt;img", "高价值", "门店码", "1500"):
        assert data not in html
    assert page.locator("#customer").count() == 0
    screenshot(page, "sidebar-refused", capsys)


def test_a_holdout_customer_shows_the_notice(webview: Tab, sidebar_served: Served) -> None:
    sidebar_served.sim.open_chat("alice", "wm001")
    _open(webview, sidebar_served)
    page = webview.page
    page.wait_for_selector("#customer")
    notice = page.locator("#holdout")
    assert notice.is_visible()
    assert "该客户在对照组，请勿主动营销" in notice.inner_text()
    assert HOLDOUT_CAMPAIGN in notice.inner_text()
    assert webview.errors == []


def test_the_sidebar_shows_the_customers_groups(
    webview: Tab, sidebar_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    groups = SeededGroups()
    sidebar_served.sim.open_chat("alice", "wm000")
    _open(webview, sidebar_served)
    page = webview.page
    page.wait_for_selector("#customer")
    items = page.locator("#groups li")
    assert items.count() == 2
    now_in, left = items.nth(0), items.nth(1)
    assert now_in.get_attribute("data-current") == "true"
    assert now_in.locator(".group-name").inner_text() == groups.group
    assert now_in.locator(".channel-name").inner_text() == groups.channel
    assert now_in.locator(".group-state").inner_text() == "在群中"
    assert left.get_attribute("data-current") == "false"
    assert left.locator(".group-name").inner_text() == groups.other_group
    assert left.locator(".channel-name").count() == 0  # invited by link, no group code
    assert left.locator(".group-state").inner_text().startswith("被移出群聊")
    assert page.evaluate("document.documentElement.scrollWidth") <= WEBVIEW["width"]
    screenshot(page, "sidebar-groups", capsys)
    assert webview.errors == []


def test_a_wrong_signature_fails_in_the_standin_and_shows_a_card(
    webview: Tab, sidebar_served: Served
) -> None:
    """The stand-in checks signatures as WeCom does: a tampered one gets no customer."""

    def tamper(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        signature = body["agent"]["signature"]
        body["agent"]["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        route.fulfill(response=answer, json=body)

    webview.page.route(f"{sidebar_served.url}/sidebar/jssdk-sign", tamper)
    sidebar_served.sim.open_chat("alice", "wm000")
    asked = _open(webview, sidebar_served)
    page = webview.page
    page.wait_for_selector("#card-contact:not([hidden])")
    assert "no permission" in page.inner_text("#contact-error")
    assert not any(p.startswith("/sidebar/customer/") for p in asked)
    assert page.locator("#customer").count() == 0


@pytest.mark.parametrize("entry", ["group_chat_tools", "normal"])
def test_a_group_chat_or_other_entry_shows_its_card(
    webview: Tab, sidebar_served: Served, entry: str
) -> None:
    sidebar_served.sim.open_chat("alice", "", entry=entry)
    asked = _open(webview, sidebar_served)
    page = webview.page
    page.wait_for_selector("#card-entry:not([hidden])")
    assert "请从客户单聊中打开" in page.inner_text("#card-entry")
    assert page.locator("#card-outside").is_hidden()
    assert page.locator("#loading").is_hidden()
    assert not any(p.startswith("/sidebar/customer/") for p in asked)
    assert webview.errors == []


def test_outside_wecom_shows_its_card(
    webview: Tab, sidebar_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = sidebar_served.sim
    pick_member(sim, "alice")  # the member signs in by OAuth ...
    sim.outside_wecom()  # ... but the page runs in a plain browser
    try:
        asked = _open(webview, sidebar_served)
        webview.page.wait_for_selector("#card-outside:not([hidden])")
    finally:
        pick_member(sim, None)  # back to the open chat's member
    page = webview.page
    page.wait_for_selector("#card-outside:not([hidden])")
    assert "请在企业微信中打开" in page.inner_text("#card-outside")
    assert page.locator("#card-entry").is_hidden()
    assert not any(p.startswith("/sidebar/customer/") for p in asked)
    screenshot(page, "sidebar-outside", capsys)
    assert webview.errors == []


def _spoil_codes(tab: Tab, served: Served, how: str, times: int) -> list[str]:
    """Spoil the first `times` codes WeCom hands the page (spent, or left to expire).

    WeCom's silent authorize redirect is not one a browser router sees (it follows a
    redirect), so the simulated client shows its member picker instead: nobody picked,
    the open chat's member left blank. Each pick is a navigation the router takes: its
    code is spoiled before the browser brings it to /sidebar/oauth.
    """
    pick_member(served.sim, None)
    served.sim.open_chat("", "wm000")
    seen: list[str] = []
    settings = console_settings(served.db_url, served.sim)

    def spoil(route: Any) -> None:
        answer = route.fetch(max_redirects=0)
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        seen.append(code)
        if len(seen) <= times:
            if how == "reused":  # someone (another tab, a replayed URL) spent it first
                db = Database(served.db_url)
                spender = WeComClient(settings.wecom, settings.limits, db=db, max_pauses=0)
                try:
                    assert spender.get_user_info(code).userid == "alice"
                finally:
                    spender.close()
                    db.dispose()
            else:
                served.sim.advance_time(301)  # codes live 5 minutes
        route.fulfill(response=answer)

    tab.page.route(f"{served.sim.url}/connect/oauth2/pick?*", spoil)
    return seen


def _pick_alice(tab: Tab) -> None:
    tab.page.click('#members a[data-userid="alice"]')


@pytest.mark.parametrize("how", ["reused", "expired"])
def test_a_reused_or_expired_code_goes_back_through_sign_in(
    webview: Tab, sidebar_served: Served, how: str
) -> None:
    sim = sidebar_served.sim
    invalid = sim.calls.get(("auth/getuserinfo", 40029), 0)
    codes = _spoil_codes(webview, sidebar_served, how, times=1)
    asked = _open(webview, sidebar_served)
    _pick_alice(webview)  # a spoiled code: the bot sends the client through sign-in again
    _pick_alice(webview)
    page = webview.page
    page.wait_for_selector("#customer")
    assert page.inner_text("#customer-name").startswith(HOSTILE)
    assert len(codes) == 2
    assert codes[0] != codes[1]
    assert sum(p.startswith("/sidebar/oauth?") for p in asked) == 2
    assert sim.calls[("auth/getuserinfo", 40029)] == invalid + 1
    assert webview.errors == []


def test_two_spoiled_codes_in_a_row_show_a_card_and_reentering_signs_in(
    webview: Tab, sidebar_served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    codes = _spoil_codes(webview, sidebar_served, "reused", times=2)
    _open(webview, sidebar_served)
    _pick_alice(webview)
    _pick_alice(webview)
    page = webview.page
    page.wait_for_selector("#card-code")
    assert "登录没有完成" in page.inner_text("#card-code")
    assert "登录码无效或已过期" in page.inner_text("#card-code")
    assert len(codes) == 2  # no loop: the second failure stops at the card
    html = page.content()
    for data in (HOSTILE, "&lt;img", "高价值"):
        assert data not in html
    screenshot(page, "sidebar-code", capsys)
    page.click("#again")  # 重新进入: a fresh sign-in, this time with a good code
    _pick_alice(webview)
    page.wait_for_selector("#customer")
    assert len(codes) == 3
    assert page.inner_text("#customer-name").startswith(HOSTILE)
