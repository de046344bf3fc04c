"""Drain a bulk tag push from several processes against WeCom's per-minute budget.

    python -m bench.push_budget [--budget 600] [--processes 2] [--threads 2]
                                [--periods 2] [--reserve 0.0] [--database-url URL]

Starts the WeCom simulator with its per-API minute limit set to exactly the configured
budget (so any minute holding one call too many shows up as 45009), queues more mark_tag
operations than the run can send, and has N `Runtime`s in separate processes drain the
outbox in the bulk lane, sharing the budget through the database. The run lasts whole
budget periods (62 s each: the 60 s window plus the two slots a booked call may lag), so
the rate is not flattered by the first burst. Prints calls per minute against the budget
and the bulk share, the most calls seen in any 60 s, 45009s, and database reservations.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.runtime import Runtime
from bot.tags import catalogue, outbox
from bot.tags.catalogue import TagPath
from wecom_sim import Simulator

CORP_ID = "wwbenchcorp00001"
SECRET = "bench-secret-of-the-self-built-app"  # noqa: S105  (the simulator's, not a secret)
AGENT_ID = 1000002
TOKEN = "benchToken"  # noqa: S105
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ADMIN_TOKEN = "bench-admin-token-0123456789"  # noqa: S105
MARK_TAG = "externalcontact/mark_tag"
PERIOD = 62.0  # the minute window plus two slots (bot/wecom/budget.py)
STAFF = "bench_staff"


def _config(url: str, api_base: str, budget: int, reserve: float) -> dict[str, Any]:
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
        "server": {"admin_token": ADMIN_TOKEN},
        "limits": {"calls_per_minute": budget, "interactive_reserve": reserve},
        "app": {"log_level": "WARNING"},
    }


def _worker(
    cfg: dict[str, Any], threads: int, start_at: float, end_at: float, out: Connection
) -> None:
    """Drain the outbox from `threads` threads until `end_at`; report what this process did."""
    rt = Runtime(settings_from_mapping(cfg, environ={}))
    rt.wecom.get_access_token()
    done = [0] * threads

    def drain(i: int) -> None:
        while time.time() < end_at:
            n = outbox.drain(db=rt.db, wecom=rt.wecom, limit=20)
            done[i] += n
            if n == 0:
                time.sleep(0.05)

    time.sleep(max(0.0, start_at - time.time()))
    workers = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(max(0.0, end_at - time.time()))
    # Threads waiting for the next window stay blocked; the process just reports and ends.
    out.send({"claimed": sum(done), "reservations": rt.wecom.budget.transactions})
    out.close()


def _seed(cfg: dict[str, Any], sim: Simulator, n: int) -> None:
    """Create the tag and n relations in WeCom, and queue one mark_tag per relation."""
    sim.add_staff(STAFF, "压测销售")
    exts = [sim.add_relation(STAFF, name=f"客户{i}") for i in range(n)]
    rt = Runtime(settings_from_mapping(cfg, environ={}))
    path = TagPath("等级", "高价值")
    catalogue.ensure(db=rt.db, wecom=rt.wecom, paths=[path])
    with rt.db.write() as session:
        tag = catalogue.find(session, path)
        assert tag is not None
        for ext in exts:
            outbox.enqueue_tags(
                session=session, staff_userid=STAFF, external_userid=ext, add=[tag], priority=0
            )
    rt.close()


def _most_in_a_minute(samples: list[tuple[float, int]]) -> int:
    """Bound the most calls in any 60 s from counts sampled over time (over-counts a little)."""
    most = 0
    j = 0
    for t, count in samples:
        while samples[j][0] < t - 60.0:
            j += 1
        base = samples[j - 1][1] if j > 0 else 0  # the sample just over 60 s back
        most = max(most, count - base)
    return most


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="tagbot-bench-"))
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    sim = Simulator(
        corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID, token=TOKEN, encoding_aes_key=AES_KEY
    ).start()
    try:
        db = Database(url)
        upgrade_to_head(db.engine)
        db.dispose()
        cfg = _config(url, sim.api_base, args.budget, args.reserve)
        _seed(cfg, sim, args.budget * (args.periods + 1) + 100)
        sim.set_rate_limit(per_minute=args.budget)  # WeCom here allows exactly the budget
        sim.reset_counters()
        duration = args.periods * PERIOD
        start_at = time.time() + 5.0
        end_at = start_at + duration
        ctx = multiprocessing.get_context("spawn")
        pipes = []
        procs = []
        for _ in range(args.processes):
            here, there = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(cfg, args.threads, start_at, end_at, there))
            p.start()
            pipes.append(here)
            procs.append(p)
        samples: list[tuple[float, int]] = []
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < end_at:
            samples.append((time.time(), sim.calls.get((MARK_TAG, 0), 0)))
            time.sleep(0.25)
        calls = sim.calls
        sent = calls.get((MARK_TAG, 0), 0)
        reports = [pipe.recv() for pipe in pipes]
        for p in procs:
            p.terminate()
            p.join(timeout=10)
    finally:
        sim.stop()
    bulk_share = int(args.budget * (1 - args.reserve))
    per_minute = sent / duration * 60
    return {
        "budget_per_minute": args.budget,
        "bulk_share_per_minute": bulk_share,
        "processes": args.processes,
        "threads_per_process": args.threads,
        "seconds": round(duration, 1),
        "mark_tag_ok": sent,
        "mark_tag_45009": calls.get((MARK_TAG, 45009), 0),
        "calls_per_minute": round(per_minute, 1),
        "pct_of_budget": round(100 * per_minute / args.budget, 1),
        "pct_of_bulk_share": round(100 * per_minute / bulk_share, 1),
        "most_in_any_60s": _most_in_a_minute(samples),
        "reservations_per_process": [r["reservations"] for r in reports],
        "calls_per_reservation": round(sent / max(1, sum(r["reservations"] for r in reports)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=600, help="[limits] calls_per_minute")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="outbox threads per process")
    parser.add_argument("--periods", type=int, default=2, help="run length in 62 s periods")
    parser.add_argument("--reserve", type=float, default=0.0, help="[limits] interactive_reserve")
    parser.add_argument("--database-url", default="")
    figures = run(parser.parse_args())
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
