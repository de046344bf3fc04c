"""The simulator's ticket endpoints, its JS-SDK stand-in's routes and their control API."""

from __future__ import annotations

from typing import Any

import requests

from wecom_sim import Simulator
from wecom_sim.jssdk import js_signature


def _token(sim: Simulator) -> str:
    answer = requests.get(
        sim.api_base + "gettoken",
        params={"corpid": sim.corp_id, "corpsecret": sim.state.secret},
        timeout=5,
    ).json()
    return str(answer["access_token"])


def _get(sim: Simulator, path: str, **params: str) -> dict[str, Any]:
    answer = requests.get(sim.api_base + path, params=params, timeout=5)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def test_each_fetch_hands_out_a_new_ticket_within_the_hourly_limits(simulator: Simulator) -> None:
    token = _token(simulator)
    first = _get(simulator, "get_jsapi_ticket", access_token=token)
    second = _get(simulator, "get_jsapi_ticket", access_token=token)
    assert first["errcode"] == second["errcode"] == 0
    assert first["expires_in"] == second["expires_in"] == 7200
    assert first["ticket"] != second["ticket"]  # the first stays valid until it expires
    agent = _get(simulator, "ticket/get", access_token=token, type="agent_config")
    assert agent["errcode"] == 0
    assert agent["ticket"] not in (first["ticket"], second["ticket"])
    assert _get(simulator, "ticket/get", access_token=token, type="x")["errcode"] == 40058
    assert _get(simulator, "ticket/get", access_token=token)["errcode"] == 40063
    assert _get(simulator, "get_jsapi_ticket", access_token="nope")["errcode"] == 40014
    assert simulator.ticket_fetches == {"corp": 2, "agent": 1}

    simulator.set_ticket_limits(per_hour_corp=3)  # the corp's 400 (here 3) per kind
    assert _get(simulator, "get_jsapi_ticket", access_token=token)["errcode"] == 0
    refused = _get(simulator, "get_jsapi_ticket", access_token=token)
    assert refused["errcode"] == 45009
    assert _get(simulator, "ticket/get", access_token=token, type="agent_config")["errcode"] == 0
    simulator.advance_time(3600)  # the next hour
    assert _get(simulator, "get_jsapi_ticket", access_token=token)["errcode"] == 0
    assert simulator.ticket_fetches == {"corp": 4, "agent": 2}
    assert simulator.calls[("get_jsapi_ticket", 45009)] == 1


def test_a_ticket_verifies_until_it_expires(simulator: Simulator) -> None:
    ticket = _get(simulator, "get_jsapi_ticket", access_token=_token(simulator))["ticket"]
    url = "https://bot.example.com/sidebar/?a=1"
    signature = js_signature(ticket, "nonce", "1700000000", url)

    def valid(kind: str = "corp") -> bool:
        return simulator.verify_js_signature(
            kind, url=url + "#x", timestamp=1700000000, nonce_str="nonce", signature=signature
        )

    assert valid()
    assert not valid("agent")  # the corp's ticket does not sign for the app
    simulator.advance_time(7199)
    assert valid()
    simulator.advance_time(1)
    assert not valid()


def test_the_stand_in_routes_answer_plainly_and_allow_any_origin(simulator: Simulator) -> None:
    script = requests.get(simulator.url + "/jssdk/standin.js", timeout=5)
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert script.headers["Access-Control-Allow-Origin"] == "*"
    assert simulator.url in script.text  # it calls back to the simulator that served it
    assert '"isWeCom": true' in script.text

    invoke = simulator.url + "/jssdk/invoke"
    preflight = requests.options(invoke, timeout=5)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    for body in (b"not json", b"[1]"):
        answer = requests.post(invoke, data=body, timeout=5)
        assert answer.status_code == 200
        assert answer.json() == {"errMsg": "invoke:fail bad request"}
    unsigned = {"api": "getContext", "href": "https://h/p", "corpId": simulator.corp_id}
    answer = requests.post(invoke, json=unsigned, timeout=5).json()
    assert answer["errMsg"] == "getContext:fail no permission"

    control = simulator.url + "/control/"
    bad_entry = requests.post(control + "open_chat", json={"userid": "u", "entry": "x"}, timeout=5)
    assert bad_entry.status_code == 400
    no_customer = {"userid": "u", "entry": "single_chat_tools"}
    assert requests.post(control + "open_chat", json=no_customer, timeout=5).status_code == 400
    assert (
        requests.post(control + "ticket_limits", json={"per_hour_app": -1}, timeout=5).status_code
        == 400
    )
    chat = {"userid": "zhangsan", "external_userid": "wm1", "entry": "contact_profile"}
    assert requests.post(control + "open_chat", json=chat, timeout=5).status_code == 200
    summary = requests.get(control + "jssdk", timeout=5).json()
    assert summary["in_wecom"] is True
    assert summary["open_chat"] == chat
    assert summary["calls"] == [{"api": "getContext", "errMsg": "getContext:fail no permission"}]
    assert requests.post(control + "outside_wecom", timeout=5).status_code == 200
    assert '"isWeCom": false' in requests.get(simulator.url + "/jssdk/standin.js", timeout=5).text
