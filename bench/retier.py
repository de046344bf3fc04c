"""Time the per-customer metrics engine on SQLite and PostgreSQL, and DuckDB-native beside it.

    python -m bench.retier [--customers 20000] [--orders 200000] [--events 100000]
                           [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]

Generates realistic data (bench/retier_data.py: 60 % buyers of whom 60 % buy once, skewed
lognormal spend, 1–3 staff per customer, 20 categories, 15 % new products, 5 % refunds,
five event kinds, region and member level), loads it (load time reported apart), then
runs `compute_metrics` for all customers and for 1,000 touched customers, each in a child
process so its peak RSS is its own. The same metrics are computed from native DuckDB
tables of the same rows for comparison (our time ÷ DuckDB's).

With --workdir and --keep the generated DuckDB file, the SQLite file and the PostgreSQL
schema are kept and reused by the next run of the same size (load once, time often).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import text

from bench.retier_data import generate as generate_data
from bench.retier_data import load_postgres, load_sqlite
from bot.db import Database
from bot.db.migrate import upgrade_to_head

PG_URL = os.environ.get("TAGBOT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AS_OF = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 03:00 the next day in Asia/Shanghai
TZ = "Asia/Shanghai"
TOUCHED = 1000


def _size_tag(args: argparse.Namespace) -> str:
    return f"{args.customers}c_{args.orders}o_{args.events}e"


def _pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _pg_dsn() -> str:
    return PG_URL.replace("postgresql+psycopg://", "postgresql://")


def prepare(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Generate and load the data unless a kept copy of this size exists; return timings."""
    tag = _size_tag(args)
    native = workdir / f"retier_{tag}.duckdb"
    timings: dict[str, Any] = {}
    if not native.exists():
        t0 = time.perf_counter()
        tmp = native.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        generate_data(
            con, customers=args.customers, orders=args.orders, events=args.events, as_of=AS_OF
        )
        con.close()
        tmp.rename(native)
        timings["generate_s"] = round(time.perf_counter() - t0, 1)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "sqlite" in backends:
        path = workdir / f"retier_{tag}.db"
        if not path.exists():
            t0 = time.perf_counter()
            tmp = path.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            db = Database(f"sqlite:///{tmp}")
            upgrade_to_head(db.engine)
            db.dispose()
            con = duckdb.connect(str(native))
            load_sqlite(con, str(tmp))
            con.close()
            tmp.rename(path)
            timings["load_sqlite_s"] = round(time.perf_counter() - t0, 1)
    if "postgresql" in backends:
        schema = f"bench_retier_{tag}"
        admin = Database(PG_URL)
        with admin.engine.begin() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": schema},
            ).first()
            if exists is not None:
                done = conn.execute(
                    text(
                        "SELECT 1 FROM information_schema.tables WHERE table_schema = :s"
                        " AND table_name = 'bench_loaded'"
                    ),
                    {"s": schema},
                ).first()
                if done is None:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    exists = None
        if exists is None:
            t0 = time.perf_counter()
            with admin.engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            db = Database(_pg_schema_url(schema))
            upgrade_to_head(db.engine)
            db.dispose()
            con = duckdb.connect(str(native))
            load_postgres(con, _pg_dsn(), schema)
            con.close()
            with admin.engine.begin() as conn:
                conn.execute(text(f'ANALYZE "{schema}".orders'))
                conn.execute(text(f'ANALYZE "{schema}".interaction_events'))
                conn.execute(text(f'CREATE TABLE "{schema}".bench_loaded (x int)'))
            timings["load_postgresql_s"] = round(time.perf_counter() - t0, 1)
        admin.dispose()
    return timings


def drop_postgres(args: argparse.Namespace) -> None:
    """Drop the bench's PostgreSQL schema."""
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "bench_retier_{_size_tag(args)}" CASCADE'))
    admin.dispose()


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one timed computation in this (child) process and return its figures."""
    from bot.tiering.engine import EngineLimits, MetricsEngine

    t0 = time.perf_counter()
    limits = EngineLimits()
    ids: list[int] | None = None
    if spec["touched"]:
        # Spread over the id range, as fresh orders would be.
        step = max(spec["customers"] // TOUCHED, 1)
        ids = list(range(1, spec["customers"] + 1, step))[:TOUCHED]
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


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `child` in a fresh interpreter so peak RSS is the computation's alone."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.retier", "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--workdir", type=Path, help="keep generated files here")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    parser.add_argument("--prepare-only", action="store_true", help="generate and load, no timing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="retier-bench-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    tag = _size_tag(args)
    print(
        f"# retier metrics bench: {args.customers:,} customers, {args.orders:,} orders, "
        f"{args.events:,} events; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, DuckDB {duckdb.__version__}"
    )
    try:
        timings = prepare(args, workdir)
        for key, value in timings.items():
            print(f"{key:<22} {value:>8} s")
        if args.prepare_only:
            return 0
        backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
        native = str(workdir / f"retier_{tag}.duckdb")
        results: list[tuple[str, str, dict[str, Any]]] = []
        base = {"customers": args.customers}
        duck = run_child({**base, "backend": "duckdb", "path": native, "touched": False})
        results.append(("duckdb-native", "all", duck))
        for backend in backends:
            url = (
                f"sqlite:///{workdir / f'retier_{tag}.db'}"
                if backend == "sqlite"
                else _pg_schema_url(f"bench_retier_{tag}")
            )
            spec = {**base, "backend": backend, "url": url}
            results.append((backend, "all", run_child({**spec, "touched": False})))
            results.append((backend, f"{TOUCHED} touched", run_child({**spec, "touched": True})))
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
    finally:
        if not args.keep and args.backend in ("postgresql", "both"):
            drop_postgres(args)
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
