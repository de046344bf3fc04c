"""The simulator's JS-SDK stand-in in headless Chromium: it checks signatures as WeCom does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.db import Database
from bot.sidebar import tickets
from bot.sidebar.signing import JsSignature, PageSignatures, js_signature, sign_page
from bot.sidebar.tickets import TicketKind
from bot.wecom.client import WeComClient
from tests.support.jssdk import VENDORED_JSSDK, use_standin
from tests.support.wecom_clients import make_client
from wecom_sim import Simulator

CUSTOMER = "wmCustomer0001"

# A static page doing what the sidebar page does with `ww`, recording every outcome.
HTML = """<!doctype html><meta charset="utf-8"><title>stand-in check</title>
<script src="%(sdk)s"></script>
<script>
const S = %(signed)s;
window.outcome = (async () => {
  const seen = {urls: []};
  ww.register({
    corpId: S.corpId, agentId: S.agentId,
    jsApiList: ["getContext", "getCurExternalContact"],
    getConfigSignature(url) { seen.urls.push(url); return S.corp; },
    getAgentConfigSignature(url) { seen.urls.push(url); return S.agent; },
    onConfigFail(e) { seen.configFail = e.errMsg; },
    onAgentConfigFail(e) { seen.agentFail = e.errMsg; },
  });
  const out = {isWeCom: ww.env.isWeCom, seen};
  try { out.entry = (await ww.getContext()).entry; } catch (e) { out.contextError = e.errMsg || String(e); }
  try { out.userId = (await ww.getCurExternalContact()).userId; }
  catch (e) { out.contactError = e.errMsg || String(e); }
  return out;
})();
</script>"""


class _PageServer(ThreadingHTTPServer):
    html = ""


class _Handler(BaseHTTPRequestHandler):
    server: _PageServer

    def do_GET(self) -> None:
        body = self.server.html.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_server() -> Iterator[_PageServer]:
    """A real server on loopback for the test page, as the bot is: Chromium refuses a page
    of no known address (a routed one) calls to the simulator on loopback."""
    server = _PageServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def page_url(page_server: _PageServer) -> str:
    return f"http://127.0.0.1:{page_server.server_address[1]}/sidebar/?from=toolbar"


@pytest.fixture
def wecom(db: Database, simulator: Simulator) -> WeComClient:
    return make_client(db, simulator)


@pytest.fixture
def page(browser: Any, simulator: Simulator) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 360, "height": 800})
    tab = context.new_page()
    use_standin(tab, simulator.url)
    yield tab
    context.close()


def outcome(
    page: Any, server: _PageServer, sim: Simulator, signed: PageSignatures, *, corp_id: str = ""
) -> Any:
    """Open the static page (with a fragment) and return what `ww` answered."""
    data = {
        "corpId": corp_id or signed.corp_id,
        "agentId": signed.agent_id,
        "corp": asdict(signed.corp),
        "agent": asdict(signed.agent),
    }
    for key in ("corp", "agent"):
        data[key]["nonceStr"] = data[key].pop("nonce_str")
    server.html = HTML % {"sdk": VENDORED_JSSDK, "signed": json.dumps(data)}
    page.goto("about:blank")  # the same URL again would only move to the fragment
    page.goto(f"http://127.0.0.1:{server.server_address[1]}/sidebar/?from=toolbar#/customer")
    return page.evaluate("window.outcome")


def resigned(signed: JsSignature, ticket: str, url: str) -> JsSignature:
    return replace(signed, signature=js_signature(ticket, signed.nonce_str, signed.timestamp, url))


def test_the_stand_in_answers_the_open_chat_for_valid_signatures_only(
    page: Any,
    page_server: _PageServer,
    page_url: str,
    db: Database,
    simulator: Simulator,
    wecom: WeComClient,
) -> None:
    simulator.open_chat("zhangsan", CUSTOMER, entry="single_chat_tools")
    good = sign_page(page_url, db=db, wecom=wecom)
    answer = outcome(page, page_server, simulator, good)
    assert answer == {
        "isWeCom": True,
        "seen": {"urls": [page_url, page_url]},  # the SDK signs the URL without its fragment
        "entry": "single_chat_tools",
        "userId": CUSTOMER,
    }

    simulator.open_chat("zhangsan", CUSTOMER, entry="contact_profile")
    assert outcome(page, page_server, simulator, good)["userId"] == CUSTOMER

    corp_ticket = tickets.peek(TicketKind.CORP, db=db, wecom=wecom)
    agent_ticket = tickets.peek(TicketKind.AGENT, db=db, wecom=wecom)
    assert corp_ticket is not None
    assert agent_ticket is not None
    tampered = replace(good.agent, signature=good.agent.signature[::-1])
    wrong = {
        "a tampered app signature": replace(good, agent=tampered),
        "the corp ticket signing for the app": replace(
            good, agent=resigned(good.agent, corp_ticket.ticket, page_url)
        ),
        "the URL with its fragment signed": replace(
            good, agent=resigned(good.agent, agent_ticket.ticket, page_url + "#/customer")
        ),
        "another app": replace(good, agent_id=good.agent_id + 1),
    }
    for case, signed in wrong.items():
        answer = outcome(page, page_server, simulator, signed)
        assert answer["contactError"] == "getCurExternalContact:fail no permission", case
        assert answer["seen"]["agentFail"] == "agentConfig:fail invalid signature", case
        assert "userId" not in answer, case
    # A bad corp signature (an old client checks both identities) and another corp.
    bad_corp = replace(good, corp=replace(good.corp, nonce_str="other"))
    answer = outcome(page, page_server, simulator, bad_corp)
    assert answer["seen"]["configFail"] == "config:fail invalid signature"
    assert answer["contactError"] == "getCurExternalContact:fail no permission"
    answer = outcome(page, page_server, simulator, good, corp_id="ww0000000000000000")
    assert answer["contextError"] == "getContext:fail no permission"
    assert "userId" not in answer

    # Once tickets are gone (expired), yesterday's signature fails too.
    simulator.expire_js_tickets()
    assert outcome(page, page_server, simulator, good)["contactError"] == (
        "getCurExternalContact:fail no permission"
    )


def test_the_stand_in_plays_other_entries_and_a_plain_browser(
    page: Any,
    page_server: _PageServer,
    page_url: str,
    db: Database,
    simulator: Simulator,
    wecom: WeComClient,
) -> None:
    good = sign_page(page_url, db=db, wecom=wecom)
    for entry in ("group_chat_tools", "normal"):
        simulator.open_chat("zhangsan", entry=entry)
        answer = outcome(page, page_server, simulator, good)
        assert answer["entry"] == entry
        assert answer["contactError"] == (
            "getCurExternalContact:fail without context of external contact"
        )
    simulator.outside_wecom()
    answer = outcome(page, page_server, simulator, good)
    assert answer == {
        "isWeCom": False,
        "seen": {"urls": []},  # no signature asked for outside the client
        "contextError": "getContext:fail not in wecom client",
        "contactError": "getCurExternalContact:fail not in wecom client",
    }
    calls = simulator.jssdk_summary()["calls"]
    assert [c["api"] for c in calls] == ["getContext", "getCurExternalContact"] * 2
