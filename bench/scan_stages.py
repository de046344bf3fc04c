"""CPU of one scan's stages, measured one scan at a time: the ack, the welcome lane, the worker.

    python -m bench.scan_stages [--n 500] [--warm 50] [--database-url URL] [--profile FILE]

Runs the real app (Flask test client, no gunicorn, no sockets on the ack's side), the
real welcome-lane step and inbox-worker step in this thread, one scan after another,
against the WeCom simulator over HTTP (its own threads). Each stage's cost is this
thread's CPU time (`time.thread_time`), so the simulator's work and other processes on a
shared machine stay out of it, and no stage waits on another: a steadier figure than
`bench.callback_load`'s whole-process CPU under load, for comparing two versions of the
code in one sitting. What it leaves out (gunicorn, thread hand-offs, the budget's and
heartbeat's own threads) is what callback_load adds. `--profile FILE` writes a cProfile of
the measured scans (CPU clock) for `python -m pstats FILE`.
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from bench.callback_load import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, _config
from bot.channels import live_codes
from bot.config import settings_from_mapping
from bot.db.migrate import upgrade_to_head
from bot.tags.catalogue import TagPath
from handlers.app import create_app
from jobs.inbox import INBOX_WORKER
from jobs.welcome import WELCOME_LANE
from wecom_sim import Simulator, people

STAGES = ("ack", "lane", "worker")


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.thread_time()
    result = fn()
    return time.thread_time() - started, result


def run(args: argparse.Namespace) -> int:
    """Run the scans and print each stage's CPU per scan; return the exit code."""
    work = Path(tempfile.mkdtemp(prefix="tagbot-stages-"))
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    sim = Simulator(
        corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID, token=TOKEN, encoding_aes_key=AES_KEY
    ).start()
    try:
        staff = [f"staff{i:02d}" for i in range(6)]
        for userid in staff:
            sim.add_staff(userid, f"销售{userid[-2:]}")
        settings = settings_from_mapping(_config(url, sim.api_base, 0, 1), environ={})
        app = create_app(settings)
        rt = app.extensions["tagbot"]
        upgrade_to_head(rt.db.engine)
        channel = live_codes.create(
            live_codes.ChannelSpec(
                name="渠道1",
                staff=tuple(staff[:2]),
                tags=(TagPath("来源", "渠道1"), TagPath("批次", "压测")),
                welcome="你好 {name}，我是{staff}",
            ),
            db=rt.db,
            wecom=rt.wecom,
        )
        # As the worker threads do when they start: the request hands over to them.
        rt.handoff.active = True
        rt.welcome_lane.active = True
        client = app.test_client()
        costs: dict[str, list[float]] = {stage: [] for stage in STAGES}
        profile = cProfile.Profile(time.thread_time) if args.profile else None

        def scan(measured: bool) -> None:
            with sim.state.lock:
                scanned = people.scan(
                    sim.state, channel.state, external_userid=None, name=None, unionid=None
                )
            assert scanned.xml is not None
            params, body = sim.build_callback(scanned.xml)
            target = "/wecom/callback?" + urlencode(params)
            if profile is not None and measured:
                profile.enable()
            ack, answer = _timed(lambda: client.post(target, data=body))
            lane, sent = _timed(lambda: WELCOME_LANE.step(rt))
            worker, done = _timed(lambda: INBOX_WORKER.step(rt))
            if profile is not None and measured:
                profile.disable()
            assert getattr(answer, "status_code", 0) == 200, answer
            assert (sent, done) == (1, 1), (sent, done)
            if measured:
                for stage, cost in zip(STAGES, (ack, lane, worker), strict=True):
                    costs[stage].append(cost)

        for _ in range(args.warm):
            scan(measured=False)
        for _ in range(args.n):
            scan(measured=True)
        if profile is not None:
            profile.dump_stats(args.profile)
        rt.close()
    finally:
        sim.stop()

    print(f"{args.n} scans after {args.warm} to warm up, database {url.split(':', 1)[0]}")
    total = 0.0
    for stage in STAGES:
        values = costs[stage]
        mean = statistics.fmean(values) * 1000
        total += mean
        print(f"{stage:7s} {mean:6.3f} ms per scan (median {statistics.median(values) * 1000:.3f})")
    print(f"total   {total:6.3f} ms per scan (this thread's CPU; the simulator's excluded)")
    calls = sum(v for k, v in sim.calls.items() if isinstance(k, str) and k != "gettoken")
    print(f"WeCom calls per scan {calls / (args.n + args.warm):.2f}")
    return 0


def main() -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="scans measured")
    parser.add_argument("--warm", type=int, default=50, help="scans run first, not measured")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--profile", default=None, help="write a cProfile of the measured scans")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
