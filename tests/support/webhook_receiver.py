"""A webhook receiver over real HTTP: verifies signatures, records requests, misbehaves on cue.

It checks X-Tagbot-Signature with its own HMAC computation (not the bot's signature
module), so a test fails when the bot signs the wrong bytes. It dedupes on
X-Tagbot-Delivery as a real receiver must: `accepted` holds each key's first body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None  # None: the receiver has no secret to check with
    answered: int  # the status it answered (or tried to, after a stall)

    @property
    def delivery(self) -> str:
        return self.headers.get("X-Tagbot-Delivery", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Script:
    """What to answer: `status` for the first `times` requests (None: for ever), else 200."""

    status: int = 200
    times: int | None = 0
    stall_seconds: float = 0.0  # before answering the scripted ones
    answer: bytes = b"ok"
    used: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class WebhookReceiver:
    """An HTTP server in a thread that plays the operator's SMS or CRM endpoint."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self.accepted: dict[str, bytes] = {}
        self.script = Script()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet under pytest
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/tagbot"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # ends any stall at once
        self.server.shutdown()
        self.server.server_close()

    def fail(
        self,
        status: int,
        times: int | None,
        *,
        stall_seconds: float = 0.0,
        answer: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer `status` (after a stall) to the next `times` requests; None: to all."""
        with self._lock:
            self.script = Script(status, times, stall_seconds, answer or b"nope", 0, headers or {})

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def _expected(self, timestamp: str, body: bytes) -> str:
        assert self.secret is not None
        digest = hmac.new(self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
        return "sha256=" + digest.hexdigest()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        headers = dict(handler.headers.items())
        ok: bool | None = None
        if self.secret is not None:
            given = headers.get("X-Tagbot-Signature", "")
            ok = hmac.compare_digest(
                given, self._expected(headers.get("X-Tagbot-Timestamp", ""), body)
            )
        with self._lock:
            script = self.script
            scripted = script.times is None or script.used < script.times
            if scripted:
                script.used += 1
            status = script.status if scripted else 200
            if not ok and ok is not None:
                status = 401
            stall = script.stall_seconds if scripted else 0.0
            record = Received(headers, body, ok, status)
            self.received.append(record)
        if stall:  # meanwhile the bot's read timeout fires; the work is done all the same
            self._stop.wait(stall)
        if 200 <= status < 300:
            with self._lock:
                self.accepted.setdefault(record.delivery, body)
        answer = script.answer if scripted else b"ok"
        try:
            handler.send_response(status)
            for name, value in (script.headers if scripted else {}).items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
        except OSError:  # the bot timed out and closed the connection
            pass
