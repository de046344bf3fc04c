"""Time the day-population job and what it saves a web process the next day.

    python -m bench.day_population [--customers 100000] [--orders 1000000] [--events 500000]
                                   [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]

On bench/retier.py's data, in one child process per backend: a full re-tier on AS_OF
stores that day's population; the next day (00:05 local) an explanation ranks against it
(stale), then the job builds and stores the day's (its time: what the scheduler spends
once instead of every web process), a second run is timed (a no-op), and a fresh
`ExplainEngine` explains one customer (its first answer loads the stored population:
each web process's cost after the job) — beside one process's own background build (what
each web process spent before the job).
"""

from __future__ import annotations

import json
import os
import resource
import time
from datetime import timedelta
from typing import Any

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

NEXT = AS_OF + timedelta(hours=21, minutes=5)  # 00:05 local, the day after the run


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from bot.rules import load_dimensions
    from bot.tiering.day_population import store_day_population
    from bot.tiering.defaults import default_tiering
    from bot.tiering.engine import MetricsEngine
    from bot.tiering.run import retier
    from bot.tiering.why import ExplainEngine, explain_customer

    db = Database(spec["url"])
    dims = load_dimensions(default_tiering().dimensions)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    retier(db, dims, tz=TZ, as_of=AS_OF)
    out["retier_s"] = round(time.perf_counter() - t0, 2)
    cid = spec["customers"] // 2

    # Before the job: what each web process built for itself in the background.
    t0, c0 = time.perf_counter(), _cpu()
    with MetricsEngine(db, tz=TZ) as engine:
        engine.build_population(as_of=NEXT)
    out["own_build_s"] = round(time.perf_counter() - t0, 2)
    out["own_build_cpu_s"] = round(_cpu() - c0, 2)

    t0, c0 = time.perf_counter(), _cpu()
    done = store_day_population(db, tz=TZ, as_of=NEXT)
    out["job_s"] = round(time.perf_counter() - t0, 2)
    out["job_cpu_s"] = round(_cpu() - c0, 2)
    out["buyers"] = done.buyers
    t0 = time.perf_counter()
    again = store_day_population(db, tz=TZ, as_of=NEXT + timedelta(minutes=30))
    out["second_run_s"] = round(time.perf_counter() - t0, 3)
    out["second_stored"] = again.stored

    kept = ExplainEngine(schedule="5 0 * * *")
    try:
        took = []
        for i in range(3):
            t0, c0 = time.perf_counter(), _cpu()
            views = explain_customer(
                db,
                dims,
                customer_id=cid + i,
                tz=TZ,
                as_of=NEXT + timedelta(minutes=10),
                engine=kept,
            )
            took.append((round(time.perf_counter() - t0, 3), round(_cpu() - c0, 2)))
            assert all(v.rank_note == "" for v in views)
        out["explain_after_job_s_cpu"] = took
        out["builds"] = (kept.request_builds, kept.background_builds)
    finally:
        kept.close()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, customers=100_000, orders=1_000_000, events=500_000).parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(f"# day-population bench: {args.customers:,} customers, {args.orders:,} orders")
    with workdir(args, "day-population-bench-") as work:
        for key, value in prepare(args, work).items():
            print(f"{key:<22} {value:>8} s")
        for backend in backends(args):
            spec = {"customers": args.customers, "url": backend_url(args, work, backend)}
            r = run_child("bench.day_population", spec)
            print(f"{backend:<11} {json.dumps(r)}")
            print(f"{backend:<11} load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
