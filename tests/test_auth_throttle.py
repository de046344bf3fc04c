"""Repeated failed authentication from one address gets 429; others and WeCom go on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot import auth_failures
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import AuthFailure
from handlers.app import create_app
from tests.support.corp import ADMIN_TOKEN, AES_KEY, CORP_ID, TOKEN, base_config
from wecom_sim.crypto import CallbackCrypto as SimCrypto
from wecom_sim.crypto import signature

LIMIT = 10
ATTACKER = "203.0.113.7"
GOOD = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BAD = {"Authorization": "Bearer wrong-token-0123456789"}
XML = (
    "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>{t}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[change_external_contact]]></Event>"
    "<ChangeType><![CDATA[del_follow_user]]></ChangeType><UserID><![CDATA[u1]]></UserID>"
    "<ExternalUserID><![CDATA[wm{t}]]></ExternalUserID></xml>"
)


def _app(db_url: str, **server: Any) -> Flask:
    cfg = base_config(db_url)
    # A window longer than any test run: counts, not timing, decide the answers.
    cfg["server"].update(auth_failure_limit=LIMIT, auth_failure_window_seconds=3600, **server)
    return create_app(settings_from_mapping(cfg, environ={}))


@pytest.fixture
def app(db_url: str) -> Iterator[Flask]:
    application = _app(db_url)
    yield application
    application.extensions["tagbot"].close()


def _client(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _callback(create_time: int, *, forged: bool = False) -> tuple[str, bytes]:
    timestamp = str(int(time.time()))
    encrypt = SimCrypto(TOKEN, AES_KEY, CORP_ID).encrypt(XML.format(corp=CORP_ID, t=create_time))
    sig = "0" * 40 if forged else signature(TOKEN, timestamp, "9", encrypt)
    query = f"/wecom/callback?msg_signature={sig}&timestamp={timestamp}&nonce=9"
    body = f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return query, body.encode()


def test_wrong_tokens_get_401_then_429_while_others_and_callbacks_go_on(app: Flask) -> None:
    attacker = _client(app, ATTACKER)
    statuses = []
    callbacks = []
    for i in range(500):
        resp = attacker.get("/api/channels", headers=BAD)
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            assert int(resp.headers["Retry-After"]) >= 1
            assert resp.json is not None
            assert "too many" in resp.json["message"]
        if i % 50 == 0:  # WeCom's callbacks from the same address during the attack
            query, body = _callback(1000 + i)
            callbacks.append(attacker.post(query, data=body).status_code)
    assert statuses == [401] * LIMIT + [429] * (500 - LIMIT)
    assert callbacks == [200] * 10
    assert _client(app, "198.51.100.2").get("/api/channels", headers=GOOD).status_code == 200
    # The attacked address is refused even with the right token until the window passes.
    assert attacker.get("/api/channels", headers=GOOD).status_code == 429


def test_forged_callbacks_are_throttled_apart_and_a_valid_one_never(app: Flask) -> None:
    sender = _client(app, ATTACKER)
    statuses = []
    for _ in range(3 * LIMIT):
        query, body = _callback(1, forged=True)
        statuses.append(sender.post(query, data=body).status_code)
    assert statuses == [401] * LIMIT + [429] * (2 * LIMIT)
    query, body = _callback(2)
    assert sender.post(query, data=body).status_code == 200
    # Signature failures do not count against the admin token from that address.
    assert sender.get("/api/channels", headers=GOOD).status_code == 200


def test_forwarded_for_counts_only_behind_a_trusted_proxy(db_url: str) -> None:
    plain = _app(db_url)
    proxied = _app(db_url, trusted_proxies=["127.0.0.1"])
    try:
        for application, spread in ((plain, False), (proxied, True)):
            client = _client(application, "127.0.0.1")
            answers = [
                client.get(
                    "/api/channels", headers={**BAD, "X-Forwarded-For": f"192.0.2.{i}"}
                ).status_code
                for i in range(2 * LIMIT)
            ]
            # Spoofed headers from an untrusted peer change nothing; behind the proxy
            # each forwarded client has its own count.
            expected = [401] * 2 * LIMIT if spread else [401] * LIMIT + [429] * LIMIT
            assert answers == expected
    finally:
        plain.extensions["tagbot"].close()
        proxied.extensions["tagbot"].close()


def test_trusted_proxies_must_be_addresses(db_url: str) -> None:
    from bot.errors import ConfigError

    cfg = base_config(db_url)
    cfg["server"]["trusted_proxies"] = ["not-an-ip"]
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies"):
        settings_from_mapping(cfg, environ={})


def test_failures_counted_in_one_process_are_refused_in_another(db_url: str) -> None:
    """`serve --workers 2`: a guesser alternating between the processes gets no more tries."""
    one, two = _app(db_url), _app(db_url)  # two runtimes on one database
    try:
        workers = (one, two)
        answers = [
            _client(workers[i % 2], ATTACKER).get("/api/channels", headers=BAD).status_code
            for i in range(2 * LIMIT)
        ]
        assert answers == [401] * LIMIT + [429] * LIMIT
        forged = []
        for i in range(2 * LIMIT):
            query, body = _callback(1, forged=True)
            forged.append(_client(workers[i % 2], ATTACKER).post(query, data=body).status_code)
        assert forged == [401] * LIMIT + [429] * LIMIT
        for application in workers:
            other = _client(application, "198.51.100.2")
            assert other.get("/api/channels", headers=GOOD).status_code == 200
            assert (
                _client(application, ATTACKER).get("/api/channels", headers=GOOD).status_code == 429
            )
    finally:
        one.extensions["tagbot"].close()
        two.extensions["tagbot"].close()


def test_failures_leave_the_count_and_the_table_with_the_window(db: Database) -> None:
    def wait(now: float) -> float:
        with db.read() as session:
            return auth_failures.wait(
                "admin", ATTACKER, session=session, limit=3, window=60, now=now
            )

    def record(now: float, address: str = ATTACKER) -> None:
        with db.write() as session:
            auth_failures.record("admin", address, session=session, window=60, now=now)

    for at in (0.0, 10.0, 20.0):
        assert wait(at) == 0
        record(at)
    assert wait(30.0) == 30.0  # the first failure leaves the window at 60
    assert wait(60.0) == 0  # two left in the window
    with db.read() as session:
        assert (
            auth_failures.wait("callback", ATTACKER, session=session, limit=3, window=60, now=30)
            == 0
        )
    record(75.0, "192.0.2.1")  # any failure sweeps what left the window, whoever's
    with db.read() as session:
        rows = session.execute(select(AuthFailure.address, AuthFailure.at).order_by(AuthFailure.at))
        assert [tuple(r) for r in rows] == [(ATTACKER, 20.0), ("192.0.2.1", 75.0)]


def test_the_example_config_says_the_counts_are_shared_through_the_database() -> None:
    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    lines = example.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("auth_failure_limit"))
    start = at
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    comment = " ".join(lines[start:at])
    # The counts live in the database (auth_failures), as the README says: not per process.
    assert "per process" not in comment
    assert "按进程" not in comment
    assert "Counted in the database" in comment
    assert "计数存在数据库中，所有进程共享" in comment
