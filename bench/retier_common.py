"""What the re-tier benches share: sizes, data preparation, workdir, backends, child runs.

`bench/retier.py` (the metrics engine) and `bench/retier_run.py` (the whole run) take the
same arguments, load the same generated data once per size into SQLite and PostgreSQL
(kept with --workdir/--keep), and time each backend in a child process of its own so its
peak RSS is the computation's alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import text

from bench.retier_data import DATA_VERSION, load_postgres, load_sqlite
from bench.retier_data import generate as generate_data
from bot.db import Database
from bot.db.migrate import upgrade_to_head

PG_URL = os.environ.get("TAGBOT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AS_OF = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 03:00 the next day in Asia/Shanghai
TZ = "Asia/Shanghai"
TOUCHED = 1000
ROOT = Path(__file__).resolve().parent.parent


def parser(doc: str | None, *, customers: int, orders: int, events: int) -> argparse.ArgumentParser:
    """Return the benches' argument parser with these default sizes."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--customers", type=int, default=customers)
    p.add_argument("--orders", type=int, default=orders)
    p.add_argument("--events", type=int, default=events)
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--workdir", type=Path, help="keep generated files here")
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    p.add_argument(
        "--generate",
        choices=["duckdb", "sql"],
        default="duckdb",
        help="duckdb: draw in DuckDB and copy (both backends); sql: draw inside PostgreSQL"
        " (bench/retier_sql.py, PostgreSQL only, for 10 M)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Refuse argument combinations the benches cannot run (a usage error, exit 2)."""
    if getattr(args, "generate", "duckdb") == "sql" and args.backend != "postgresql":
        p.error("--generate sql draws the data inside PostgreSQL: add --backend postgresql")
    return args


def size_tag(args: argparse.Namespace) -> str:
    """Name the data by version and size (files, schema): versions never share a kept copy."""
    return f"d{DATA_VERSION}_{args.customers}c_{args.orders}o_{args.events}e"


def pg_schema(args: argparse.Namespace) -> str:
    """The PostgreSQL schema holding this size's data (SQL-drawn data has its own names)."""
    if getattr(args, "generate", "duckdb") == "sql":
        from bench.retier_sql import schema_name

        return schema_name(args.customers, args.orders, args.events)
    return f"bench_retier_{size_tag(args)}"


def pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _pg_dsn() -> str:
    return PG_URL.replace("postgresql+psycopg://", "postgresql://")


def backends(args: argparse.Namespace) -> list[str]:
    return ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]


def backend_url(args: argparse.Namespace, workdir: Path, backend: str) -> str:
    """Return the database URL of the loaded data for `backend`."""
    tag = size_tag(args)
    if backend == "sqlite":
        return f"sqlite:///{workdir / f'retier_{tag}.db'}"
    return pg_schema_url(pg_schema(args))


def touched_ids(customers: int, *, first: int = 1) -> list[int]:
    """Ids spread over the id range from `first`, as fresh orders would be."""
    return list(range(first, customers + 1, max(customers // TOUCHED, 1)))[:TOUCHED]


@contextlib.contextmanager
def workdir(args: argparse.Namespace, prefix: str) -> Iterator[Path]:
    """Yield the bench's working directory (a temporary one without --workdir).

    Drops the PostgreSQL schema at the end unless --keep.
    """
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        path = Path(tmp.name)
    else:
        path = args.workdir
        path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        if not args.keep and args.backend in ("postgresql", "both"):
            drop_postgres(args)
        if tmp is not None:
            tmp.cleanup()


def run_child(module: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run `python -m module --child SPEC` in a fresh interpreter; return its last JSON line."""
    out = subprocess.run(
        [sys.executable, "-m", module, "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def prepare(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Generate and load the data unless a kept copy of this size exists; return timings."""
    if getattr(args, "generate", "duckdb") == "sql":
        return prepare_sql(args)
    tag = size_tag(args)
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
            db = Database(pg_schema_url(schema))
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
    for backend in backends:  # a copy kept from before a migration: new tables start empty
        db = Database(backend_url(args, workdir, backend))
        upgrade_to_head(db.engine)
        db.dispose()
    return timings


def prepare_sql(args: argparse.Namespace) -> dict[str, Any]:
    """Draw the data inside PostgreSQL unless a finished copy of this size exists."""
    from bench.retier_sql import generate as generate_sql

    if args.backend != "postgresql":
        raise SystemExit(
            "--generate sql draws the data inside PostgreSQL: use --backend postgresql"
        )
    schema = pg_schema(args)
    timings: dict[str, Any] = {}
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        done = conn.execute(
            text(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = :s"
                " AND table_name = 'bench_loaded'"
            ),
            {"s": schema},
        ).first()
        if done is None:  # absent, or cut short: start again
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    db = Database(pg_schema_url(schema))
    if done is None:
        t0 = time.perf_counter()
        upgrade_to_head(db.engine)
        timings["migrate_s"] = round(time.perf_counter() - t0, 1)
        steps = generate_sql(
            _pg_dsn(),
            schema,
            customers=args.customers,
            orders=args.orders,
            events=args.events,
            as_of=AS_OF,
            log=lambda line: print(f"  sql {line}", flush=True),
        )
        timings["generate_sql_s"] = round(time.perf_counter() - t0, 1)
        timings.update({f"  {k}": v for k, v in steps.items()})
    upgrade_to_head(db.engine)  # a copy kept from before a migration: new tables start empty
    db.dispose()
    return timings


def drop_postgres(args: argparse.Namespace) -> None:
    """Drop the bench's PostgreSQL schema."""
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{pg_schema(args)}" CASCADE'))
    admin.dispose()
