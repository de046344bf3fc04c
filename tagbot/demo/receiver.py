"""The demo's stand-in for an SMS platform: receives webhook batches and checks signatures."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot.outreach.signature import verify


class WebhookReceiver:
    """An HTTP endpoint on a free local port that verifies X-Tagbot-Signature.

    Batches are kept once per X-Tagbot-Delivery (a retry of the same batch is a duplicate,
    as a real receiver should treat it); a bad signature is answered 401 and counted.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.batches: dict[str, dict[str, Any]] = {}
        self.bad_signatures = 0
        self.duplicates = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/sms/batches"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = verify(
                    receiver.secret,
                    self.headers.get("X-Tagbot-Timestamp"),
                    body,
                    self.headers.get("X-Tagbot-Signature"),
                    max_age=300,
                )
                receiver._record(ok, self.headers.get("X-Tagbot-Delivery") or "", body)
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # no access log in the demo's summary

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _record(self, ok: bool, key: str, body: bytes) -> None:
        with self._lock:
            if not ok:
                self.bad_signatures += 1
            elif key in self.batches:
                self.duplicates += 1
            else:
                self.batches[key] = json.loads(body)

    def customers(self) -> int:
        with self._lock:
            return sum(len(b.get("customers") or ()) for b in self.batches.values())

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
