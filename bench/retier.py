"""Time the per-customer metrics engine on SQLite and PostgreSQL, and DuckDB-native beside it.

    python -m bench.retier [--customers 20000] [--orders 200000] [--events 100000]
                           [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]

Generates realistic data (bench/retier_data.py: 60 % buyers whose repeat orders churn as BG/NBD assumes (about half buy once), skewed
lognormal spend, 1–3 staff per customer, 20 categories, 15 % new products, 5 % refunds,
five event kinds, region and member level), loads it (load time reported apart), then
runs `compute_metrics` for all customers and for 1,000 touched customers, each in a child
process so its peak RSS is its own. The same metrics are computed from native DuckDB
tables of the same rows for comparison (our time ÷ DuckDB's).

With --workdir and --keep the generated DuckDB file, the SQLite file and the PostgreSQL
schema are kept and reused by the next run of the same size (load once, time often).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from typing import Any

import duckdb

from bench.retier_common import (
    AS_OF,
    TOUCHED,
    TZ,
    backend_url,
    backends,
    parser,
    prepare,
    run_child,
    size_tag,
    touched_ids,
    workdir,
)
from bot.db import Database


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one timed computation in this (child) process and return its figures."""
    from bot.tiering.engine import EngineLimits, MetricsEngine

    t0 = time.perf_counter()
    limits = EngineLimits()
    ids: list[int] | None = None
    if spec["touched"]:
        ids = touched_ids(spec["customers"])
    if spec["backend"] == "duckdb":
        engine = MetricsEngine.for_duckdb_file(spec["path"], tz=TZ, limits=limits)
    else:
        engine = MetricsEngine(Database(spec["url"]), tz=TZ, limits=limits)
    population_s = None
    if ids is not None:
        # A touched run follows a full run in the same process (the population is kept).
        tp = time.perf_counter()
        engine.compute(as_of=AS_OF).close()
        population_s = round(time.perf_counter() - tp, 2)
        t0 = time.perf_counter()
    frame = engine.compute(as_of=AS_OF, customer_ids=ids)
    rows = frame.count()
    wall = time.perf_counter() - t0
    frame.close()
    engine.close()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "wall_s": round(wall, 2),
        "rows": rows,
        "peak_rss_mb": round(rss_kb / 1024),
        "full_before_s": population_s,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, customers=20_000, orders=200_000, events=100_000)
    p.add_argument("--prepare-only", action="store_true", help="generate and load, no timing")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(
        f"# retier metrics bench: {args.customers:,} customers, {args.orders:,} orders, "
        f"{args.events:,} events; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, DuckDB {duckdb.__version__}"
    )
    with workdir(args, "retier-bench-") as work:
        timings = prepare(args, work)
        for key, value in timings.items():
            print(f"{key:<22} {value:>8} s")
        if args.prepare_only:
            return 0
        native = str(work / f"retier_{size_tag(args)}.duckdb")
        results: list[tuple[str, str, dict[str, Any]]] = []
        base = {"customers": args.customers}
        duck = run_child(
            "bench.retier", {**base, "backend": "duckdb", "path": native, "touched": False}
        )
        results.append(("duckdb-native", "all", duck))
        for backend in backends(args):
            spec = {**base, "backend": backend, "url": backend_url(args, work, backend)}
            results.append((backend, "all", run_child("bench.retier", {**spec, "touched": False})))
            results.append(
                (
                    backend,
                    f"{TOUCHED} touched",
                    run_child("bench.retier", {**spec, "touched": True}),
                )
            )
        print(
            f"{'backend':<14} {'customers':<12} {'rows':>9} {'wall s':>8} {'peak RSS MB':>12} "
            f"{'÷ duckdb':>9}"
        )
        for backend, what, r in results:
            ratio = f"{r['wall_s'] / duck['wall_s']:.2f}" if what == "all" else ""
            print(
                f"{backend:<14} {what:<12} {r['rows']:>9,} {r['wall_s']:>8.2f} "
                f"{r['peak_rss_mb']:>12} {ratio:>9}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
