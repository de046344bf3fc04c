"""Time the whole re-tier run (metrics, every default dimension, diff, history writes).

    python -m bench.retier_run [--customers 100000] [--orders 1000000] [--events 500000]
                               [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]

Reuses bench/retier.py's data and loading. In one child process per backend (peak RSS its
own) it runs: the first run (every assignment new), the nightly rerun a day later (few
moves), and a touched re-tier of 1,000 customers; each with wall time and transitions.
"""

from __future__ import annotations

import json
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
    touched_ids,
    workdir,
)
from bot.db import Database


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the three re-tiers in this process and return their figures."""
    from bot.tiering.defaults import default_tiering
    from bot.tiering.engine import MetricsEngine
    from bot.tiering.rules import load_dimensions
    from bot.tiering.run import retier

    db = Database(spec["url"])
    with db.engine.begin() as conn:  # the bench's data may hold a previous run's tiers
        for table in ("tier_transitions", "tier_assignments", "retier_runs"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    dims = load_dimensions(default_tiering().dimensions)
    out: dict[str, Any] = {}
    engine = MetricsEngine(db, tz=TZ)
    for name, as_of, ids in (
        ("first", AS_OF, None),
        ("nightly", AS_OF + timedelta(days=1), None),
        ("touched", AS_OF + timedelta(days=1), touched_ids(spec["customers"])),
    ):
        t0 = time.perf_counter()
        report = retier(db, dims, tz=TZ, as_of=as_of, customer_ids=ids, engine=engine)
        out[name] = {
            "wall_s": round(time.perf_counter() - t0, 2),
            "customers": report.customers,
            "transitions": report.transitions,
            "steps": {k: round(v, 2) for k, v in report.seconds.items()},
        }
    engine.close()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, customers=100_000, orders=1_000_000, events=500_000).parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(
        f"# re-tier run bench: {args.customers:,} customers, {args.orders:,} orders, "
        f"{args.events:,} events, 10 default dimensions"
    )
    with workdir(args, "retier-run-bench-") as work:
        for key, value in prepare(args, work).items():
            print(f"{key:<22} {value:>8} s")
        for backend in backends(args):
            spec = {"customers": args.customers, "url": backend_url(args, work, backend)}
            r = run_child("bench.retier_run", spec)
            for run in ("first", "nightly", "touched"):
                x = r[run]
                print(
                    f"{backend:<11} {run:<8} customers {x['customers']:>9,}  transitions "
                    f"{x['transitions']:>9,}  wall {x['wall_s']:>7.2f} s  {x['steps']}"
                )
            print(f"{backend:<11} peak RSS {r['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
