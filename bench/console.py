"""Time the console's read services over the re-tier bench data (median and p95 per call).

    python -m bench.console [--customers 100000] [--orders 1000000] [--events 500000]
                            [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]
                            [--repeat 30]

Loads (or reuses, with --workdir/--keep) bench/retier.py's data. The aggregates the pages
read are written by a re-tier and by the channel rollup: when the data holds no sizes yet,
the bench runs a full re-tier with the default dimensions and a touched one of 1,000
customers (their wall times are printed: what writing the aggregates adds to a run is in
them), then the channel rollup with conversions (the scheduled job's heaviest pass). Then
each service is called `--repeat` times in a fresh read transaction, as a page would.
"""

from __future__ import annotations

import json
import resource
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.retier_common import (
    AS_OF,
    TZ,
    backend_url,
    backends,
    parser,
    prepare,
    run_child,
    touched_ids,
    workdir,
)
from bench.tier_diff import insert_tier_tags, mark_sent
from bot.config import settings_from_mapping
from bot.db import Database

DIMENSION = "value"


def _settings(url: str) -> Any:
    from bot.tiering.defaults import default_tiering

    tiering = default_tiering().model_dump()
    return settings_from_mapping(
        {
            "wecom": {
                "corp_id": "wwbench",
                "secret": "s",
                "agent_id": 1,
                "token": "t",
                "encoding_aes_key": "a" * 43,
            },
            "database": {"url": url},
            "server": {"admin_token": "x" * 16},
            "app": {"timezone": TZ},
            "tiering": tiering,
        },
        environ={},
    )


def _setup(db: Database, n: int) -> dict[str, Any]:
    """Write the aggregates if the data holds none: two re-tiers and the rollup."""
    from bot.db.models import ChannelTotal, OutboxOperation, TierSizeDay
    from bot.reports import channel_stats
    from bot.rules import load_dimensions
    from bot.tags import diff, tier_tags
    from bot.tiering.defaults import default_tiering
    from bot.tiering.run import retier

    out: dict[str, Any] = {}
    with db.read() as s:
        sized = s.scalar(select(func.count()).select_from(TierSizeDay))
        rolled = s.scalar(select(func.count()).select_from(ChannelTotal))
    if not sized:
        dims = load_dimensions(default_tiering().dimensions)
        for name, ids in (("retier_full", None), ("retier_touched", touched_ids(n))):
            t0 = time.perf_counter()
            report = retier(db, dims, tz=TZ, as_of=AS_OF, customer_ids=ids)
            out[name] = {
                "wall_s": round(time.perf_counter() - t0, 2),
                "transitions": report.transitions,
                "record_s": round(report.seconds.get("record", 0.0), 2),
            }
    with db.read() as s:
        queued = s.scalar(select(func.count()).select_from(OutboxOperation))
    if not queued:
        # The first push's operations, kept done as the outbox keeps them: what the push
        # progress counts read past in production.
        with db.read() as s:
            tdims = tier_tags.dimensions(default_tiering(), session=s)
        with db.write() as s:
            insert_tier_tags(s, tdims, prefix="c")
        t0 = time.perf_counter()
        first = diff.enqueue_tier_changes(db=db, dims=tdims)
        mark_sent(db)
        out["push_queued_and_marked_done"] = {
            "operations": first.changed,
            "wall_s": round(time.perf_counter() - t0, 2),
        }
    if not rolled or not sized:
        tz = ZoneInfo(TZ)
        for name, now, orders in (
            ("rollup_first_s (31 days back)", AS_OF, False),
            ("rollup_s (every 10 min)", AS_OF + timedelta(minutes=10), False),
            ("rollup_with_orders_s (hourly)", AS_OF + timedelta(minutes=20), True),
        ):
            t0 = time.perf_counter()
            channel_stats.rollup(db, tz=tz, now=now, orders=orders)
            out[name] = round(time.perf_counter() - t0, 2)
    return out


def _calls(settings: Any) -> dict[str, Callable[[Session], object]]:
    from bot.reports import channel_stats, operations, overview, tier_movement

    tz = ZoneInfo(TZ)
    today = channel_stats.local_today(tz, AS_OF)
    value = [t.tag for t in settings.tiering.dimensions[0].tiers]
    return {
        "overview (概览, all of it)": lambda s: overview.overview(
            session=s, settings=settings, now=AS_OF
        ),
        "tier_sizes": lambda s: tier_movement.tier_sizes(DIMENSION, session=s, tiers=value),
        "size_series 30d": lambda s: tier_movement.size_series(
            DIMENSION, session=s, today=today, days=30, tiers=value
        ),
        "movement_matrix (last full)": lambda s: tier_movement.movement_matrix(
            None, DIMENSION, session=s
        ),
        "last_run_summary": lambda s: tier_movement.last_run_summary(session=s),
        "push_progress, whole outbox": lambda s: tier_movement.push_progress(session=s, since_id=0),
        "channel_summary": lambda s: channel_stats.channel_summary(session=s, today=today),
        "channel_trend 30d": lambda s: channel_stats.channel_trend(
            1, session=s, today=today, days=30
        ),
        "queue_depths": lambda s: operations.queue_depths(session=s),
        "wecom_usage": lambda s: operations.wecom_usage(
            session=s, corp_id="wwbench", limits=settings.limits
        ),
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the aggregates if needed, then time every service; return the figures."""
    db = Database(spec["url"])
    settings = _settings(spec["url"])
    out: dict[str, Any] = {"setup": _setup(db, spec["customers"])}
    timings: dict[str, Any] = {}
    for name, call in _calls(settings).items():
        seconds = []
        for _ in range(spec["repeat"]):
            t0 = time.perf_counter()
            with db.read() as s:
                call(s)
            seconds.append(time.perf_counter() - t0)
        p95 = statistics.quantiles(seconds, n=20)[18] if len(seconds) > 1 else seconds[0]
        timings[name] = {
            "median_ms": round(statistics.median(seconds) * 1000, 2),
            "p95_ms": round(p95 * 1000, 2),
        }
    out["services"] = timings
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    db.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, customers=100_000, orders=1_000_000, events=500_000)
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(
        f"# console services bench: {args.customers:,} customers, {args.orders:,} orders,"
        f" {args.events:,} events; {args.repeat} calls each"
    )
    with workdir(args, "console-bench-") as work:
        for key, value in prepare(args, work).items():
            print(f"{key:<22} {value:>8} s")
        for backend in backends(args):
            spec = {
                "customers": args.customers,
                "url": backend_url(args, work, backend),
                "repeat": args.repeat,
            }
            r = run_child("bench.console", spec)
            print(f"\n## {backend}")
            for key, value in r["setup"].items():
                print(f"setup {key:<28} {value}")
            print(f"{'service':<30} {'median ms':>10} {'p95 ms':>10}")
            for name, t in r["services"].items():
                print(f"{name:<30} {t['median_ms']:>10} {t['p95_ms']:>10}")
            print(f"peak RSS {r['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
