"""Kill -9 `tagbot serve` under scan load, restart it, and measure how fast it takes over.

    python -m bench.takeover [--rate 50] [--seconds 10] [--kill-after 4]
                             [--restart-after 1] [--database-url URL]

Starts the WeCom simulator in this process and `tagbot serve` as a separate process,
fires scans at `rate`, delivering each callback as WeCom does (re-sent when it is not
acknowledged, a few times), kills the whole process group with SIGKILL, starts it again
`restart-after` seconds later, and waits until every stored event is done. Prints the
takeover delay (from the restarted process answering to the processing of each event the
dead process had stored but not finished: p50, p99, max), lost welcomes among the codes
still alive at restart, and second welcome attempts (41051).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
from defusedxml.ElementTree import fromstring as parse_xml
from sqlalchemy import select

from bench.callback_load import (
    ADMIN_TOKEN,
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    SECRET,
    TOKEN,
    _free_port,
    _pct,
    _toml,
)
from bot.channels import live_codes
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import InboxEvent
from bot.runtime import Runtime
from bot.tags.catalogue import TagPath
from bot.wecom_limits import WELCOME_CODE_SECONDS
from wecom_sim import Simulator

TRIES = 4  # WeCom's "总共重试三次": the first delivery and three more
RETRY_PAUSE = 2.0  # undocumented by WeCom; long enough to span a restart


@dataclass
class KillRun:
    """What one kill-and-restart run showed."""

    scans: int = 0
    acked: int = 0  # scans whose callback was acknowledged at some try
    alive_at_restart: int = 0  # acknowledged scans whose welcome code outlived the restart
    lost_welcomes: list[str] = field(default_factory=list)  # codes alive at restart, unwelcomed
    stored: int = 0  # scans whose event the bot stored (acknowledged or not: a kill can
    # fall between the store and the answer reaching WeCom)
    welcomed_acked: int = 0  # acknowledged scans that were welcomed
    welcomed_unstored: int = 0  # welcomes for scans the bot never stored: must not happen
    welcomes_sent: int = 0
    already_sent: int = 0  # second attempts WeCom refused with 41051
    unfinished: int = 0  # events not done (or ignored) at the end
    orphans: int = 0  # events the dead process stored but had not finished
    takeover_ms: list[float] = field(default_factory=list)  # restart → processed, per orphan
    down_seconds: float = 0.0  # kill → restarted process answering


def deliver_until_acked(sim: Simulator, url: str, xml: str) -> bool:
    """POST a callback as WeCom does: again after a failure, TRIES times in all."""
    params, body = sim.sender.build(xml)
    for attempt in range(TRIES):
        if sim.sender.post(url, params, body, xml).status == 200:
            return True
        if attempt + 1 < TRIES:
            time.sleep(RETRY_PAUSE)
    return False


def serve(config: Path) -> subprocess.Popen[bytes]:
    """Start `tagbot serve` in its own process group (so a kill reaches its workers)."""
    tagbot = Path(sys.executable).with_name("tagbot")
    return subprocess.Popen(
        [str(tagbot), "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_healthy(port: int, timeout: float = 60.0) -> None:
    """Wait until the server on `port` answers /healthz."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"tagbot serve on port {port} did not answer within {timeout:.0f} s")


def _add_xml(sim: Simulator, state: str) -> tuple[str, str | None, str]:
    scan = sim.scan(state, deliver=False)
    xml = sim.event_xml(
        "change_external_contact",
        "add_external_contact",
        {
            "UserID": scan.userid,
            "ExternalUserID": scan.external_userid,
            "State": state,
            "WelcomeCode": scan.welcome_code or "",
        },
    )
    return scan.external_userid, scan.welcome_code, xml


def _welcome_code(payload: str) -> str:
    return parse_xml(payload).findtext("WelcomeCode") or ""


def _unfinished(db: Database) -> int:
    with db.read() as session:
        return len(
            session.scalars(
                select(InboxEvent.id).where(InboxEvent.status.in_(("pending", "processing")))
            ).all()
        )


def kill_run(
    sim: Simulator,
    config: Path,
    port: int,
    state: str,
    db_url: str,
    *,
    rate: float = 50.0,
    seconds: float = 10.0,
    kill_after: float = 4.0,
    restart_after: float = 1.0,
    settle_timeout: float = 90.0,
) -> KillRun:
    """Run scans at `rate`, kill -9 the server mid-run, restart it; report what happened."""
    url = f"http://127.0.0.1:{port}/wecom/callback"
    sim.callback_url = url
    n = int(rate * seconds)
    codes: list[str | None] = [None] * n
    acked = [False] * n
    proc = serve(config)
    db = Database(db_url)
    run = KillRun(scans=n)
    try:
        wait_healthy(port)
        start = time.monotonic()

        def one(i: int) -> None:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            _, codes[i], xml = _add_xml(sim, state)
            acked[i] = deliver_until_acked(sim, url, xml)

        # Enough threads for every delivery waiting out the restart between tries.
        with ThreadPoolExecutor(max_workers=int(rate * TRIES * RETRY_PAUSE) + 32) as pool:
            futures = [pool.submit(one, i) for i in range(n)]
            time.sleep(max(0.0, start + kill_after - time.monotonic()))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            killed_at = time.time()
            time.sleep(restart_after)
            proc = serve(config)
            wait_healthy(port)
            restarted_at = time.time()
            run.down_seconds = restarted_at - killed_at
            for f in futures:
                f.result()
        deadline = time.monotonic() + settle_timeout
        while time.monotonic() < deadline and _unfinished(db):
            time.sleep(0.2)
        with db.read() as session:
            events = session.execute(
                select(
                    InboxEvent.status,
                    InboxEvent.received_at,
                    InboxEvent.processed_at,
                    InboxEvent.payload,
                )
            ).all()
        stored_codes = {_welcome_code(e.payload) for e in events} - {""}
        run.stored = len(stored_codes)
        run.unfinished = sum(1 for e in events if e.status not in ("done", "ignored"))
        for e in events:
            received = e.received_at.timestamp()
            processed = e.processed_at.timestamp() if e.processed_at else None
            if received < killed_at and (processed is None or processed > killed_at):
                run.orphans += 1
                if processed is not None:
                    run.takeover_ms.append(max(0.0, processed - restarted_at) * 1000)
        welcomes = {w.welcome_code: w for w in sim.welcomes}
        run.acked = sum(acked)
        for code, ok in zip(codes, acked, strict=True):
            if not code or not ok:
                continue
            w = welcomes[code]
            if w.sent_at is not None:
                run.welcomed_acked += 1
            if w.issued_at + WELCOME_CODE_SECONDS > restarted_at:
                run.alive_at_restart += 1
                if w.sent_at is None:
                    run.lost_welcomes.append(code)
        sent = {c for c, w in welcomes.items() if w.sent_at is not None}
        run.welcomes_sent = len(sent)
        run.welcomed_unstored = len(sent - stored_codes)
        run.already_sent = sim.calls.get(("externalcontact/send_welcome_msg", 41051), 0)
        return run
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        db.dispose()


def report(run: KillRun) -> str:
    """Return the run's figures as printed lines."""
    t = run.takeover_ms or [0.0]
    return "\n".join(
        [
            f"scans {run.scans}, stored {run.stored}, acknowledged {run.acked}, down {run.down_seconds:.1f} s "
            f"(kill -9 → restarted process answering)",
            f"events the dead process left unfinished: {run.orphans}",
            f"takeover delay (restart → processed)  min {min(t):7.0f} ms   "
            f"p50 {_pct(t, 0.5):7.0f} ms   "
            f"p99 {_pct(t, 0.99):7.0f} ms   max {max(t, default=0):7.0f} ms",
            f"welcome codes alive at restart {run.alive_at_restart}, lost "
            f"{len(run.lost_welcomes)}; welcomes sent {run.welcomes_sent} "
            f"({run.welcomed_acked} acknowledged, {run.welcomed_unstored} never stored), "
            f"second attempts refused (41051) {run.already_sent}",
            f"events unfinished at the end: {run.unfinished}",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="scans per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the load")
    parser.add_argument("--kill-after", type=float, default=4.0, help="seconds into the load")
    parser.add_argument("--restart-after", type=float, default=1.0, help="seconds after kill")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tagbot-takeover-"))
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    sim = Simulator(
        corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID, token=TOKEN, encoding_aes_key=AES_KEY
    ).start()
    try:
        sim.add_staff("staff01", "销售01")
        port = _free_port()
        cfg: dict[str, dict[str, object]] = {
            "wecom": {
                "corp_id": CORP_ID,
                "secret": SECRET,
                "agent_id": AGENT_ID,
                "token": TOKEN,
                "encoding_aes_key": AES_KEY,
                "api_base": sim.api_base,
            },
            "database": {"url": url},
            "server": {"host": "127.0.0.1", "port": port, "admin_token": ADMIN_TOKEN},
            "app": {"log_level": "WARNING"},
        }
        config = work / "config.toml"
        config.write_text(_toml(cfg), encoding="utf-8")
        db = Database(url)
        upgrade_to_head(db.engine)
        db.dispose()
        rt = Runtime(settings_from_mapping(cfg, environ={}))
        state = live_codes.create(
            live_codes.ChannelSpec(
                name="渠道", staff=("staff01",), tags=(TagPath("来源", "渠道"),), welcome="你好"
            ),
            db=rt.db,
            wecom=rt.wecom,
            source="bench",
        ).state
        rt.close()
        print(
            f"{args.rate:g} scans/s for {args.seconds:g} s, kill -9 at {args.kill_after:g} s, "
            f"restart {args.restart_after:g} s later, database {db.engine.url.get_backend_name()}",
            flush=True,
        )
        run = kill_run(
            sim,
            config,
            port,
            state,
            url,
            rate=args.rate,
            seconds=args.seconds,
            kill_after=args.kill_after,
            restart_after=args.restart_after,
        )
        print(report(run))
        return 0 if not run.lost_welcomes and not run.unfinished else 1
    finally:
        sim.stop()


if __name__ == "__main__":
    raise SystemExit(main())
