"""Encrypt callback events into WeCom's envelope and POST them to the bot."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

import requests

from bot.simulator.crypto import CallbackCrypto, nonce

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
        started = time.perf_counter()
        try:
            answer = requests.post(
                url,
                params=params,
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=DELIVERY_TIMEOUT,
            )
        except requests.RequestException as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Delivery(xml, None, elapsed, "", f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - started) * 1000
        return Delivery(xml, answer.status_code, elapsed, answer.text, None)

    def deliver(self, url: str, xml: str, *, times: int = 1) -> list[Delivery]:
        """Encrypt `xml` once and POST the identical request `times` times, as retries do."""
        params, body = self.build(xml)
        return [self.post(url, params, body, xml) for _ in range(times)]

    def verify_url(self, url: str, echo: str) -> Delivery:
        """Send the URL-verification GET and report what the bot echoed."""
        params = self.build_verification(echo)
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        sep = "&" if "?" in url else "?"
        started = time.perf_counter()
        try:
            answer = requests.get(f"{url}{sep}{query}", timeout=DELIVERY_TIMEOUT)
        except requests.RequestException as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Delivery("", None, elapsed, "", f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - started) * 1000
        return Delivery("", answer.status_code, elapsed, answer.text, None)
