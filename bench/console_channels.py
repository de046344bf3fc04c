"""Time the 渠道活码 pages' services over the re-tier bench data (median and p95 per call).

    python -m bench.console_channels [--customers 100000] [--orders 1000000]
                                     [--events 500000] [--backend sqlite|postgresql|both]
                                     [--workdir DIR] [--keep] [--repeat 30]

Loads bench/retier.py's data and writes the aggregates as bench/console.py does (a re-tier
and the channel rollup). Then times 渠道质量's grouped pass once uncached (what the first
background recount after each rollup or re-tier takes), and the list and a channel's
report as the pages call them (the list never waits for that count).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bench.console import DIMENSION, _settings, _setup
from bench.retier_common import (
    AS_OF,
    TZ,
    backend_url,
    backends,
    parser,
    prepare,
    run_child,
    workdir,
)
from bot.db import Database


def _calls(settings: Any, db: Database) -> dict[str, Callable[[Session], object]]:
    from bot.reports import channel_pages, channel_stats

    today = channel_stats.local_today(ZoneInfo(TZ), AS_OF)
    order = [t.tag for t in settings.tiering.dimensions[0].tiers]
    return {
        "channel_list (as the page)": lambda s: channel_pages.channel_list(
            session=s, today=today, dimension=DIMENSION, tier_order=order, db=db
        ),
        "channel_report 30d": lambda s: channel_pages.channel_report(1, session=s, today=today),
        "all_configs (qr.zip)": lambda s: channel_pages.all_configs(session=s),
    }


def _time(db: Database, call: Callable[[Session], object], repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with db.read() as s:
            call(s)
        seconds.append(time.perf_counter() - t0)
    p95 = statistics.quantiles(seconds, n=20)[18] if len(seconds) > 1 else seconds[0]
    return {
        "median_ms": round(statistics.median(seconds) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the aggregates if needed, then time the services; return the figures."""
    from bot.reports import channel_pages

    db = Database(spec["url"])
    settings = _settings(spec["url"])
    out: dict[str, Any] = {"setup": _setup(db, spec["customers"])}
    timings = {
        "channel_quality uncached": _time(
            db,
            lambda s: channel_pages._quality_counts(s, DIMENSION),
            max(3, spec["repeat"] // 10),
        )
    }
    for name, call in _calls(settings, db).items():
        timings[name] = _time(db, call, spec["repeat"])
    out["services"] = timings
    db.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, customers=100_000, orders=1_000_000, events=500_000)
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(f"# 渠道活码 services bench: {args.customers:,} customers; {args.repeat} calls each")
    with workdir(args, "console-channels-bench-") as work:
        for key, value in prepare(args, work).items():
            print(f"{key:<22} {value:>8} s")
        for backend in backends(args):
            spec = {
                "customers": args.customers,
                "url": backend_url(args, work, backend),
                "repeat": args.repeat,
            }
            r = run_child("bench.console_channels", spec)
            print(f"\n## {backend}")
            for key, value in r["setup"].items():
                print(f"setup {key:<28} {value}")
            print(f"{'service':<30} {'median ms':>10} {'p95 ms':>10}")
            for name, t in r["services"].items():
                print(f"{name:<30} {t['median_ms']:>10} {t['p95_ms']:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
