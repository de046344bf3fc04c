"""Hostile bodies on /api get a precise 4xx, never a 500, and a 5xx never follows a commit."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot.config import Settings
from bot.db.models import Order
from bot.runtime import Runtime
from tests.support.corp import ADMIN_TOKEN
from tests.support.live import LiveServer

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
ORDER = (
    '{"order_id": "S1", "external_userid": "wm_1", "amount": "10.00",'
    ' "paid_at": "2026-05-01T10:00:00+08:00", "status": "paid"'
)


def _orders(app: Flask) -> list[str]:
    rt: Runtime = app.extensions["tagbot"]
    with rt.db.read() as session:
        return list(session.scalars(select(Order.order_id)))


def test_json_nested_100000_deep_is_a_400(client: FlaskClient) -> None:
    body = "[" * 100_000 + "]" * 100_000
    resp = client.post("/api/orders", data=body, headers=AUTH)
    assert resp.status_code == 400
    assert resp.json is not None
    assert "嵌套" in resp.json["message"]


@pytest.mark.parametrize("body", [b"[{]", b"\xff\xfe[]", b""])
def test_body_that_is_not_json_is_a_400(client: FlaskClient, body: bytes) -> None:
    resp = client.post("/api/orders", data=body, headers=AUTH)
    assert resp.status_code == 400
    assert resp.json is not None
    assert "JSON" in resp.json["message"]


def test_unknown_field_with_a_lone_surrogate_is_answered_and_stored(
    client: FlaskClient, app: Flask
) -> None:
    # JSON may spell a lone surrogate as an escape; Python decodes it to str as such.
    body = "[" + ORDER + ', "bad\\ud800name": 1}]'
    resp = client.post("/api/orders", data=body, headers=AUTH)
    assert resp.status_code == 200
    assert resp.json is not None
    assert resp.json["inserted"] == 1
    assert resp.json["warnings"] == ["未知字段已忽略 / unknown fields ignored: bad\\ud800name"]
    assert _orders(app) == ["S1"]


def test_lone_surrogate_in_values_and_profile_names_is_rejected_per_row(
    client: FlaskClient, app: Flask
) -> None:
    body = '[{"order_id": "S\\udc00", "external_userid": "wm_1"}]'
    resp = client.post("/api/orders", data=body, headers=AUTH)
    assert resp.status_code == 200
    assert resp.json is not None
    assert resp.json["rejected"][0]["field"] == "order_id"
    body = '[{"external_userid": "wm_1", "\\ud800": "x"}]'
    resp = client.post("/api/profiles", data=body, headers=AUTH)
    assert resp.status_code == 200
    assert resp.json is not None
    assert resp.json["rejected"][0]["field"] == "\\ud800"
    assert _orders(app) == []


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings, jobs=False).start()
    yield server
    server.stop()


def _chunked_post(url: str, path: str, total: int) -> bytes:
    """POST `total` bytes with Transfer-Encoding: chunked; return what the server answered."""
    parts = urlsplit(url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    chunk = b"[" + b" " * ((1 << 20) - 1)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode())
        sent = 0
        try:
            while sent < total:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent
        answer = b""
        try:
            while b"\r\n" not in answer and (data := sock.recv(65536)):
                answer += data
        except ConnectionResetError:
            pass
    return answer


def test_50_mb_chunked_body_is_a_413(live: LiveServer) -> None:
    answer = _chunked_post(live.url, "/api/orders", 50 * 1024 * 1024)
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"


@pytest.mark.parametrize("path", ["/api/channels", "/api/inbox/replay"])
def test_deep_json_on_other_api_routes_is_a_400(client: FlaskClient, path: str) -> None:
    resp = client.post(path, data="[" * 100_000 + "]" * 100_000, headers=AUTH)
    assert resp.status_code == 400
    assert resp.json is not None
    assert "嵌套" in resp.json["message"]


def test_replay_with_an_empty_body_still_replays_dead_letters(client: FlaskClient) -> None:
    resp = client.post("/api/inbox/replay", headers={"Authorization": AUTH["Authorization"]})
    assert resp.status_code == 200
    assert resp.json == {"replayed": 0}
