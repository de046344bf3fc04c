"""Time the 分层 page's services over the re-tier bench data (median and p95 per call).

    python -m bench.console_tiers [--customers 100000] [--orders 1000000] [--events 500000]
                                  [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]
                                  [--repeat 30]

The data and aggregates are bench/console.py's. Times the page (`tier_page`) of the value
and the RFM dimensions, the export of the value dimension's largest tier (once: rows,
bytes, seconds), and 规则试算: the first trial (computing the metrics of every customer)
and then a trial answered from the kept frame.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.console import _settings, _setup
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


def _timed(repeat: int, call: Any) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - t0)
    p95 = statistics.quantiles(seconds, n=20)[18] if len(seconds) > 1 else seconds[0]
    return {
        "median_ms": round(statistics.median(seconds) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the page per dimension, one export and two trials; return the figures."""
    from bot.reports import rule_trial, tier_export
    from bot.reports.tier_page import tier_page
    from bot.rules import load_dimensions

    db = Database(spec["url"])
    settings = _settings(spec["url"])
    _setup(db, spec["customers"])
    dims = {d.name: d for d in load_dimensions(settings.tiering.dimensions)}
    today = AS_OF.astimezone(ZoneInfo(TZ)).date()
    out: dict[str, Any] = {}
    for name in ("value", "rfm"):

        def page(name: str = name) -> None:
            with db.read() as s:
                tier_page(dims[name], session=s, today=today)

        out[f"tier_page {name}"] = _timed(spec["repeat"], page)
    with db.read() as s:
        sizes = tier_page(dims["value"], session=s, today=today).sizes.sizes
    largest = max(sizes, key=lambda t: t.customers)
    t0 = time.perf_counter()
    buffer = io.BytesIO()
    with db.read() as s:
        rows = tier_export.write_xlsx(
            tier_export.members("value", largest.tier, session=s),
            tier_export.metric_names(dims["value"]),
            buffer,
            tz=ZoneInfo(TZ),
            title=largest.tier,
        )
    out["export"] = {
        "tier": largest.tier,
        "rows": rows,
        "bytes": buffer.tell(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    frames = rule_trial.TrialFrames()
    for label, now in (("trial_first_s", AS_OF), ("trial_kept_s", AS_OF + timedelta(minutes=1))):
        t0 = time.perf_counter()
        result = rule_trial.trial(
            "spend_365d >= 1000 and days_since_last_order <= 90",
            db=db,
            frames=frames,
            tz=TZ,
            now=now,
        )
        out[label] = round(time.perf_counter() - t0, 2)
        out["trial_matched"] = result.matched
    frames.close()
    db.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, customers=100_000, orders=1_000_000, events=500_000)
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(f"# 分层 page bench: {args.customers:,} customers, {args.orders:,} orders")
    with workdir(args, "console-tiers-bench-") as work:
        prepare(args, work)
        for backend in backends(args):
            spec = {
                "customers": args.customers,
                "url": backend_url(args, work, backend),
                "repeat": args.repeat,
            }
            print(f"\n## {backend}")
            for key, value in run_child("bench.console_tiers", spec).items():
                print(f"{key:<28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
