"""Turn errors into JSON 4xx answers; a 500 carries no traceback to the client."""

from __future__ import annotations

import logging
import math

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from bot.db.types import utcnow
from bot.errors import CallbackError, NotFoundError, TagbotError, ValidationError, WeComError
from bot.sidebar.tickets import TicketUnavailableError

log = logging.getLogger(__name__)

# The body of a 500: nothing about the failure reaches the client (handlers/callback_wsgi too).
INTERNAL = {"error": "internal", "message": "internal error; see the server log"}


def init_app(app: Flask) -> None:
    """Register the error handlers on the app."""

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> ResponseReturnValue:
        response = jsonify(error=exc.name, message=exc.description)
        for name, value in exc.get_headers():  # Retry-After, Allow...; the body is JSON
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, exc.code or 500

    @app.errorhandler(CallbackError)
    def _callback(exc: CallbackError) -> ResponseReturnValue:
        return jsonify(error="bad callback", message=exc.reason), exc.status

    @app.errorhandler(NotFoundError)
    def _not_found(exc: NotFoundError) -> ResponseReturnValue:
        return jsonify(error="not found", message=str(exc)), 404

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError) -> ResponseReturnValue:
        return jsonify(error="invalid", message=str(exc)), 422

    @app.errorhandler(WeComError)
    def _wecom(exc: WeComError) -> ResponseReturnValue:
        return jsonify(error="wecom", errcode=exc.errcode, message=str(exc)), 502

    @app.errorhandler(TicketUnavailableError)
    def _no_ticket(exc: TicketUnavailableError) -> ResponseReturnValue:
        # WeCom gives no JS-SDK ticket (its hourly limit): the page cannot be signed for now.
        response = jsonify(error="jsapi_ticket", errcode=exc.errcode, message=exc.message_zh)
        if exc.retry_after is not None:
            wait = math.ceil((exc.retry_after - utcnow()).total_seconds())
            response.headers["Retry-After"] = str(max(1, wait))
        return response, 503

    @app.errorhandler(TagbotError)
    def _tagbot(exc: TagbotError) -> ResponseReturnValue:
        return jsonify(error="error", message=str(exc)), 400

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        log.exception("unhandled error")
        return jsonify(INTERNAL), 500
