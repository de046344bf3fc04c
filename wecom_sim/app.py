"""The Flask app of the simulator: /cgi-bin/ API, /control/ API, QR images, web login, OAuth2, JS-SDK."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from flask import Flask, Response, jsonify, request

from wecom_sim.api import dispatch
from wecom_sim.control import control_blueprint
from wecom_sim.jssdk import jssdk_blueprint
from wecom_sim.oauth import oauth_blueprint
from wecom_sim.weblogin import weblogin_blueprint

if TYPE_CHECKING:
    from wecom_sim.server import Simulator

# a 1×1 PNG: enough for a demo page to show "a QR code" without a QR library
QR_PLACEHOLDER = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def create_app(simulator: Simulator) -> Flask:
    """Return the WSGI app serving one simulator."""
    app = Flask("wecom_sim")
    # WeCom answers UTF-8 text with errcode and errmsg first
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.route("/cgi-bin/<path:api_path>", methods=["GET", "POST"])
    def cgi_bin(api_path: str) -> tuple[Response, int]:
        status, answer = dispatch(
            simulator.state,
            api_path,
            request.method,
            request.args.to_dict(),
            request.get_data(),
        )
        return jsonify(answer), status

    @app.get("/qr/<config_id>.png")
    def qr_code(config_id: str) -> Response:
        with simulator.state.lock:
            state = simulator.state
            known = config_id in state.contact_ways or config_id in state.join_ways
        if not known:
            return Response("unknown config_id", status=404)
        return Response(QR_PLACEHOLDER, mimetype="image/png")

    @app.get("/")
    def index() -> Response:
        return jsonify(simulator.summary())

    app.register_blueprint(control_blueprint(simulator))
    app.register_blueprint(weblogin_blueprint(simulator))
    app.register_blueprint(oauth_blueprint(simulator))
    app.register_blueprint(jssdk_blueprint(simulator))
    return app
