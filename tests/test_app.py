"""The web app answers health checks and metrics, and refuses unauthenticated API calls."""

from __future__ import annotations

import requests
from flask.testing import FlaskClient

from bot.config import Settings
from tests.support.live import LiveServer


def test_healthz_checks_the_database(client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok", "database": "ok"}


def test_healthz_reports_an_unreachable_database() -> None:
    from bot.config import settings_from_mapping
    from handlers.app import create_app
    from tests.support.corp import base_config

    broken = settings_from_mapping(base_config("sqlite:////nonexistent-dir/x.db"), environ={})
    resp = create_app(broken).test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.json["database"] == "unreachable"


def test_metrics_are_prometheus_text(client: FlaskClient) -> None:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert b"tagbot_up 1.0" in resp.data


def test_unknown_route_is_json_404(client: FlaskClient) -> None:
    resp = client.get("/nope")
    assert resp.status_code == 404
    assert resp.json["error"] == "Not Found"


def test_live_server_over_http(settings: Settings) -> None:
    server = LiveServer(settings, jobs=True).start()
    try:
        resp = requests.get(f"{server.url}/healthz", timeout=5)
        assert resp.status_code == 200
    finally:
        server.stop()
