"""Measure `tagbot import orders` on a generated CSV: rows per second and total seconds.

    python -m bench.import_orders [--rows 1000000] [--database-url URL] [--repeat N]

Generates the file and a fresh SQLite database in a temporary directory (or, with a
PostgreSQL URL, a fresh schema `bench_import_<hex>` dropped afterwards), then runs the
real CLI path (`tagbot.cli.main`), twice: the first run inserts every row, the second is
the idempotent re-import that must change nothing. `--repeat N` does it all N times on
fresh databases and prints the median of each.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.ingest.rows import ORDER_COLUMNS
from tagbot.cli import main

CONFIG = """
[wecom]
corp_id = "wwbench"
secret = "bench-secret"
agent_id = 1000002
token = "benchToken"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
[database]
url = "{url}"
[server]
admin_token = "bench-admin-token-0123456789"
[app]
log_level = "WARNING"
"""


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Write `rows` orders for about rows/10 customers, ~3% refunded."""
    rnd = random.Random(seed)
    start = datetime(2025, 1, 1)
    customers = max(rows // 10, 1)
    categories = ["服饰", "美妆", "食品", "家居", "数码"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ORDER_COLUMNS)
        for i in range(rows):
            c = rnd.randrange(customers)
            writer.writerow(
                [
                    f"O{i:09d}",
                    f"wm{c:08d}" if c % 4 else "",
                    f"un{c:08d}",
                    f"{rnd.randrange(100, 200000) / 100:.2f}",
                    (start + timedelta(seconds=rnd.randrange(365 * 86400))).isoformat(" "),
                    "refunded" if rnd.random() < 0.03 else "paid",
                    rnd.choice(categories),
                    "1" if rnd.random() < 0.1 else "0",
                ]
            )


def cpu_model() -> str:
    """Name the CPU from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@contextmanager
def fresh_database(work: Path, database_url: str | None) -> Iterator[str]:
    """A migrated, empty database: a SQLite file in `work`, or a new PostgreSQL schema."""
    if database_url is None or not database_url.startswith("postgresql"):
        url = database_url or f"sqlite:///{work / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        db = Database(url)
        upgrade_to_head(db.engine)
        db.dispose()
        yield url
        return
    schema = f"bench_import_{uuid.uuid4().hex[:10]}"
    admin = Database(database_url)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in database_url else "?"
    url = f"{database_url}{sep}options=-csearch_path%3D{schema}"
    try:
        db = Database(url)
        upgrade_to_head(db.engine)
        db.dispose()
        yield url
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(rows: int, database_url: str | None, repeat: int = 1) -> None:
    with tempfile.TemporaryDirectory(prefix="tagbot-bench-") as tmp:
        work = Path(tmp)
        data = work / "orders.csv"
        t0 = time.perf_counter()
        generate(data, rows)
        size_mb = data.stat().st_size / 1e6
        print(f"generated {rows:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f}s")
        kind = (database_url or "sqlite").split(":")[0]
        print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; database {kind}")
        labels = ("first import", "re-import (no changes)")
        times: dict[str, list[float]] = {label: [] for label in labels}
        cpus: dict[str, list[float]] = {label: [] for label in labels}
        for _ in range(repeat):
            with fresh_database(work, database_url) as url:
                config = work / "config.toml"
                config.write_text(CONFIG.format(url=url), encoding="utf-8")
                for label in labels:
                    load = os.getloadavg()[0]
                    t0, cpu0 = time.perf_counter(), time.process_time()
                    code = main(["--config", str(config), "import", "orders", str(data)])
                    seconds = time.perf_counter() - t0
                    cpu = time.process_time() - cpu0
                    if code != 0:
                        raise SystemExit(f"import failed with exit code {code}")
                    times[label].append(seconds)
                    cpus[label].append(cpu)
                    # CPU is this process's (the database server's is not in it): on a
                    # loaded machine it moves less than the wall clock does.
                    print(
                        f"{label}: {seconds:.1f}s, {rows / seconds:,.0f} rows/s,"
                        f" CPU {cpu:.1f}s (load average {load:.2f})"
                    )
        if repeat > 1:
            for label in labels:
                median = statistics.median(times[label])
                cpu = statistics.median(cpus[label])
                print(f"median {label}: {median:.1f}s, {rows / median:,.0f} rows/s, CPU {cpu:.1f}s")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--repeat", type=int, default=1, help="fresh databases, median")
    args = parser.parse_args()
    run(args.rows, args.database_url, args.repeat)


if __name__ == "__main__":
    cli()
