"""Fire encrypted scan callbacks at `tagbot serve` and measure ack and scan → welcome latency.

    python -m bench.callback_load [--n 5000] [--rate 200] [--duplicates 0.1]
                                  [--database-url URL] [--channels 3] [--staff 6]

Starts the WeCom simulator in this process and `tagbot serve` (web + workers, gunicorn) as
a separate process on a fresh database (SQLite in a temporary directory unless a URL is
given), creates the channels, then has N customers scan at the given rate. A share of the
callbacks is delivered twice, as WeCom does when it thinks a delivery failed. Prints ack
latency, scan → welcome latency, WeCom calls per scan, and lost and duplicated counts.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import func, select

from bot import channels
from bot.catalogue import TagPath
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import InboxEvent
from bot.runtime import Runtime
from bot.simulator import Simulator
from bot.simulator.server import ScanResult

CORP_ID = "wwbenchcorp00001"
SECRET = "bench-secret-of-the-self-built-app"  # noqa: S105  (the simulator's, not a secret)
AGENT_ID = 1000002
TOKEN = "benchToken"  # noqa: S105
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ADMIN_TOKEN = "bench-admin-token-0123456789"  # noqa: S105


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(url: str, api_base: str, port: int, inbox_workers: int) -> dict[str, dict[str, object]]:
    return {
        "wecom": {
            "corp_id": CORP_ID,
            "secret": SECRET,
            "agent_id": AGENT_ID,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "api_base": api_base,
        },
        "database": {"url": url},
        "server": {"host": "127.0.0.1", "port": port, "admin_token": ADMIN_TOKEN},
        "app": {"log_level": "WARNING"},
        "jobs": {"inbox_workers": inbox_workers},
    }


def _toml(data: dict[str, dict[str, object]]) -> str:
    import json

    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def _cpu_seconds(pid: int) -> float:
    """Return CPU seconds used by a process and its children so far (Linux; else 0)."""
    total = 0.0
    try:
        tick = os.sysconf("SC_CLK_TCK")
        pids = [pid]
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
        for p in pids:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError):
        return 0.0
    return total


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def run(args: argparse.Namespace) -> int:
    """Run the load and print the figures; return the process exit code."""
    work = Path(tempfile.mkdtemp(prefix="tagbot-bench-"))
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    sim = Simulator(
        corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID, token=TOKEN, encoding_aes_key=AES_KEY
    ).start()
    staff = [f"staff{i:02d}" for i in range(args.staff)]
    for userid in staff:
        sim.add_staff(userid, f"销售{userid[-2:]}")
    port = _free_port()
    cfg = _config(url, sim.api_base, port, args.inbox_workers)
    config = work / "config.toml"
    config.write_text(_toml(cfg), encoding="utf-8")

    db = Database(url)
    upgrade_to_head(db.engine)
    rt = Runtime(settings_from_mapping(cfg, environ={}))
    states = []
    with channels.begin_with_wecom(rt.db, rt.wecom) as session:
        for i in range(args.channels):
            members = tuple(staff[j] for j in range(i, len(staff), args.channels)) or (staff[0],)
            ch = channels.create(
                channels.ChannelSpec(
                    name=f"渠道{i + 1}",
                    staff=members,
                    tags=(TagPath("来源", f"渠道{i + 1}"), TagPath("批次", "压测")),
                    welcome="你好 {name}，我是{staff}",
                ),
                session=session,
                wecom=rt.wecom,
            )
            states.append(ch.state)
    rt.close()

    tagbot = Path(sys.executable).with_name("tagbot")
    proc = subprocess.Popen(
        [str(tagbot), "--config", str(config), "serve", "--threads", str(args.threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        sim.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
        sim.reset_counters()
        return _load(args, sim, db, states, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        sim.stop()
        db.dispose()


def _load(
    args: argparse.Namespace, sim: Simulator, db: Database, states: list[str], pid: int
) -> int:
    n, rate = args.n, args.rate
    cpu_before = _cpu_seconds(pid)
    every = round(1 / args.duplicates) if args.duplicates > 0 else 0
    results: list[ScanResult | None] = [None] * n
    start = time.monotonic()
    lag = [0.0]

    def scan(i: int) -> None:
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            lag[0] = max(lag[0], -delay)
        twice = bool(every) and i % every == 0
        results[i] = sim.scan(states[i % len(states)], duplicate=twice)

    print(f"firing {n} scans at {rate:g}/s ({args.duplicates:.0%} delivered twice)...", flush=True)
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        list(pool.map(scan, range(n)))
    fired = time.monotonic() - start
    print(f"fired in {fired:.1f}s (max schedule lag {lag[0] * 1000:.0f} ms)", flush=True)

    scans = [r for r in results if r is not None]
    codes = {r.welcome_code for r in scans if r.welcome_code}
    deadline = time.monotonic() + 60

    def pending() -> int:
        with db.read() as session:
            return int(
                session.scalar(
                    select(func.count()).where(InboxEvent.status.in_(("pending", "processing")))
                )
                or 0
            )

    while time.monotonic() < deadline:
        sent = sum(1 for w in sim.welcomes if w.welcome_code in codes and w.sent_at)
        if sent == len(codes) and pending() == 0:
            break
        time.sleep(0.5)
    tagged_deadline = time.monotonic() + 60
    untagged = scans
    while time.monotonic() < tagged_deadline:
        untagged = [s for s in untagged if len(sim.relation_tags(s.userid, s.external_userid)) < 2]
        if not untagged:
            break
        time.sleep(0.5)

    cpu = _cpu_seconds(pid) - cpu_before
    acks = [d.elapsed_ms for d in sim.deliveries if d.status is not None]
    failed_acks = sum(1 for d in sim.deliveries if d.status != 200)
    welcomes = [w for w in sim.welcomes if w.welcome_code in codes]
    latency = [(w.sent_at - w.issued_at) * 1000 for w in welcomes if w.sent_at]
    calls = sim.calls
    welcome_calls = calls.get("externalcontact/send_welcome_msg", 0)
    mark_calls = calls.get("externalcontact/mark_tag", 0)
    api_calls = sum(v for k, v in calls.items() if isinstance(k, str) and k != "gettoken")
    with db.read() as session:
        stored = int(session.scalar(select(func.count()).select_from(InboxEvent)) or 0)
        dup_total = int(session.scalar(select(func.sum(InboxEvent.duplicates))) or 0)
        dead = int(session.scalar(select(func.count()).where(InboxEvent.status == "dead")) or 0)
    lost_welcomes = len(codes) - len(latency)
    expired = calls.get(("externalcontact/send_welcome_msg", 41050), 0)
    # A second welcome for one code answers 41051; a second mark_tag per scan is waste.
    duplicated = calls.get(("externalcontact/send_welcome_msg", 41051), 0) + max(
        0, mark_calls - len(scans)
    )

    print()
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, database {db.engine.url.get_backend_name()}"
    )
    print(
        f"scans {len(scans)}, callbacks posted {len(sim.deliveries)} "
        f"(re-deliveries {len(sim.deliveries) - len(scans)}), non-200 answers {failed_acks}"
    )
    print(f"ack latency          p50 {_pct(acks, 0.5):7.1f} ms   p99 {_pct(acks, 0.99):7.1f} ms")
    print(
        f"scan → welcome       p50 {_pct(latency, 0.5):7.1f} ms   "
        f"p99 {_pct(latency, 0.99):7.1f} ms   max {max(latency, default=0):7.1f} ms"
    )
    print(f"welcomes over 1 s    {sum(1 for v in latency if v > 1000)}")
    print(f"inbox rows {stored} (re-deliveries collapsed {dup_total}), dead {dead}")
    print(
        f"WeCom calls per scan {api_calls / max(len(scans), 1):.2f} "
        f"(get {calls.get('externalcontact/get', 0)}, send_welcome_msg {welcome_calls}, "
        f"mark_tag {mark_calls})"
    )
    print(f"tagbot serve CPU     {cpu * 1000 / max(len(scans), 1):.1f} ms per scan")
    print(
        f"lost: welcomes {lost_welcomes} (code expired before sending: {expired}), "
        f"untagged relations {len(untagged)}, events {len(scans) - stored}"
    )
    print(f"duplicated: {duplicated}")
    return 0 if lost_welcomes == 0 and not untagged and duplicated == 0 else 1


def main() -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="scans to fire")
    parser.add_argument("--rate", type=float, default=200.0, help="scans per second")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share delivered twice")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--staff", type=int, default=6)
    parser.add_argument("--clients", type=int, default=32, help="sending threads")
    parser.add_argument("--threads", type=int, default=8, help="web threads of tagbot serve")
    parser.add_argument("--inbox-workers", type=int, default=4, help="inbox worker threads")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    return run(parser.parse_args())


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
