"""Fire encrypted scan callbacks at `tagbot serve` and measure ack and scan → welcome latency.

    python -m bench.callback_load [--n 5000 | --duration S] [--rate 200] [--duplicates 0.1]
                                  [--database-url URL] [--channels 3] [--staff 6]
                                  [--workers N] [--sender process|thread] [--pin]
                                  [--idle SECONDS]

Starts the WeCom simulator in this process and `tagbot serve` (web + workers, gunicorn) as
a separate process on a fresh database (SQLite in a temporary directory unless a URL is
given), creates the channels, then has N customers scan at the given rate. A share of the
callbacks is delivered twice, as WeCom does when it thinks a delivery failed. Prints ack
latency, scan → welcome latency, WeCom calls per scan, lost and duplicated counts, and the
CPU per scan of the bot (the serve process and all its children, user and system) next to
the harness's own (this process and the sender process), since both share the machine.

The callbacks are posted from a sender process by default, so that ack latency is timed
where nothing else holds the GIL; `--sender thread` posts from this process, as the
simulator does in tests. `--pin` puts the bot on CPU 0 and the harness on CPU 1.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

import requests
from sqlalchemy import func, select

from bot.channels import live_codes
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import InboxEvent
from bot.runtime import Runtime
from bot.tags.catalogue import TagPath
from wecom_sim import CallbackCrypto, Delivery, Simulator
from wecom_sim.callbacks import CallbackSender
from wecom_sim.server import ScanResult

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


class Cpu(NamedTuple):
    """CPU seconds in user and kernel mode."""

    user: float
    system: float

    def __sub__(self, other: object) -> Cpu:
        assert isinstance(other, Cpu)
        return Cpu(self.user - other.user, self.system - other.system)

    def per_scan(self, scans: int) -> str:
        """Describe as milliseconds per scan, with the user/sys split."""
        n = max(scans, 1)
        return (
            f"{(self.user + self.system) * 1000 / n:5.2f} ms per scan "
            f"(user {self.user * 1000 / n:.2f}, sys {self.system * 1000 / n:.2f})"
        )


def _tree(pid: int) -> list[int]:
    """Return `pid` and all its descendants (Linux)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _process_cpu(pid: int) -> Cpu:
    """Return the CPU a process tree has used so far, with its reaped children (else 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile; its parent's cutime/cstime have it once reaped
        user += (int(fields[11]) + int(fields[13])) / tick
        system += (int(fields[12]) + int(fields[14])) / tick
    return Cpu(user, system)


def _pin_threads(cpus: set[int]) -> None:
    """Pin every thread of this process; threads and processes started later inherit it."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), cpus)


class ProcessSender(CallbackSender):
    """The simulator's callback sender, posting from a child process.

    The simulator answers the bot's API calls in this process; had the callbacks been
    posted here too, each ack would be timed by a thread that must win the GIL back from
    the simulator before it can stop the clock. The child only encrypts and posts.
    """

    def __init__(self, clients: int) -> None:
        super().__init__(CallbackCrypto(TOKEN, AES_KEY, CORP_ID), CORP_ID, AGENT_ID)
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_sender_main, args=(child, clients), daemon=True)
        self.process.start()
        child.close()
        self._conn.recv()  # ready: its imports are done, so they cost no CPU during the load
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._waiting: dict[int, Future[list[Delivery]]] = {}
        threading.Thread(target=self._answers, name="sender-answers", daemon=True).start()

    def deliver(self, url: str, xml: str, *, times: int = 1) -> list[Delivery]:
        """Have the child encrypt `xml` once and POST it `times` times; wait for the answers."""
        future: Future[list[Delivery]] = Future()
        with self._lock:
            job = next(self._ids)
            self._waiting[job] = future
            self._conn.send((job, url, xml, times))
        return future.result()

    def close(self) -> None:
        """Stop the child."""
        with self._lock:
            self._conn.send(None)
        self.process.join(timeout=10)

    def _answers(self) -> None:
        while True:
            try:
                job, deliveries = self._conn.recv()
            except (EOFError, OSError):
                return
            with self._lock:
                future = self._waiting.pop(job)
            future.set_result(deliveries)


def _sender_main(conn: Connection, clients: int) -> None:
    sender = CallbackSender(CallbackCrypto(TOKEN, AES_KEY, CORP_ID), CORP_ID, AGENT_ID)
    lock = threading.Lock()
    conn.send("ready")

    def deliver(job: int, url: str, xml: str, times: int) -> None:
        deliveries = sender.deliver(url, xml, times=times)
        with lock:
            conn.send((job, deliveries))

    with ThreadPoolExecutor(max_workers=clients) as pool:
        while (message := conn.recv()) is not None:
            pool.submit(deliver, *message)


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
    for i in range(args.channels):
        members = tuple(staff[j] for j in range(i, len(staff), args.channels)) or (staff[0],)
        ch = live_codes.create(
            live_codes.ChannelSpec(
                name=f"渠道{i + 1}",
                staff=members,
                tags=(TagPath("来源", f"渠道{i + 1}"), TagPath("批次", "压测")),
                welcome="你好 {name}，我是{staff}",
            ),
            db=rt.db,
            wecom=rt.wecom,
        )
        states.append(ch.state)
    rt.close()

    tagbot = Path(sys.executable).with_name("tagbot")
    command = [str(tagbot), "--config", str(config), "serve", "--threads", str(args.threads)]
    if args.workers != 1:
        command += ["--workers", str(args.workers)]
    if args.pin:
        os.sched_setaffinity(0, {0})  # this thread forks the bot, which inherits CPU 0
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    sender: ProcessSender | None = None
    try:
        if args.pin:
            _pin_threads({1})  # the simulator's threads, and the sender process started below
        if args.sender == "process":
            sim.sender = sender = ProcessSender(args.clients)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # still starting (busy box)
                time.sleep(0.2)
        sim.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
        if args.idle > 0:
            _idle(proc.pid, args.idle)
        sim.reset_counters()
        return _load(args, sim, db, states, proc.pid, sender, f"http://127.0.0.1:{port}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        if sender is not None:
            sender.close()
        sim.stop()
        db.dispose()


def _idle(pid: int, seconds: float) -> None:
    """Print the CPU the bot uses while nothing happens, as a share of one core."""
    time.sleep(2)  # let start-up work (first beats, the scheduler's lease) settle
    before = _process_cpu(pid)
    time.sleep(seconds)
    used = _process_cpu(pid) - before
    print(
        f"idle CPU over {seconds:g} s: {(used.user + used.system) * 100 / seconds:.2f} % of a core "
        f"(user {used.user * 100 / seconds:.2f}, sys {used.system * 100 / seconds:.2f})",
        flush=True,
    )


def _missed(bot_url: str) -> str:
    """Return tagbot_welcomes_missed_total and /healthz's note, as the bot reports them."""
    try:
        text = requests.get(f"{bot_url}/metrics", timeout=10).text
        note = requests.get(f"{bot_url}/healthz", timeout=10).json().get("welcomes_missed_note")
    except (requests.RequestException, ValueError) as exc:
        return f"unknown ({type(exc).__name__})"
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tagbot_welcomes_missed_total")
    )
    return f"{total:.0f} (one process's /metrics); /healthz: {note or 'nothing missed'}"


def _job_runs(bot_url: str) -> dict[str, float]:
    """Return tagbot_job_runs_total by job (one process's /metrics), or {} when unreadable."""
    try:
        text = requests.get(f"{bot_url}/metrics", timeout=10).text
    except requests.RequestException:
        return {}
    runs: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tagbot_job_runs_total{"):
            job = line.split('job="', 1)[1].split('"', 1)[0]
            runs[job] = runs.get(job, 0.0) + float(line.rsplit(" ", 1)[1])
    return runs


def _harness_cpu(sender: ProcessSender | None) -> tuple[Cpu, Cpu]:
    """Return the CPU of this process (simulator and load) and of the sender process."""
    times = os.times()
    own = Cpu(times.user, times.system)
    if sender is None or sender.process.pid is None:
        return own, Cpu(0.0, 0.0)
    return own, _process_cpu(sender.process.pid)


def _load(
    args: argparse.Namespace,
    sim: Simulator,
    db: Database,
    states: list[str],
    pid: int,
    sender: ProcessSender | None,
    bot_url: str,
) -> int:
    if args.duration:
        args.n = round(args.rate * args.duration)
    n, rate = args.n, args.rate
    bot_before, harness_before = _process_cpu(pid), _harness_cpu(sender)
    runs_before = _job_runs(bot_url)
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
    # A backlog (overload) takes a while to drain: allow it a minute plus 20 ms a scan.
    deadline = time.monotonic() + 60 + n / 50

    def pending() -> int:
        with db.read() as session:
            return int(
                session.scalar(
                    select(func.count()).where(InboxEvent.status.in_(("pending", "processing")))
                )
                or 0
            )

    last_sent = -1
    while time.monotonic() < deadline:
        sent = sum(1 for w in sim.welcomes if w.welcome_code in codes and w.sent_at)
        # Done when every event is processed and no welcome is still going out (under
        # overload some never will: the bot counts those as missed).
        if pending() == 0 and sent in (len(codes), last_sent):
            break
        last_sent = sent
        time.sleep(0.5)
    tagged_deadline = time.monotonic() + 60 + n / 50
    untagged = scans
    while time.monotonic() < tagged_deadline:
        untagged = [s for s in untagged if len(sim.relation_tags(s.userid, s.external_userid)) < 2]
        if not untagged:
            break
        time.sleep(0.5)

    bot_cpu = _process_cpu(pid) - bot_before
    runs_after = _job_runs(bot_url)
    own_after, sender_after = _harness_cpu(sender)
    own_cpu, sender_cpu = own_after - harness_before[0], sender_after - harness_before[1]
    harness_cpu = Cpu(own_cpu.user + sender_cpu.user, own_cpu.system + sender_cpu.system)
    bot_processes = len(_tree(pid))
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
    pinning = "bot on CPU 0, harness on CPU 1" if args.pin else "none (all share every CPU)"
    print(
        f"tagbot serve --workers {args.workers} --threads {args.threads} ({bot_processes} "
        f"processes in its tree); callbacks sent "
        f"from {'a sender process' if sender else 'the simulator process'}; pinning: {pinning}"
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
    print(f"bot CPU              {bot_cpu.per_scan(len(scans))}   (serve and its children)")
    # Worker steps (a wake-up, a look for work, its metrics) per scan: a count, not a time.
    steps = {
        job: (runs_after.get(job, 0.0) - runs_before.get(job, 0.0)) / max(len(scans), 1)
        for job in ("inbox", "welcome", "outbox", "heartbeat")
    }
    print("worker steps per scan " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    print(f"harness CPU          {harness_cpu.per_scan(len(scans))}")
    if sender is not None:
        print(f"  simulator and load {own_cpu.per_scan(len(scans))}")
        print(f"  sender process     {sender_cpu.per_scan(len(scans))}")
    print(
        f"lost: welcomes {lost_welcomes} (code expired before sending: {expired}), "
        f"untagged relations {len(untagged)}, events {len(scans) - stored}"
    )
    print(f"duplicated: {duplicated}")
    print(f"welcomes the bot counted missed: {_missed(bot_url)}")
    return 0 if lost_welcomes == 0 and not untagged and duplicated == 0 else 1


def main() -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="scans to fire")
    parser.add_argument("--rate", type=float, default=200.0, help="scans per second")
    parser.add_argument(
        "--duration", type=float, default=0.0, help="fire for SECONDS at --rate (sets --n)"
    )
    parser.add_argument("--duplicates", type=float, default=0.1, help="share delivered twice")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--staff", type=int, default=6)
    parser.add_argument("--clients", type=int, default=32, help="sending threads")
    parser.add_argument("--threads", type=int, default=8, help="web threads of tagbot serve")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes of tagbot serve (passed when not 1)"
    )
    parser.add_argument(
        "--sender",
        choices=("process", "thread"),
        default="process",
        help="post callbacks from a child process (default) or this process's threads",
    )
    parser.add_argument(
        "--pin", action="store_true", help="pin the bot to CPU 0 and the harness to CPU 1"
    )
    parser.add_argument("--inbox-workers", type=int, default=4, help="inbox worker threads")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument(
        "--idle", type=float, default=0.0, help="first measure the idle bot's CPU for SECONDS"
    )
    args = parser.parse_args()
    if args.pin and not (hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2):
        parser.error("--pin needs Linux and at least 2 CPUs")
    return run(args)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
