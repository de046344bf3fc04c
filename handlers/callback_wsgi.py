"""WeCom's callback POST answered before Flask: the ack on every scan, at a fraction of the CPU.

Flask's request handling around the ack view (request and response objects, routing,
contexts, hooks) cost about as much CPU as decrypting, parsing and storing the event.
This WSGI layer sits in front of the app (`app.wsgi_app`) and answers one request
itself: a POST to /wecom/callback with a declared body within the limit whose
parameters are all there, whose signature verifies, whose timestamp lies in the window
and whose XML parses — the same checks, store and wake-ups as the view
(`handlers.callback.verified_event`, `accept`). Anything else goes to Flask unchanged
(its body replayed when read), where the view refuses it with its 4xx, counts it and
throttles it exactly as before; the URL verification GET, too.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from flask import Flask

from bot.errors import CallbackError
from bot.runtime import Runtime
from handlers import errors
from handlers.callback import accept, verified_event

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

PATH = "/wecom/callback"
_PARAMS = ("msg_signature", "timestamp", "nonce")
_OK = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0")]
_INTERNAL = json.dumps(errors.INTERNAL).encode()


class FastCallback:
    """Answer a well-formed callback POST without Flask; pass every other request on."""

    def __init__(self, app: WSGIApplication, rt: Runtime) -> None:
        self.app = app
        self.rt = rt

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        length = environ.get("CONTENT_LENGTH", "")
        limit = self.rt.settings.server.max_callback_bytes
        # No declared length (chunked), an empty or oversized body: the view's refusals.
        if not (length.isascii() and length.isdigit() and 0 < int(length) <= limit):
            return self.app(environ, start_response)
        body: bytes = environ["wsgi.input"].read(int(length))
        query: dict[str, str] = {}
        for name, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            query.setdefault(name, value)  # the first value, as request.args.get gives
        try:
            if not all(query.get(name) for name in _PARAMS):
                raise CallbackError("a query parameter is missing", status=400)
            event, xml = verified_event(
                self.rt, query["msg_signature"], query["timestamp"], query["nonce"], body
            )
        except Exception:  # CallbackError, or anything unforeseen in a hostile body
            # The view refuses it with its own answer, metric and throttle (or its 500).
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            return self.app(environ, start_response)
        try:
            accept(self.rt, event, xml)
        except Exception:
            log.exception("unhandled error")  # as Flask's handler: no traceback to WeCom
            start_response(
                "500 INTERNAL SERVER ERROR",
                [("Content-Type", "application/json"), ("Content-Length", str(len(_INTERNAL)))],
            )
            return [_INTERNAL]
        start_response("200 OK", list(_OK))
        return [b""]


def install(app: Flask, rt: Runtime) -> None:
    """Put the fast path in front of a Flask app's WSGI callable."""
    app.wsgi_app = FastCallback(app.wsgi_app, rt)  # type: ignore[method-assign]
