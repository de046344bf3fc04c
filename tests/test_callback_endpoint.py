"""GET/POST /wecom/callback over real HTTP: official vectors, refusals that store nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from prometheus_client import REGISTRY

from bot.config import settings_from_mapping
from bot.db.models import InboxEvent
from tests.support.corp import CORP_ID, VECTORS, base_config
from tests.support.live import LiveServer
from wecom_sim import Simulator
from wecom_sim.crypto import CallbackCrypto as SimCrypto
from wecom_sim.crypto import signature

ADD_XML = (
    "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>{t}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[change_external_contact]]></Event>"
    "<ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID>"
    "<ExternalUserID><![CDATA[{ext}]]></ExternalUserID><State><![CDATA[nochannel]]></State></xml>"
)


@pytest.fixture(scope="module")
def vec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


@pytest.fixture
def official(db_url: str, vec: dict[str, Any]) -> Iterator[LiveServer]:
    """The bot configured with the official example's token, key and corp id (no workers)."""
    cfg = base_config(db_url)
    c = vec["config"]
    cfg["wecom"].update(token=c["token"], encoding_aes_key=c["encoding_aes_key"])
    cfg["wecom"]["corp_id"] = c["corp_id"]
    # The documentation's example was signed years ago; accept its timestamp.
    cfg["wecom"]["callback_max_age_seconds"] = int(time.time())
    server = LiveServer(settings_from_mapping(cfg, environ={}), jobs=False).start()
    yield server
    server.stop()


@pytest.fixture
def bot(db_url: str) -> Iterator[LiveServer]:
    """The bot with the test corp's credentials and no workers, so events stay stored."""
    server = LiveServer(settings_from_mapping(base_config(db_url), environ={}), jobs=False).start()
    yield server
    server.stop()


def stored(server: LiveServer) -> list[InboxEvent]:
    with server.runtime.db.read() as session:
        return list(session.query(InboxEvent).order_by(InboxEvent.id))


def test_official_url_verification_answers_plain_echostr(
    official: LiveServer, vec: dict[str, Any]
) -> None:
    g = vec["url_verify_get"]
    query = (
        f"msg_signature={g['msg_signature']}&timestamp={g['timestamp']}&nonce={g['nonce']}"
        f"&echostr={g['echostr_urlencoded']}"
    )
    resp = requests.get(f"{official.url}/wecom/callback?{query}", timeout=5)
    assert resp.status_code == 200
    assert resp.text == g["expected_echostr_plaintext"]
    assert resp.headers["Content-Type"].startswith("text/plain")


def test_official_post_is_stored_and_acknowledged(
    official: LiveServer, vec: dict[str, Any]
) -> None:
    p = vec["post"]
    params = {k: p[k] for k in ("msg_signature", "timestamp", "nonce")}
    resp = requests.post(
        f"{official.url}/wecom/callback", params=params, data=p["body"].encode(), timeout=5
    )
    assert resp.status_code == 200
    assert resp.content == b""
    events = stored(official)
    assert len(events) == 1
    assert events[0].payload == p["expected_plaintext"]
    assert events[0].event == "text"  # not an event we handle: stored and acknowledged


def test_tampered_signature_gets_4xx_and_nothing_stored(
    official: LiveServer, vec: dict[str, Any]
) -> None:
    p = vec["post"]
    bad = p["msg_signature"][:-1] + ("0" if p["msg_signature"][-1] != "0" else "1")
    params = {"msg_signature": bad, "timestamp": p["timestamp"], "nonce": p["nonce"]}
    resp = requests.post(
        f"{official.url}/wecom/callback", params=params, data=p["body"].encode(), timeout=5
    )
    assert 400 <= resp.status_code < 500
    g = vec["url_verify_get"]
    query = urlencode(
        {"msg_signature": bad, "timestamp": g["timestamp"], "nonce": g["nonce"], "echostr": "x"}
    )
    assert (
        400 <= requests.get(f"{official.url}/wecom/callback?{query}", timeout=5).status_code < 500
    )
    assert stored(official) == []


def _post(server: LiveServer, params: dict[str, str], body: bytes) -> requests.Response:
    return requests.post(f"{server.url}/wecom/callback", params=params, data=body, timeout=5)


def _signed(xml: str, corp: str = CORP_ID) -> tuple[dict[str, str], bytes]:
    """Encrypt like WeCom does, for the test corp's token and key, with any receive id."""
    from tests.support.corp import AES_KEY, TOKEN

    crypto = SimCrypto(TOKEN, AES_KEY, corp)
    encrypt = crypto.encrypt(xml)
    params = {"timestamp": str(int(time.time())), "nonce": "12345"}
    params["msg_signature"] = signature(TOKEN, params["timestamp"], params["nonce"], encrypt)
    body = f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return params, body.encode()


def test_wrong_corp_id_is_refused(bot: LiveServer) -> None:
    params, body = _signed(ADD_XML.format(corp="wwother", t=1, ext="wmA"), corp="wwothercorp")
    assert 400 <= _post(bot, params, body).status_code < 500
    assert stored(bot) == []


@pytest.mark.parametrize(
    "envelope",
    [
        # external entity (XXE)
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<xml><Encrypt>&e;</Encrypt></xml>",
        # billion laughs
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        "<xml><Encrypt>&lol3;</Encrypt></xml>",
        "<xml><Encrypt>not closed",
        "plain garbage",
        "<xml><NoEncrypt>x</NoEncrypt></xml>",
    ],
)
def test_hostile_or_malformed_xml_gets_400(bot: LiveServer, envelope: str) -> None:
    params = {"msg_signature": "0" * 40, "timestamp": "1", "nonce": "1"}
    resp = _post(bot, params, envelope.encode())
    assert resp.status_code == 400
    assert stored(bot) == []


def test_hostile_xml_inside_a_valid_envelope_gets_400(bot: LiveServer) -> None:
    inner = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Event>&e;</Event></xml>'
    params, body = _signed(inner)
    assert _post(bot, params, body).status_code == 400
    assert stored(bot) == []


def test_oversized_body_gets_413_and_missing_params_400(bot: LiveServer) -> None:
    limit = bot.runtime.settings.server.max_callback_bytes
    params = {"msg_signature": "0" * 40, "timestamp": "1", "nonce": "1"}
    assert _post(bot, params, b"<xml>" + b"a" * limit + b"</xml>").status_code == 413
    good_params, body = _signed(ADD_XML.format(corp=CORP_ID, t=1, ext="wmA"))
    assert _post(bot, {"timestamp": "1"}, body).status_code == 400
    assert _post(bot, good_params, b"").status_code == 400
    assert stored(bot) == []


def test_redelivery_is_one_event_and_same_second_events_are_two(bot: LiveServer) -> None:
    params, body = _signed(ADD_XML.format(corp=CORP_ID, t=1700000000, ext="wmA"))
    assert _post(bot, params, body).status_code == 200
    assert _post(bot, params, body).status_code == 200
    # Another customer in the same second: a different event.
    params2, body2 = _signed(ADD_XML.format(corp=CORP_ID, t=1700000000, ext="wmB"))
    assert _post(bot, params2, body2).status_code == 200
    events = stored(bot)
    assert len(events) == 2
    assert [e.duplicates for e in events] == [1, 0]
    assert {e.status for e in events} == {"pending"}


def test_unknown_events_are_stored_and_acknowledged(bot: LiveServer, simulator: Simulator) -> None:
    xml = simulator.event_xml("change_external_chat", "create", {"ChatId": "wrCHAT"})
    params, body = simulator.build_callback(xml)
    assert _post(bot, params, body).status_code == 200
    assert [e.event for e in stored(bot)] == ["change_external_chat"]


def test_simulator_url_verification(bot: LiveServer, simulator: Simulator) -> None:
    simulator.callback_url = bot.url + "/wecom/callback"
    answer = simulator.verify_callback_url("1234567890123456789")
    assert answer.status == 200
    assert answer.body == "1234567890123456789"


def test_a_valid_callback_is_answered_before_flask_and_a_refusal_by_the_view_once(
    bot: LiveServer,
) -> None:
    # handlers/callback_wsgi.py answers the well-formed POST itself; the view gets the rest.
    calls: list[str] = []
    view = bot.app.view_functions["callback.receive_event"]

    def counted() -> Any:
        calls.append("view")
        return view()

    bot.app.view_functions["callback.receive_event"] = counted
    params, body = _signed(ADD_XML.format(corp=CORP_ID, t=1700000001, ext="wmFast"))
    resp = _post(bot, params, body)
    assert (resp.status_code, resp.content) == (200, b"")
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert calls == []
    assert [e.status for e in stored(bot)] == ["pending"]

    def refused() -> float:
        value = REGISTRY.get_sample_value("tagbot_callback_rejected_total", {"reason": "signature"})
        return value or 0.0

    before = refused()
    resp = _post(bot, {**params, "msg_signature": "0" * 40}, body)
    assert resp.status_code == 401
    assert resp.json()["error"] == "bad callback"
    assert calls == ["view"]  # the body replayed to the view, refused and counted there once
    assert refused() == before + 1
    assert len(stored(bot)) == 1
