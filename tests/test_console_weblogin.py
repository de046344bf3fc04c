"""The simulator's web login (扫码登录) and auth/getuserinfo, through the bot's WeCom client."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bot.db import Database
from bot.errors import WeComError
from bot.wecom.client import WeComClient
from tests.support.configs import settings_for
from wecom_sim import Simulator

REDIRECT = "http://bot.example/admin/login/wecom/callback"


def _client(db: Database, sim: Simulator) -> WeComClient:
    settings = settings_for("sqlite://", sim)
    return WeComClient(settings.wecom, settings.limits, db=db, max_pauses=0)


def _login_query(sim: Simulator, **overrides: str) -> dict[str, str]:
    return {
        "login_type": "CorpApp",
        "appid": sim.corp_id,
        "agentid": str(sim.agent_id),
        "redirect_uri": REDIRECT,
        "state": "s0meState",
        "lang": "zh",
        **overrides,
    }


def test_a_member_scans_and_the_code_names_them_once(db: Database, simulator: Simulator) -> None:
    simulator.add_staff("alice", "<b>爱丽丝</b>")
    page = requests.get(simulator.web_login_url, params=_login_query(simulator), timeout=5)
    assert page.status_code == 200
    assert "&lt;b&gt;爱丽丝&lt;/b&gt;" in page.text  # names are escaped there too
    scan = requests.get(
        simulator.url + "/wwlogin/sso/scan",
        params={**_login_query(simulator), "userid": "alice"},
        allow_redirects=False,
        timeout=5,
    )
    assert scan.status_code == 302
    back = urlsplit(scan.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    query = parse_qs(back.query)
    assert query["state"] == ["s0meState"]
    client = _client(db, simulator)
    try:
        assert client.get_user_info(query["code"][0]).userid == "alice"
        with pytest.raises(WeComError) as reused:
            client.get_user_info(query["code"][0])
        assert reused.value.errcode == 40029
    finally:
        client.close()
    assert simulator.calls[("auth/getuserinfo", 0)] == 1
    assert simulator.calls[("auth/getuserinfo", 40029)] == 1


def test_an_expired_code_and_an_unknown_one_are_invalid(db: Database, simulator: Simulator) -> None:
    simulator.add_staff("alice")
    code = simulator.login_code("alice")
    simulator.advance_time(301)
    client = _client(db, simulator)
    try:
        for bad in (code, "made-up-code"):
            with pytest.raises(WeComError) as err:
                client.get_user_info(bad)
            assert err.value.errcode == 40029
    finally:
        client.close()


def test_an_outsider_gets_an_openid_and_no_userid(db: Database, simulator: Simulator) -> None:
    client = _client(db, simulator)
    try:
        who = client.get_user_info(simulator.login_code(""))
    finally:
        client.close()
    assert who.userid == ""
    assert who.openid.startswith("o")


def test_refusing_sends_back_only_the_state(simulator: Simulator) -> None:
    scan = requests.get(
        simulator.url + "/wwlogin/sso/scan",
        params={**_login_query(simulator), "refuse": "1"},
        allow_redirects=False,
        timeout=5,
    )
    assert parse_qs(urlsplit(scan.headers["Location"]).query) == {"state": ["s0meState"]}


@pytest.mark.parametrize(
    ("key", "value"),
    [("appid", "wwsomeoneelse"), ("agentid", "999"), ("login_type", "ServiceApp")],
)
def test_the_login_page_refuses_another_apps_parameters(
    simulator: Simulator, key: str, value: str
) -> None:
    page = requests.get(
        simulator.web_login_url, params=_login_query(simulator, **{key: value}), timeout=5
    )
    assert page.status_code == 400
    assert key in page.text
