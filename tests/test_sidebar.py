"""The staff sidebar's contract with the Flask client and the simulator over real HTTP.

OAuth2 sign-in (state bound to a cookie, reused and expired codes go back through sign-in),
the shell, and the customer fragment: 200 only for a member who follows the customer,
403 otherwise, with nothing of that customer in a refused answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from bot.db import Database
from bot.db.types import utcnow
from bot.wecom.client import WeComClient
from handlers.app import create_app
from handlers.context import LoadedDimensions
from tests.support.console import HOSTILE
from tests.support.sidebar import (
    FOLLOW_UP_TEXT,
    HINTS,
    HOLDOUT_CAMPAIGN,
    authorize_query,
    local_path,
    pick_member,
    seed_sidebar,
    sidebar_settings,
    sign_in,
    through_wecom,
)
from wecom_sim import Simulator

ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
HOLDOUT_NOTICE = "该客户在对照组，请勿主动营销"


@pytest.fixture
def sidebar_app(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    for userid in ("alice", "bob", "carol"):
        simulator.add_staff(userid)
    app = create_app(sidebar_settings(db_url, simulator))
    yield app
    app.extensions["tagbot"].close()


@pytest.fixture
def seeded(sidebar_app: Flask, db: Database) -> Database:
    seed_sidebar(db, now=utcnow(), tz=sidebar_app.extensions["tagbot"].settings.tz)
    return db


def _as(app: Flask, sim: Simulator, userid: str) -> FlaskClient:
    client = app.test_client()
    sign_in(client, sim, userid)
    return client


# --- signing in ------------------------------------------------------------------------


def test_without_a_session_the_page_goes_to_wecom_oauth(
    sidebar_app: Flask, simulator: Simulator
) -> None:
    answer = sidebar_app.test_client().get("/sidebar/")
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(simulator.oauth_url + "?")
    assert location.endswith("#wechat_redirect")
    query = authorize_query(location.split("#")[0])
    assert query == {
        "appid": simulator.corp_id,
        "redirect_uri": "http://localhost/sidebar/oauth",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": query["state"],
        "agentid": str(simulator.agent_id),
    }
    assert re.fullmatch(r"[0-9a-f]{32}", query["state"])
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("tagbot_sidebar_login=")
    assert "Path=/sidebar" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_the_redirect_uri_follows_public_url(db_url: str, simulator: Simulator) -> None:
    app = create_app(sidebar_settings(db_url, simulator, public_url="https://bot.example.com/"))
    try:
        location = app.test_client().get("/sidebar/").headers["Location"]
        assert authorize_query(location)["redirect_uri"] == "https://bot.example.com/sidebar/oauth"
    finally:
        app.extensions["tagbot"].close()


def test_the_oauth_round_trip_opens_the_shell_without_customer_data(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    client = sidebar_app.test_client()
    shell = sign_in(client, simulator, "alice")
    page = shell.get_data(as_text=True)
    assert "/static/vendor/wecom-jssdk-2.4.4/wecom.global.prod.js" in page
    assert "/static/js/sidebar.js" in page
    assert f'data-corp-id="{simulator.corp_id}"' in page
    assert "<script>" not in page  # every script is a file (the CSP forbids inline ones)
    assert "script-src 'self'" in shell.headers["Content-Security-Policy"]
    assert shell.headers["Cache-Control"] == "no-store"
    for data in ("wm000", ESCAPED, "客户1", "高价值"):
        assert data not in page
    assert simulator.calls[("auth/getuserinfo", 0)] == 1
    # The session is the sidebar's: it does not open the console.
    assert client.get("/admin/").status_code == 302


def test_a_reused_code_goes_back_through_sign_in(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    pick_member(simulator, "alice")
    client = sidebar_app.test_client()
    back = through_wecom(simulator, client.get("/sidebar/").headers["Location"])
    code = authorize_query(back)["code"]
    settings = sidebar_app.extensions["tagbot"].settings
    spender = WeComClient(settings.wecom, settings.limits, db=seeded, max_pauses=0)
    try:
        assert spender.get_user_info(code).userid == "alice"  # the code is spent
    finally:
        spender.close()
    again = client.get(local_path(back))
    assert again.status_code == 302
    assert again.headers["Location"].startswith(simulator.oauth_url + "?")
    assert authorize_query(again.headers["Location"])["state"] != authorize_query(back)["state"]
    # The fresh round trip signs in.
    done = client.get(local_path(through_wecom(simulator, again.headers["Location"])))
    assert done.status_code == 302
    assert done.headers["Location"] == "/sidebar/"
    assert client.get("/sidebar/").status_code == 200


def test_an_expired_code_goes_back_through_sign_in_once_then_a_card(
    sidebar_app: Flask, simulator: Simulator
) -> None:
    pick_member(simulator, "alice")
    client = sidebar_app.test_client()
    back = through_wecom(simulator, client.get("/sidebar/").headers["Location"])
    simulator.advance_time(301)  # codes live 5 minutes
    again = client.get(local_path(back))
    assert again.status_code == 302
    assert again.headers["Location"].startswith(simulator.oauth_url + "?")
    back = through_wecom(simulator, again.headers["Location"])
    simulator.advance_time(301)
    card = client.get(local_path(back))  # a second failure in a row: no loop
    assert card.status_code == 400
    page = card.get_data(as_text=True)
    assert 'data-card="code"' in page
    assert "登录没有完成" in page
    assert 'href="/sidebar/"' in page  # 重新进入
    assert simulator.calls[("auth/getuserinfo", 40029)] == 2


def test_a_foreign_state_is_a_card_and_a_reload_after_sign_in_goes_home(
    sidebar_app: Flask, simulator: Simulator
) -> None:
    pick_member(simulator, "alice")
    client = sidebar_app.test_client()
    back = through_wecom(simulator, client.get("/sidebar/").headers["Location"])
    forged = back.replace(authorize_query(back)["state"], "0" * 32)
    card = client.get(local_path(forged))
    assert card.status_code == 400
    assert 'data-card="stale"' in card.get_data(as_text=True)
    assert simulator.calls.get(("auth/getuserinfo", 0), 0) == 0  # not exchanged
    assert client.get(local_path(back)).headers["Location"] == "/sidebar/"
    assert client.get(local_path(back)).headers["Location"] == "/sidebar/"  # reloaded


def test_two_sign_ins_at_once_both_come_back(sidebar_app: Flask, simulator: Simulator) -> None:
    pick_member(simulator, "alice")
    client = sidebar_app.test_client()
    first = through_wecom(simulator, client.get("/sidebar/").headers["Location"])
    second = through_wecom(simulator, client.get("/sidebar/").headers["Location"])
    assert authorize_query(first)["state"] != authorize_query(second)["state"]
    answer = client.get(local_path(first))  # the older one still holds
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/sidebar/"
    assert simulator.calls[("auth/getuserinfo", 0)] == 1


def test_someone_outside_the_corp_gets_a_card(sidebar_app: Flask, simulator: Simulator) -> None:
    pick_member(simulator, None, outsider=True)
    client = sidebar_app.test_client()
    back = through_wecom(simulator, client.get("/sidebar/").headers["Location"])
    card = client.get(local_path(back))
    assert card.status_code == 403
    assert 'data-card="outsider"' in card.get_data(as_text=True)
    assert client.get("/sidebar/").status_code == 302  # still no session


# --- the customer fragment -------------------------------------------------------------


def test_a_follower_sees_tiers_why_what_to_do_history_orders_and_tags(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    client = _as(sidebar_app, simulator, "alice")
    answer = client.get("/sidebar/customer/wm000")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert ESCAPED in page
    assert HOSTILE not in page
    assert '<span class="sub" id="customer-kind">@微信</span>' in page
    assert '渠道“<span class="channel-name">门店码</span>”' in page
    badge = re.search(
        r'<button type="button" class="badge" data-dimension="value"[^>]*>([^<]*)<', page
    )
    assert badge
    assert badge.group(1) == "客户价值：高价值"
    assert 'data-url="/sidebar/customer/wm000/why"' in page
    assert "为什么是" not in page  # computed when first asked for
    answer = client.get("/sidebar/customer/wm000/why")
    assert answer.status_code == 200
    why = answer.get_data(as_text=True)
    assert 'id="why-1" data-dimension="value" hidden' in why  # the badge's aria-controls
    assert "为什么是“高价值”" in why
    assert "spend_365d &gt;= 1000" in why  # the rule as configured
    assert re.search(r'data-metric="spend_365d".*?metric-value">1500', why, re.S)
    assert "按 " in why
    assert "的数据计算" in why
    todo = page[page.index('id="todo"') : page.index('id="changes"')]
    assert HINTS["高价值"] in todo
    assert "触达任务“老客关怀”" in todo
    assert FOLLOW_UP_TEXT in todo
    changes = page[page.index('id="changes"') : page.index('id="orders"')]
    assert "value：无 → 高价值" in changes
    assert "1500.00 元" in page[page.index('id="orders"') :]
    assert HOLDOUT_NOTICE not in page
    for group in ("tags-system", "tags-corp", "tags-personal"):
        assert f'id="{group}"' in page


def test_the_holdout_notice(sidebar_app: Flask, simulator: Simulator, seeded: Database) -> None:
    page = _as(sidebar_app, simulator, "alice").get("/sidebar/customer/wm001")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert HOLDOUT_NOTICE in text
    assert HOLDOUT_CAMPAIGN in text
    assert "触达任务" not in text  # the holdout customer has no task for anyone


@pytest.mark.parametrize(
    ("userid", "external_userid", "card"),
    [
        ("bob", "wm000", "not_follower"),  # alice's customer
        ("alice", "wm004", "not_follower"),  # alice lost this one
        ("carol", "wm001", "not_follower"),  # a member with no customers
        ("alice", "wm_nobody", "unknown"),
    ],
)
def test_anyone_else_is_refused_with_a_card_and_no_data(
    sidebar_app: Flask,
    simulator: Simulator,
    seeded: Database,
    userid: str,
    external_userid: str,
    card: str,
) -> None:
    client = _as(sidebar_app, simulator, userid)
    for path in (
        f"/sidebar/customer/{external_userid}",
        f"/sidebar/customer/{external_userid}/why",
    ):
        answer = client.get(path)
        assert answer.status_code == 403
        page = answer.get_data(as_text=True)
        assert f'data-card="{card}"' in page
        if card == "not_follower":
            assert "你不是该客户的跟进人" in page
        for data in (
            external_userid,
            ESCAPED,
            "客户1",
            "客户4",
            "高价值",
            "普通",
            "门店码",
            "1500",
        ):
            assert data not in page


def test_the_rules_are_parsed_once_per_process_not_per_fragment(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    """Parsing every dimension's rules costs ~80 ms: the fragment and 为什么 reuse the parse."""
    client = _as(sidebar_app, simulator, "alice")
    for path in ("/sidebar/customer/wm000", "/sidebar/customer/wm000/why") * 2:
        assert client.get(path).status_code == 200
    assert sidebar_app.extensions["tagbot"].local(LoadedDimensions).parses == 1


@pytest.mark.parametrize("path", ["/sidebar/customer/wm000", "/sidebar/customer/wm000/why"])
def test_without_a_session_the_fragment_is_refused(
    sidebar_app: Flask, seeded: Database, path: str
) -> None:
    answer = sidebar_app.test_client().get(path)
    assert answer.status_code == 403
    page = answer.get_data(as_text=True)
    assert 'data-card="session"' in page
    assert ESCAPED not in page
    assert "wm000" not in page
    assert "高价值" not in page


def test_a_forged_or_foreign_cookie_is_no_session(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    console = sidebar_app.test_client()
    console.set_cookie("tagbot_sidebar", "forged", path="/sidebar")
    assert console.get("/sidebar/customer/wm000").status_code == 403
    assert console.get("/sidebar/").status_code == 302


def test_an_overlong_id_is_a_400_card(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    answer = _as(sidebar_app, simulator, "alice").get("/sidebar/customer/" + "x" * 65)
    assert answer.status_code == 400
    assert 'data-card="error"' in answer.get_data(as_text=True)


# --- the signature endpoint's guards ---------------------------------------------------


def test_signing_needs_a_session_json_our_origin_and_our_page(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    page = "http://localhost/sidebar/"
    anonymous = sidebar_app.test_client().post("/sidebar/jssdk-sign", json={"url": page})
    assert anonymous.status_code == 403
    client = _as(sidebar_app, simulator, "alice")
    cross = client.post(
        "/sidebar/jssdk-sign", json={"url": page}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    form = client.post("/sidebar/jssdk-sign", data={"url": page})
    assert form.status_code == 415
    for bad in (
        {},
        {"url": 5},
        {"url": "https://evil.example/sidebar/"},
        {"url": page + "x" * 3000},
    ):
        answer = client.post("/sidebar/jssdk-sign", json=bad)
        assert answer.status_code == 400, bad
        assert answer.get_json()["error"]
    assert simulator.calls.get(("get_jsapi_ticket", 0), 0) == 0


def test_one_request_answers_both_signatures_from_tickets_fetched_once(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    client = _as(sidebar_app, simulator, "alice")
    answers = [
        client.post("/sidebar/jssdk-sign", json={"url": url})
        for url in ("http://localhost/sidebar/", "http://localhost/sidebar/?x=1#frag")
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "no-store"
        body = answer.get_json()
        assert body["corpId"] == simulator.corp_id
        assert body["agentId"] == simulator.agent_id
        for identity in ("corp", "agent"):
            assert set(body[identity]) == {"timestamp", "nonceStr", "signature"}
            assert re.fullmatch(r"[0-9a-f]{40}", body[identity]["signature"])
        assert body["corp"]["signature"] != body["agent"]["signature"]
    # Tickets are kept for the corp and the app, never per page URL.
    assert simulator.calls[("get_jsapi_ticket", 0)] == 1
    assert simulator.calls[("ticket/get", 0)] == 1


def test_no_ticket_within_wecoms_hourly_limit_is_a_json_503(
    sidebar_app: Flask, simulator: Simulator, seeded: Database
) -> None:
    client = _as(sidebar_app, simulator, "alice")
    simulator.set_ticket_limits(per_hour_app=0)
    answer = client.post("/sidebar/jssdk-sign", json={"url": "http://localhost/sidebar/"})
    assert answer.status_code == 503
    assert "次数已用完" in answer.get_json()["error"]
    assert 1 <= int(answer.headers["Retry-After"]) <= 300


# --- the simulator's authorize page ----------------------------------------------------


def _authorize(sim: Simulator, **overrides: str) -> requests.Response:
    query = {
        "appid": sim.corp_id,
        "redirect_uri": "http://bot.example/sidebar/oauth",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "abc123",
        "agentid": str(sim.agent_id),
        **overrides,
    }
    return requests.get(sim.oauth_url, params=query, allow_redirects=False, timeout=5)


def test_the_simulator_redirects_with_a_single_use_code_for_the_picked_member(
    simulator: Simulator, db: Database
) -> None:
    simulator.add_staff("alice", "<b>爱丽丝</b>")
    listing = _authorize(simulator)  # nobody picked: the members to click
    assert listing.status_code == 200
    assert "&lt;b&gt;爱丽丝&lt;/b&gt;" in listing.text
    pick_member(simulator, "alice")
    answer = _authorize(simulator)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://bot.example/sidebar/oauth"
    assert authorize_query(answer.headers["Location"])["state"] == "abc123"
    assert requests.get(simulator.url + "/control/oauth_member", timeout=5).json() == {
        "userid": "alice",
        "outsider": False,
    }
    unknown = requests.put(
        simulator.url + "/control/oauth_member", json={"userid": "nobody"}, timeout=5
    )
    assert unknown.status_code == 404


def test_without_a_pick_the_member_of_the_open_chat_signs_in(simulator: Simulator) -> None:
    simulator.add_staff("bob")
    simulator.open_chat("bob", "wm000")
    answer = _authorize(simulator)
    assert answer.status_code == 302
    code = authorize_query(answer.headers["Location"])["code"]
    who = requests.get(
        simulator.api_base + "auth/getuserinfo",
        params={"access_token": _token(simulator), "code": code},
        timeout=5,
    ).json()
    assert who["userid"] == "bob"


def _token(sim: Simulator) -> str:
    answer = requests.get(
        sim.api_base + "gettoken",
        params={"corpid": sim.corp_id, "corpsecret": sim.state.secret},
        timeout=5,
    ).json()
    return str(answer["access_token"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("appid", "other-corp"),
        ("response_type", "token"),
        ("scope", "snsapi_userinfo"),
        ("agentid", "999"),
        ("state", "not/alnum"),
        ("redirect_uri", "javascript:alert(1)"),
    ],
)
def test_the_simulator_refuses_bad_authorize_parameters(
    simulator: Simulator, key: str, value: str
) -> None:
    simulator.add_staff("alice")
    pick_member(simulator, "alice")
    answer = _authorize(simulator, **{key: value})
    assert answer.status_code == 400
