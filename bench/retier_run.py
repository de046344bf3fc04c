"""Time the whole re-tier run (metrics, every default dimension, diff, history writes).

    python -m bench.retier_run [--customers 100000] [--orders 1000000] [--events 500000]
                               [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]

Reuses bench/retier.py's data and loading. In one child process per backend (peak RSS its
own) it runs: the first run (every assignment new), the nightly rerun a day later (few
moves), and a touched re-tier of 1,000 customers; each with wall time and transitions.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.retier import AS_OF, TZ, _pg_schema_url, _size_tag, drop_postgres, prepare
from bot.db import Database

TOUCHED = 1000


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
        (
            "touched",
            AS_OF + timedelta(days=1),
            list(range(1, spec["customers"] + 1, max(spec["customers"] // TOUCHED, 1)))[:TOUCHED],
        ),
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="retier-run-bench-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    tag = _size_tag(args)
    print(
        f"# re-tier run bench: {args.customers:,} customers, {args.orders:,} orders, "
        f"{args.events:,} events, 10 default dimensions"
    )
    try:
        for key, value in prepare(args, workdir).items():
            print(f"{key:<22} {value:>8} s")
        backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
        for backend in backends:
            url = (
                f"sqlite:///{workdir / f'retier_{tag}.db'}"
                if backend == "sqlite"
                else _pg_schema_url(f"bench_retier_{tag}")
            )
            spec = {"customers": args.customers, "url": url}
            done = subprocess.run(
                [sys.executable, "-m", "bench.retier_run", "--child", json.dumps(spec)],
                check=True,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            for run in ("first", "nightly", "touched"):
                x = r[run]
                print(
                    f"{backend:<11} {run:<8} customers {x['customers']:>9,}  transitions "
                    f"{x['transitions']:>9,}  wall {x['wall_s']:>7.2f} s  {x['steps']}"
                )
            print(f"{backend:<11} peak RSS {r['peak_rss_mb']} MB")
    finally:
        if not args.keep and args.backend in ("postgresql", "both"):
            drop_postgres(args)
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
