"""JS-SDK tickets and signatures: the official vector, the shared store, WeCom's hourly limits."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.config import settings_from_mapping
from bot.db import Database
from bot.errors import ValidationError, WeComError
from bot.sidebar import tickets
from bot.sidebar.selfcheck import check_tickets
from bot.sidebar.signing import JsSignature, PageSignatures, js_signature, page_url, sign_page
from bot.sidebar.tickets import TicketKind, TicketUnavailableError
from bot.wecom.client import WeComClient, counting_calls
from handlers.app import create_app
from tests.support.configs import toml_text
from tests.support.console import console_config
from tests.support.corp import base_config
from tests.support.jssdk_workers import sign_on_command
from tests.support.processes import free_port, serve, wait_healthy
from tests.support.sidebar import pick_member
from tests.support.wecom_clients import make_client
from wecom_sim import Simulator
from wecom_sim import jssdk as sim_jssdk

PAGE = "https://bot.example.com/sidebar/?from=toolbar"
# wecom-api.md section 7.6: WeCom's own worked example (doc 90506/96909).
TICKET = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
NONCE, TIMESTAMP, URL = "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value"
VECTOR_SIGNATURE = "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def verifies(sim: Simulator, signed: PageSignatures, url: str = PAGE) -> dict[str, bool]:
    """Ask the simulator, as WeCom would, whether each identity's signature holds."""
    return {
        kind: sim.verify_js_signature(
            kind,
            url=url,
            timestamp=sig.timestamp,
            nonce_str=sig.nonce_str,
            signature=sig.signature,
            corp_id=signed.corp_id,
            agent_id=signed.agent_id,
        )
        for kind, sig in (("corp", signed.corp), ("agent", signed.agent))
    }


@pytest.fixture
def wecom(db: Database, simulator: Simulator) -> WeComClient:
    return make_client(db, simulator)


def test_the_signature_reproduces_wecoms_worked_example() -> None:
    assert js_signature(TICKET, NONCE, TIMESTAMP, URL) == VECTOR_SIGNATURE
    # The simulator's own copy of the formula, which checks ours in the stand-in.
    assert sim_jssdk.js_signature(TICKET, NONCE, str(TIMESTAMP), URL) == VECTOR_SIGNATURE
    # The WeChat 公众号 copy of the example signs the URL without its query: not ours.
    other = js_signature(TICKET, NONCE, TIMESTAMP, "http://mp.weixin.qq.com")
    assert other == "f4d90daf4b3bca3078ab155816175ba34c443a7b"


def test_the_signed_url_is_the_page_without_its_fragment() -> None:
    assert page_url(PAGE + "#/customer") == PAGE
    assert page_url("http://h/p?q=a%20b&x=1") == "http://h/p?q=a%20b&x=1"  # no re-encoding
    for bad in ("", "#x", "/sidebar/", "javascript:alert(1)", "ftp://h/", "http://h/a b"):
        with pytest.raises(ValidationError):
            page_url(bad)
    with pytest.raises(ValidationError):
        page_url("https://h/" + "a" * 3000)


def test_both_signatures_verify_in_the_simulator_and_tickets_are_fetched_once(
    db: Database, simulator: Simulator, wecom: WeComClient
) -> None:
    first = sign_page(PAGE + "#frag", db=db, wecom=wecom)
    assert (first.corp_id, first.agent_id) == (simulator.corp_id, simulator.agent_id)
    assert verifies(simulator, first) == {"corp": True, "agent": True}
    assert first.corp.nonce_str != first.agent.nonce_str
    for i in range(5):  # other pages, other processes' worth of opens: no new ticket
        assert verifies(simulator, sign_page(f"{PAGE}&n={i}", db=db, wecom=wecom), f"{PAGE}&n={i}")
    assert simulator.ticket_fetches == {"corp": 1, "agent": 1}
    assert simulator.calls["get_jsapi_ticket"] == 1
    assert simulator.calls["ticket/get"] == 1

    # What WeCom refuses: a tampered signature, another page, the other identity's
    # signature, another corp or app, a signature over the URL with its fragment.
    bad = PageSignatures(first.corp_id, first.agent_id, first.agent, first.corp)
    assert verifies(simulator, bad) == {"corp": False, "agent": False}
    assert verifies(simulator, first, PAGE + "&other=1") == {"corp": False, "agent": False}
    tampered = first.agent.signature[:-1] + ("0" if first.agent.signature[-1] != "0" else "1")
    assert not simulator.verify_js_signature(
        "agent",
        url=PAGE,
        timestamp=first.agent.timestamp,
        nonce_str=first.agent.nonce_str,
        signature=tampered,
    )
    assert not simulator.verify_js_signature(
        "agent",
        url=PAGE,
        timestamp=first.agent.timestamp,
        nonce_str=first.agent.nonce_str,
        signature=first.agent.signature,
        agent_id=simulator.agent_id + 1,
    )
    corp_ticket = tickets.peek(TicketKind.CORP, db=db, wecom=wecom)
    assert corp_ticket is not None
    with_fragment = js_signature(corp_ticket.ticket, "n0nce", 1, PAGE + "#frag")
    assert not simulator.verify_js_signature(
        "corp", url=PAGE + "#frag", timestamp=1, nonce_str="n0nce", signature=with_fragment
    )
    assert simulator.verify_js_signature(
        "corp",
        url=PAGE + "#frag",
        timestamp=1,
        nonce_str="n0nce",
        signature=js_signature(corp_ticket.ticket, "n0nce", 1, PAGE),
    )


def test_tickets_are_refreshed_ten_minutes_before_they_expire(
    db: Database, simulator: Simulator, wecom: WeComClient
) -> None:
    start = datetime.now(UTC)
    sign_page(PAGE, db=db, wecom=wecom, now=start)
    stored = tickets.peek(TicketKind.AGENT, db=db, wecom=wecom)
    assert stored is not None
    assert stored.expires_at == start + timedelta(seconds=7200)

    simulator.advance_time(7200 - 601)
    sign_page(PAGE, db=db, wecom=wecom, now=start + timedelta(seconds=7200 - 601))
    assert simulator.ticket_fetches == {"corp": 1, "agent": 1}  # 10 min 1 s left: kept

    simulator.advance_time(2)  # 9 min 59 s left: refreshed while the old one still works
    later = start + timedelta(seconds=7200 - 599)
    signed = sign_page(PAGE, db=db, wecom=wecom, now=later)
    assert simulator.ticket_fetches == {"corp": 2, "agent": 2}
    assert verifies(simulator, signed) == {"corp": True, "agent": True}
    renewed = tickets.peek(TicketKind.AGENT, db=db, wecom=wecom)
    assert renewed is not None
    assert renewed.ticket != stored.ticket
    assert renewed.expires_at == later + timedelta(seconds=7200)
    # The next opens use the new tickets without asking WeCom again.
    with counting_calls() as tally:
        sign_page(PAGE, db=db, wecom=wecom, now=later + timedelta(minutes=30))
    assert tally == {}


def test_the_hourly_limit_is_a_clear_error_and_no_process_keeps_asking(
    db: Database, simulator: Simulator, wecom: WeComClient
) -> None:
    simulator.set_ticket_limits(per_hour_app=1)
    start = datetime.now(UTC)
    sign_page(PAGE, db=db, wecom=wecom, now=start)

    # Both tickets expired (say the bot was down); the app's hour is used up.
    simulator.advance_time(7300)
    simulator.set_ticket_limits(per_hour_app=0)
    expired = start + timedelta(seconds=7300)
    with pytest.raises(TicketUnavailableError) as caught:
        sign_page(PAGE, db=db, wecom=wecom, now=expired)
    assert caught.value.errcode == 45009
    assert caught.value.retry_after == expired + tickets.REFUSED_BACKOFF
    assert "次数已用完" in caught.value.message_zh
    assert simulator.calls[("get_jsapi_ticket", 45009)] == 1

    # Within the back-off no page open asks WeCom again; the check reports it.
    with counting_calls() as tally:
        for minutes in (0, 1, 4):
            with pytest.raises(TicketUnavailableError):
                sign_page(PAGE, db=db, wecom=wecom, now=expired + timedelta(minutes=minutes))
    assert tally == {}
    report = check_tickets(db=db, wecom=wecom, now=expired + timedelta(minutes=4))
    assert not report.ok
    assert "次数已用完" in report.summary

    # After it (the limit lifted meanwhile) the next open fetches again and signs. (The
    # check at minute 4 asked for the app's ticket, which nobody had yet: refused till 9.)
    simulator.set_ticket_limits(per_hour_app=100)
    after = expired + timedelta(minutes=4) + tickets.REFUSED_BACKOFF + timedelta(seconds=1)
    simulator.advance_time((after - expired).total_seconds())
    assert verifies(simulator, sign_page(PAGE, db=db, wecom=wecom, now=after)) == {
        "corp": True,
        "agent": True,
    }
    report = check_tickets(db=db, wecom=wecom, now=after)
    assert report.ok, report.summary


def test_a_stored_ticket_outlives_a_refused_refresh(
    db: Database, simulator: Simulator, wecom: WeComClient
) -> None:
    start = datetime.now(UTC)
    first = sign_page(PAGE, db=db, wecom=wecom, now=start)
    simulator.set_ticket_limits(per_hour_app=0)
    simulator.advance_time(7200 - 300)
    later = start + timedelta(seconds=7200 - 300)  # inside the margin, 5 minutes left
    signed = sign_page(PAGE, db=db, wecom=wecom, now=later)
    assert verifies(simulator, signed) == {"corp": True, "agent": True}
    assert simulator.calls[("get_jsapi_ticket", 45009)] == 1
    assert first.corp.signature != signed.corp.signature  # a new nonce and timestamp


def test_the_simulator_counts_each_ticket_kind_against_its_own_hourly_limit(
    db: Database, simulator: Simulator, wecom: WeComClient
) -> None:
    simulator.set_ticket_limits(per_hour_app=2)
    for _ in range(2):
        wecom.get_jsapi_ticket()
        wecom.get_agent_ticket()
    with counting_calls() as tally, pytest.raises(WeComError) as caught:
        wecom.get_agent_ticket()
    assert caught.value.errcode == 45009
    assert tally == {"ticket/get": 1}  # raised at once: no pause, no retry
    simulator.advance_time(3600)
    assert wecom.get_agent_ticket().expires_in == 7200
    assert simulator.ticket_fetches == {"corp": 2, "agent": 3}


def test_self_check_reports_both_tickets(
    db: Database, simulator: Simulator, wecom: WeComClient
) -> None:
    report = check_tickets(db=db, wecom=wecom)
    assert report.ok, report.summary
    assert [line.name for line in report.lines] == ["企业 jsapi_ticket", "应用 jsapi_ticket"]
    assert all("剩余" in line.detail for line in report.lines)
    simulator.inject_fault("ticket/get", 48002)  # the app may not call it
    simulator.expire_js_tickets()
    report = check_tickets(db=db, wecom=wecom, now=datetime.now(UTC) + timedelta(hours=3))
    assert not report.ok
    assert [line.ok for line in report.lines] == [True, False]
    assert "48002" in report.lines[1].detail
    assert "无权" in report.lines[1].detail


@pytest.mark.slow
def test_two_processes_fetch_each_ticket_once_per_expiry(
    db_url: str, db: Database, simulator: Simulator
) -> None:
    """Two processes sign pages every 5 simulated minutes for 3 hours, at the same moments.

    Separate interpreters (spawned), each with its own Database and WeComClient, share only
    the database, as two `tagbot serve` processes do; `tagbot serve` itself would add the
    page's HTTP route (the sidebar's), which is not what is under test here.
    """
    spawn = multiprocessing.get_context("spawn")
    pipes: list[Any] = []
    procs = []
    for _ in range(2):
        ours, theirs = spawn.Pipe()
        proc = spawn.Process(target=sign_on_command, args=(db_url, simulator.api_base, theirs))
        proc.start()
        pipes.append(ours)
        procs.append(proc)
    start = datetime.now(UTC).timestamp()
    step = 300
    try:
        for k in range(3 * 3600 // step + 1):
            if k:
                simulator.advance_time(step)
            urls = [f"{PAGE}&p={k}-{i}" for i in range(3)]
            for pipe in pipes:
                pipe.send((start + k * step, urls))
            for pipe in pipes:
                assert pipe.poll(60), "a signing process did not answer"
                answers = pipe.recv()
                assert not isinstance(answers, str), answers
                for url, corp, agent in answers:
                    signed = PageSignatures(simulator.corp_id, simulator.agent_id, corp, agent)
                    assert verifies(simulator, signed, url) == {"corp": True, "agent": True}
    finally:
        for pipe in pipes:
            pipe.send(None)
        for proc in procs:
            proc.join(30)
    assert [proc.exitcode for proc in procs] == [0, 0]
    # Fetched at 0:00 and refreshed at 1:50 (10 minutes before 2:00): twice each in 3 hours.
    assert simulator.ticket_fetches == {"corp": 2, "agent": 2}
    assert simulator.calls["get_jsapi_ticket"] == 2
    assert simulator.calls["ticket/get"] == 2


def test_an_exhausted_hourly_limit_is_a_503_with_retry_after_not_a_500(
    db_url: str, simulator: Simulator
) -> None:
    settings = settings_from_mapping(base_config(db_url, api_base=simulator.api_base), environ={})
    app = create_app(settings)
    rt = app.extensions["tagbot"]

    def sign() -> dict[str, Any]:  # what the sidebar's signing endpoint does with the store
        signed = sign_page(PAGE, db=rt.db, wecom=rt.wecom)
        return {"corpId": signed.corp_id, "signature": signed.agent.signature}

    app.add_url_rule("/test/sign", view_func=sign)
    try:
        simulator.set_ticket_limits(per_hour_app=0)
        answer = app.test_client().get("/test/sign")
        assert answer.status_code == 503
        body = answer.get_json()
        assert body["errcode"] == 45009
        assert "次数已用完" in body["message"]
        assert 1 <= int(answer.headers["Retry-After"]) <= 300
    finally:
        rt.close()


def _sidebar_session(base: str, sim: Simulator) -> requests.Session:
    """Open the sidebar of the bot at `base` as the picked member: one OAuth round trip."""
    browser = requests.Session()
    authorize = browser.get(base + "/sidebar/", allow_redirects=False, timeout=10)
    back = requests.get(
        authorize.headers["Location"].split("#")[0], allow_redirects=False, timeout=10
    )
    signed_in = browser.get(back.headers["Location"], allow_redirects=False, timeout=10)
    assert signed_in.headers["Location"] == "/sidebar/", signed_in.text
    return browser


@pytest.mark.slow
def test_two_serve_processes_opening_sidebars_at_once_fetch_each_ticket_once(
    tmp_path: Path, db_url: str, db: Database, simulator: Simulator
) -> None:
    """Two `tagbot serve` processes on one database, four sidebars each asking at once."""
    simulator.add_staff("alice")
    pick_member(simulator, "alice")
    procs: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    try:
        for i in range(2):
            port = free_port()
            cfg = console_config(db_url, simulator, dimensions=False)
            cfg["server"]["port"] = port
            cfg["app"] = {"log_level": "WARNING"}
            config = tmp_path / f"config{i}.toml"
            config.write_text(toml_text(cfg), encoding="utf-8")
            procs.append(serve(config))
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            wait_healthy(int(base.rsplit(":", 1)[1]))
        sidebars = [(base, _sidebar_session(base, simulator)) for base in bases for _ in range(4)]
        at_once = threading.Barrier(len(sidebars))

        def sign(sidebar: tuple[str, requests.Session]) -> requests.Response:
            base, browser = sidebar
            at_once.wait(timeout=30)
            return browser.post(
                base + "/sidebar/jssdk-sign",
                json={"url": base + "/sidebar/#wechat_redirect"},
                headers={"Origin": base},
                timeout=60,
            )

        with ThreadPoolExecutor(len(sidebars)) as pool:
            answers = list(pool.map(sign, sidebars))
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert [a.status_code for a in answers] == [200] * len(sidebars)
    for (base, _), answer in zip(sidebars, answers, strict=True):
        body = answer.json()
        signed = PageSignatures(
            body["corpId"],
            body["agentId"],
            JsSignature(**_snake(body["corp"])),
            JsSignature(**_snake(body["agent"])),
        )
        assert verifies(simulator, signed, base + "/sidebar/") == {"corp": True, "agent": True}
    assert simulator.ticket_fetches == {"corp": 1, "agent": 1}


def _snake(signed: dict[str, Any]) -> dict[str, Any]:
    return {
        "timestamp": signed["timestamp"],
        "nonce_str": signed["nonceStr"],
        "signature": signed["signature"],
    }
