"""Who is this code: the sidebar's OAuth and the console's 扫码登录 share one step.

From the outside (Flask clients, the simulator over real HTTP): a reused or expired code
leads back through sign-in (sidebar) or to the login page (console) in Chinese; the
N+1-th failure from one address is 429 with Retry-After before WeCom is asked; a member
in neither console list is refused the console but not the sidebar; no 500 anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from handlers.app import create_app
from tests.support.console import sign_in_with_token, wecom_login_state
from tests.support.sidebar import (
    authorize_query,
    local_path,
    pick_member,
    sidebar_settings,
    sign_in,
    through_wecom,
)
from wecom_sim import Simulator

LIMIT = 3  # [server] auth_failure_limit in these tests
WINDOW = 300
ELSEWHERE = "10.9.8.7"


@pytest.fixture
def app(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    for userid in ("alice", "boss", "stranger"):
        simulator.add_staff(userid)
    settings = sidebar_settings(
        db_url, simulator, auth_failure_limit=LIMIT, auth_failure_window_seconds=WINDOW
    )
    application = create_app(settings)
    yield application
    application.extensions["tagbot"].close()


def _from(app: Flask, address: str = "127.0.0.1") -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _console_back(client: FlaskClient, code: str) -> TestResponse:
    """Start the console's WeCom login and come back with `code`; return the answer."""
    state = wecom_login_state(client)["state"]
    answer: TestResponse = client.get(
        "/admin/login/wecom/callback", query_string={"code": code, "state": state}
    )
    return answer


def _bad_codes(sim: Simulator, app: Flask) -> list[str]:
    """A spent code, an expired one and one WeCom never issued, in that order."""
    spent = sim.login_code("alice")
    assert _console_back(_from(app, "10.0.0.1"), spent).status_code == 403  # not in [console]
    expired = sim.login_code("alice")
    sim.advance_time(301)  # codes live 5 minutes
    return [spent, expired, "made-up-code"]


def _throttled(answer: TestResponse) -> None:
    assert answer.status_code == 429
    assert 1 <= int(answer.headers["Retry-After"]) <= WINDOW
    page = answer.get_data(as_text=True)
    assert "尝试次数过多" in page
    assert "认证失败次数过多" in page


# --- the sidebar ---------------------------------------------------------------------


def test_sidebar_bad_codes_go_back_through_sign_in_then_429(
    app: Flask, simulator: Simulator
) -> None:
    bad = _bad_codes(simulator, app)
    pick_member(simulator, "alice")
    client = _from(app)
    statuses = []
    location = client.get("/sidebar/").headers["Location"]
    for code in bad:
        state = authorize_query(location)["state"]
        answer = client.get("/sidebar/oauth", query_string={"code": code, "state": state})
        statuses.append(answer.status_code)
        if answer.status_code == 400:  # the card after a second failure in a row
            page = answer.get_data(as_text=True)
            assert 'data-card="code"' in page
            assert "登录码无效或已过期" in page
            assert 'href="/sidebar/"' in page  # 重新进入 starts a fresh sign-in
            answer = client.get("/sidebar/")
        assert answer.status_code == 302
        location = answer.headers["Location"]
        assert location.startswith(simulator.oauth_url + "?")
    assert statuses == [302, 400, 302]
    # The N+1-th code is refused before WeCom sees it, even a valid one.
    throttled = client.get(local_path(through_wecom(simulator, location)))
    _throttled(throttled)
    assert 'data-card="throttled"' in throttled.get_data(as_text=True)
    assert simulator.calls[("auth/getuserinfo", 40029)] == LIMIT
    assert simulator.calls[("auth/getuserinfo", 0)] == 1  # the spent code's first use
    assert client.get("/sidebar/").status_code == 302  # still no session
    # Another address signs in; the console at this address counts apart (its own scope).
    assert sign_in(_from(app, ELSEWHERE), simulator, "alice").status_code == 200
    assert sign_in_with_token(_from(app)).status_code == 303


def test_sidebar_a_reused_and_an_expired_code_still_sign_in_through_a_fresh_one(
    app: Flask, simulator: Simulator
) -> None:
    pick_member(simulator, "alice")
    for spoil in ("reuse", "expire"):
        client = _from(app)
        back = through_wecom(simulator, client.get("/sidebar/").headers["Location"])
        if spoil == "reuse":
            spent = _console_back(_from(app, "10.0.0.1"), authorize_query(back)["code"])
            assert spent.status_code == 403  # alice is in neither console list
        else:
            simulator.advance_time(301)
        again = client.get(local_path(back))
        assert again.status_code == 302
        done = client.get(local_path(through_wecom(simulator, again.headers["Location"])))
        assert done.headers["Location"] == "/sidebar/"
        assert client.get("/sidebar/").status_code == 200
    assert simulator.calls[("auth/getuserinfo", 40029)] == 2


# --- the console ---------------------------------------------------------------------


def test_console_bad_codes_go_to_the_login_page_then_429(app: Flask, simulator: Simulator) -> None:
    bad = _bad_codes(simulator, app)
    client = _from(app)
    for code in bad:
        answer = _console_back(client, code)
        assert answer.status_code == 400
        page = answer.get_data(as_text=True)
        assert 'id="wecom-error"' in page
        assert "登录码无效或已过期" in page
        assert 'id="wecom-login"' in page  # the login page, with its scan button again
    fresh = simulator.login_code("boss")
    _throttled(_console_back(client, fresh))
    # The admin token shares the console's scope: refused too, the token never checked.
    _throttled(sign_in_with_token(client))
    assert simulator.calls[("auth/getuserinfo", 40029)] == LIMIT
    assert client.get("/admin/").status_code == 302
    # Elsewhere the fresh code still signs boss in; the sidebar here is not throttled.
    assert _console_back(_from(app, ELSEWHERE), fresh).status_code == 303
    assert sign_in(_from(app), simulator, "alice").status_code == 200


def test_a_member_in_neither_console_list_is_refused_the_console_not_the_sidebar(
    app: Flask, simulator: Simulator
) -> None:
    refused = _from(app)
    answer = _console_back(refused, simulator.login_code("stranger"))
    assert answer.status_code == 403
    assert "没有运营后台的权限" in answer.get_data(as_text=True)
    assert refused.get("/admin/").status_code == 302
    assert sign_in(_from(app), simulator, "stranger").status_code == 200  # any member
    assert simulator.calls.get(("auth/getuserinfo", 40029), 0) == 0  # refusals are no failures


# --- no 500 --------------------------------------------------------------------------


def test_wecom_refusing_the_redirect_domain_is_a_502_that_names_the_trusted_domain(
    app: Flask, simulator: Simulator
) -> None:
    pick_member(simulator, "alice")
    sidebar = _from(app)
    back = through_wecom(simulator, sidebar.get("/sidebar/").headers["Location"])
    simulator.inject_fault("auth/getuserinfo", 50001)
    card = sidebar.get(local_path(back))
    assert card.status_code == 502
    assert 'data-card="wecom"' in card.get_data(as_text=True)
    assert "可信域名" in card.get_data(as_text=True)
    simulator.inject_fault("auth/getuserinfo", 50001)
    page = _console_back(_from(app), simulator.login_code("boss"))
    assert page.status_code == 502
    assert "可信域名" in page.get_data(as_text=True)


@pytest.mark.parametrize("code", ["", "x" * 513, "%00", "<script>", "码"])
def test_odd_codes_are_invalid_codes_never_500(app: Flask, simulator: Simulator, code: str) -> None:
    pick_member(simulator, "alice")
    sidebar = _from(app)
    state = authorize_query(sidebar.get("/sidebar/").headers["Location"])["state"]
    back = sidebar.get("/sidebar/oauth", query_string={"code": code, "state": state})
    assert back.status_code == 302  # a fresh sign-in, silently
    assert back.headers["Location"].startswith(simulator.oauth_url + "?")
    assert _console_back(_from(app), code).status_code == 400
