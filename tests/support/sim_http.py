"""Talk to the simulator as a bot would: a tiny API client and a callback receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from defusedxml import ElementTree
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.support.corp import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN
from wecom_sim import CallbackCrypto, Simulator


class Api:
    """A tiny WeCom client over requests, holding one access token."""

    def __init__(self, sim: Simulator) -> None:
        self.base = sim.api_base
        self.token = self.fetch_token()

    def fetch_token(self) -> str:
        answer = requests.get(
            self.base + "gettoken", params={"corpid": CORP_ID, "corpsecret": SECRET}, timeout=5
        ).json()
        assert answer["errcode"] == 0, answer
        token: str = answer["access_token"]
        return token

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        params.setdefault("access_token", self.token)
        answer: dict[str, Any] = requests.get(self.base + path, params=params, timeout=5).json()
        return answer

    def post(self, path: str, body: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
        params.setdefault("access_token", self.token)
        answer: dict[str, Any] = requests.post(
            self.base + path, params=params, json=body or {}, timeout=5
        ).json()
        return answer


class Receiver:
    """A stand-in for the bot's /wecom/callback: records requests, answers a set status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}/wecom/callback"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @Request.application  # type: ignore[misc]
    def app(self, request: Request) -> Response:
        self.requests.append((request.method, request.args.to_dict(), request.get_data()))
        if request.method == "GET":
            args = request.args
            self.crypto.verify(
                args["msg_signature"], args["timestamp"], args["nonce"], args["echostr"]
            )
            return Response(self.crypto.decrypt(args["echostr"]))
        return Response("", status=self.status)

    def events(self) -> list[dict[str, str]]:
        """Verify, decrypt and parse every POST received."""
        parsed = []
        for method, args, body in self.requests:
            if method != "POST":
                continue
            envelope = ElementTree.fromstring(body)
            encrypt = envelope.findtext("Encrypt") or ""
            self.crypto.verify(args["msg_signature"], args["timestamp"], args["nonce"], encrypt)
            assert envelope.findtext("ToUserName") == CORP_ID
            assert envelope.findtext("AgentID") == str(AGENT_ID)
            root = ElementTree.fromstring(self.crypto.decrypt(encrypt))
            parsed.append({child.tag: child.text or "" for child in root})
        return parsed


@contextmanager
def receiving(sim: Simulator) -> Iterator[Receiver]:
    """Run a Receiver wired as the simulator's callback_url, for the duration."""
    rec = Receiver()
    rec.thread.start()
    sim.callback_url = rec.url
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()
