"""Validly signed callbacks outside the timestamp window are refused (POST and GET)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import requests
from prometheus_client import REGISTRY

from bot.config import settings_from_mapping
from bot.db.models import InboxEvent
from tests.support.corp import AES_KEY, CORP_ID, TOKEN, base_config
from tests.support.live import LiveServer
from wecom_sim.crypto import CallbackCrypto as SimCrypto
from wecom_sim.crypto import signature

DAY = 86_400
XML = (
    "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>{t}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[change_external_contact]]></Event>"
    "<ChangeType><![CDATA[del_follow_user]]></ChangeType><UserID><![CDATA[u1]]></UserID>"
    "<ExternalUserID><![CDATA[wmA]]></ExternalUserID></xml>"
)


@pytest.fixture
def bot(db_url: str) -> Iterator[LiveServer]:
    server = LiveServer(settings_from_mapping(base_config(db_url), environ={}), jobs=False).start()
    yield server
    server.stop()


def _stale() -> float:
    return REGISTRY.get_sample_value("tagbot_callback_rejected_total", {"reason": "stale"}) or 0.0


def _stored(server: LiveServer) -> int:
    with server.runtime.db.read() as session:
        return session.query(InboxEvent).count()


def _post(server: LiveServer, timestamp: str, *, create_time: int = 1) -> requests.Response:
    crypto = SimCrypto(TOKEN, AES_KEY, CORP_ID)
    encrypt = crypto.encrypt(XML.format(corp=CORP_ID, t=create_time))
    params = {"timestamp": timestamp, "nonce": "42"}
    params["msg_signature"] = signature(TOKEN, timestamp, "42", encrypt)
    body = f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return requests.post(f"{server.url}/wecom/callback", params=params, data=body, timeout=5)


def _verify(server: LiveServer, timestamp: str) -> requests.Response:
    echostr = SimCrypto(TOKEN, AES_KEY, CORP_ID).encrypt("echo-123")
    query = {
        "msg_signature": signature(TOKEN, timestamp, "7", echostr),
        "timestamp": timestamp,
        "nonce": "7",
        "echostr": echostr,
    }
    return requests.get(f"{server.url}/wecom/callback?{urlencode(query)}", timeout=5)


@pytest.mark.parametrize("offset", [-400 * DAY, -3601, 10 * DAY, 301])
def test_signed_callback_outside_the_window_is_refused(bot: LiveServer, offset: int) -> None:
    before = _stale()
    resp = _post(bot, str(int(time.time()) + offset))
    assert resp.status_code == 400
    assert "window" in resp.json()["message"]
    assert _stored(bot) == 0
    assert _stale() == before + 1


@pytest.mark.parametrize("offset", [-3500, 0, 250])
def test_signed_callback_inside_the_window_is_stored(bot: LiveServer, offset: int) -> None:
    assert _post(bot, str(int(time.time()) + offset)).status_code == 200
    assert _stored(bot) == 1


@pytest.mark.parametrize("timestamp", ["１７００００００００", "1_700_000_000", "-5", "1e9"])
def test_timestamp_that_is_not_a_unix_time_is_a_400(bot: LiveServer, timestamp: str) -> None:
    resp = _post(bot, timestamp)
    assert resp.status_code == 400
    assert _stored(bot) == 0


def test_forged_signature_with_an_old_timestamp_stays_a_401(bot: LiveServer) -> None:
    before = _stale()
    old = str(int(time.time()) - 400 * DAY)
    params = {"timestamp": old, "nonce": "1", "msg_signature": "0" * 40}
    body = b"<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>"
    resp = requests.post(f"{bot.url}/wecom/callback", params=params, data=body, timeout=5)
    assert resp.status_code == 401
    assert _stale() == before


def test_url_verification_uses_the_same_window(bot: LiveServer) -> None:
    before = _stale()
    assert _verify(bot, str(int(time.time()) - 400 * DAY)).status_code == 400
    assert _verify(bot, str(int(time.time()) + 10 * DAY)).status_code == 400
    assert _stale() == before + 2
    fresh = _verify(bot, str(int(time.time())))
    assert fresh.status_code == 200
    assert fresh.text == "echo-123"


def test_window_is_configurable(db_url: str) -> None:
    cfg = base_config(db_url)
    cfg["wecom"].update(callback_max_age_seconds=60, callback_max_ahead_seconds=0)
    server = LiveServer(settings_from_mapping(cfg, environ={}), jobs=False).start()
    try:
        assert _post(server, str(int(time.time()) - 600)).status_code == 400
        assert _post(server, str(int(time.time()) + 120)).status_code == 400
        assert _post(server, str(int(time.time()))).status_code == 200
    finally:
        server.stop()
