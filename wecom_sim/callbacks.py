"""Encrypt callback events into WeCom's envelope and POST them to the bot."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.message import Message
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from urllib.parse import quote, urlencode, urlsplit

from wecom_sim.crypto import CallbackCrypto, nonce

DELIVERY_TIMEOUT = 5.0  # WeCom drops the connection after 5 s and retries


@dataclass(frozen=True)
class Delivery:
    """One POST of a callback to the bot and what came back."""

    xml: str
    status: int | None  # None when the bot could not be reached or timed out
    elapsed_ms: float
    body: str
    error: str | None


class CallbackSender:
    """Build signed, encrypted callback requests and deliver them."""

    def __init__(self, crypto: CallbackCrypto, corp_id: str, agent_id: int) -> None:
        self.crypto = crypto
        self.corp_id = corp_id
        self.agent_id = agent_id

    def build(self, xml: str) -> tuple[dict[str, str], bytes]:
        """Return the query params (msg_signature, timestamp, nonce) and body for `xml`."""
        encrypt = self.crypto.encrypt(xml)
        timestamp = str(int(time.time()))
        once = nonce()
        params = {
            "msg_signature": self.crypto.sign(timestamp, once, encrypt),
            "timestamp": timestamp,
            "nonce": once,
        }
        body = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        return params, body.encode()

    def build_verification(self, echo: str) -> dict[str, str]:
        """Return the query params of a URL-verification GET whose echostr hides `echo`."""
        echostr = self.crypto.encrypt(echo)
        timestamp = str(int(time.time()))
        once = nonce()
        return {
            "msg_signature": self.crypto.sign(timestamp, once, echostr),
            "timestamp": timestamp,
            "nonce": once,
            "echostr": echostr,
        }

    def post(self, url: str, params: dict[str, str], body: bytes, xml: str) -> Delivery:
        """POST one prepared callback and report the bot's answer."""
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        return self._send(url, "POST", params, body, headers, xml)

    def deliver(self, url: str, xml: str, *, times: int = 1) -> list[Delivery]:
        """Encrypt `xml` once and POST the identical request `times` times, as retries do."""
        params, body = self.build(xml)
        return [self.post(url, params, body, xml) for _ in range(times)]

    def verify_url(self, url: str, echo: str) -> Delivery:
        """Send the URL-verification GET and report what the bot echoed."""
        return self._send(url, "GET", self.build_verification(echo), None, {}, "")

    def _send(
        self,
        url: str,
        method: str,
        params: dict[str, str],
        body: bytes | None,
        headers: dict[str, str],
        xml: str,
    ) -> Delivery:
        # A fresh connection per delivery, closed after the answer: WeCom posts from a fleet
        # of servers, so the bot cannot count on reuse, and ack latency includes the connect.
        # http.client, not requests: requests cost the simulator ~1 ms of CPU per post (a
        # Session, adapters and a pool each time) in the same process and GIL as the load.
        parts = urlsplit(url)
        query = urlencode(params, quote_via=quote)
        target = (parts.path or "/") + "?" + (f"{parts.query}&{query}" if parts.query else query)
        connection_class = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        started = time.perf_counter()
        try:
            # the timeout bounds the connect and each read, as requests' timeout did
            conn = connection_class(parts.netloc, timeout=DELIVERY_TIMEOUT)
            try:
                conn.request(method, target, body=body, headers={**headers, "Connection": "close"})
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
        except (OSError, HTTPException) as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Delivery(xml, None, elapsed, "", f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - started) * 1000
        return Delivery(xml, answer.status, elapsed, _text(data, answer.headers), None)


def _text(data: bytes, headers: Message) -> str:
    try:
        return data.decode(headers.get_content_charset() or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", "replace")
