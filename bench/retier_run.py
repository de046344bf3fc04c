"""Time the whole re-tier run (metrics, every default dimension, diff, history writes).

    python -m bench.retier_run [--customers 100000] [--orders 1000000] [--events 500000]
                               [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]
                               [--generate duckdb|sql] [--no-push] [--nightly-only]

Reuses bench/retier.py's data and loading. In one child process per backend (peak RSS its
own) it runs: the first run (every assignment new), the nightly rerun a day later (few
moves), a touched re-tier of 1,000 customers, and one in a new engine (the first touched
batch of the day in a process holding no rank population); each with wall time and
transitions, and for full runs the predictive models' fit and scoring times apart (inside
the metrics step). `--generate sql` draws the data inside PostgreSQL (bench/retier_sql.py).
Then, unless --no-push, the push hand-off: the first tier diff (every relation new, marked sent as the
outbox would), and a touched re-tier of 1,000 customers who each just paid a VIP order,
timed with its diff hand-off (`touched+push`: what the fresh-data worker does per batch),
and for comparison a full diff over every relation (what that hand-off cost before).
`--nightly-only` reruns just the nightly (two days on) over a kept data set that already
holds a run's tiers: the nightly's figure again without the first run and the push.
Every run also reports the process's CPU seconds (DuckDB's threads included, PostgreSQL's
own work not): on a shared machine the wall time says more about the neighbours.
"""

from __future__ import annotations

import json
import resource
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from bench.retier_common import (
    AS_OF,
    TZ,
    backend_url,
    backends,
    check,
    parser,
    prepare,
    run_child,
    touched_ids,
    workdir,
)
from bench.tier_diff import insert_tier_tags, mark_sent
from bot.db import Database
from bot.tiering.defaults import default_tiering

VIP_ORDER = Decimal("8000.00")  # above 高价值's threshold: every touched customer moves


def _tier_tags(db: Database, dims: list[Any]) -> None:
    """Put the dimensions' tier tags in the catalogue as if WeCom had made them."""
    with db.write() as s:
        insert_tier_tags(s, dims, prefix="b")


def _vip_orders(db: Database, ids: list[int], paid_at: datetime) -> None:
    from sqlalchemy import insert

    from bot.db.models import Order

    with db.read() as s:  # the loaded rows carry their ids: PostgreSQL's sequence never moved
        top = s.execute(text("SELECT coalesce(max(id), 0) FROM orders")).scalar_one()
    rows = [
        {
            "id": top + n + 1,
            "order_id": f"bench-vip-{c}",
            "customer_id": c,
            "amount": VIP_ORDER,
            "paid_at": paid_at,
            "status": "paid",
        }
        for n, c in enumerate(ids)
    ]
    with db.write() as s:
        s.execute(insert(Order), rows)


def _settle(db: Database) -> None:
    """Vacuum and checkpoint what the bulk mark wrote (PostgreSQL; SQLite has nothing to do)."""
    if db.is_sqlite:
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("relation_tags", "outbox_operations", "outbox_tag_changes", "orders"):
            conn.execute(text(f"VACUUM (ANALYZE) {table}"))
        conn.execute(text("CHECKPOINT"))


def _touched_push(
    db: Database, dims: Any, tdims: Any, engine: Any, ids: list[int], as_of: datetime
) -> dict[str, Any]:
    """Give `ids` a VIP order, re-tier them and diff their relations; return the figures."""
    from bot.tags import diff
    from bot.tiering.run import retier

    _vip_orders(db, ids, as_of - timedelta(hours=1))
    t0 = time.perf_counter()
    report = retier(db, dims, tz=TZ, as_of=as_of, customer_ids=ids, engine=engine)
    t1 = time.perf_counter()
    queued = diff.enqueue_tier_changes(db=db, dims=tdims, customer_ids=ids)
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "customers": report.customers,
        "transitions": report.transitions,
        "steps": {
            **{k: round(v, 2) for k, v in report.seconds.items()},
            "retier": round(t1 - t0, 2),
            "diff": round(queued.seconds, 2),
            "diff_relations": queued.relations,
            "queued": queued.changed,
        },
    }


def _predictive(report: Any) -> dict[str, Any] | None:
    """The BG/NBD + Gamma-Gamma part of a run's metrics step: fit and scoring, apart."""
    m = report.model
    if m is None:
        return None
    return {
        "buyers": m.buyers,
        "fit_s": round(m.fit_seconds, 2),
        "score_s": round(m.score_seconds, 2),
        "errors": m.errors,
        "model": m.summary(timing=False),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_retier(
    db: Database, dims: Any, as_of: datetime, ids: list[int] | None, engine: Any
) -> dict[str, Any]:
    """One re-tier with its wall and CPU seconds, steps and the models' part."""
    from bot.tiering.run import retier

    t0, c0 = time.perf_counter(), _cpu()
    report = retier(db, dims, tz=TZ, as_of=as_of, customer_ids=ids, engine=engine)
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "cpu_s": round(_cpu() - c0, 2),
        "customers": report.customers,
        "transitions": report.transitions,
        "steps": {k: round(v, 2) for k, v in report.seconds.items()},
        "predictive": _predictive(report),
    }


def _nightly_only(db: Database) -> dict[str, Any]:
    """Rerun the nightly two days on, over tiers a previous run of this data left."""
    from bot.rules import load_dimensions
    from bot.tiering.engine import MetricsEngine

    dims = load_dimensions(default_tiering().dimensions)
    with MetricsEngine(db, tz=TZ) as engine:
        run = _timed_retier(db, dims, AS_OF + timedelta(days=2), None, engine)
    rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"nightly": run, "peak_rss_mb": rss}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the three re-tiers in this process and return their figures."""
    from bot.rules import load_dimensions
    from bot.tags import diff, tier_tags
    from bot.tiering.defaults import default_tiering
    from bot.tiering.engine import MetricsEngine

    db, n = Database(spec["url"]), spec["customers"]
    if spec.get("nightly_only"):
        return _nightly_only(db)
    with db.engine.begin() as conn:  # the bench's data may hold a previous run's tiers
        for table in (
            "tier_transitions",
            "tier_assignments",
            "retier_runs",
            "outbox_tag_changes",
            "outbox_operations",
            "relation_tags",
            "tags",
            "tag_groups",
        ):
            conn.exec_driver_sql(f"DELETE FROM {table}")
        conn.execute(text("DELETE FROM orders WHERE order_id LIKE :p"), {"p": "bench-vip-%"})
    dims = load_dimensions(default_tiering().dimensions)
    out: dict[str, Any] = {}
    engine = MetricsEngine(db, tz=TZ)
    t_start = time.perf_counter()
    for name, as_of, ids in (
        ("first", AS_OF, None),
        ("nightly", AS_OF + timedelta(days=1), None),
        ("touched", AS_OF + timedelta(days=1), touched_ids(n)),
    ):
        out[name] = _timed_retier(db, dims, as_of, ids, engine)
    # The first touched batch of the day in a process that holds no population (a restarted
    # worker): what it costs to get the rank basis.
    ids = touched_ids(n, first=4)
    with MetricsEngine(db, tz=TZ) as new_engine:
        run = _timed_retier(db, dims, AS_OF + timedelta(days=1), ids, new_engine)
        out["touched, new engine"] = {k: v for k, v in run.items() if k != "predictive"}
    out["retier_s"] = round(time.perf_counter() - t_start, 1)
    if not spec.get("push", True):
        engine.close()
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return out
    with db.read() as session:
        tdims = tier_tags.dimensions(default_tiering(), session=session)
    _tier_tags(db, tdims)
    first = diff.enqueue_tier_changes(db=db, dims=tdims)
    out["push_first"] = {"wall_s": round(first.seconds, 2), "relations": first.changed}
    mark_sent(db)
    as_of = AS_OF + timedelta(days=1)
    out["touched+push"] = _touched_push(db, dims, tdims, engine, touched_ids(n, first=2), as_of)
    # The same for other customers once the bulk mark is vacuumed and checkpointed, as
    # autovacuum leaves it long before the first push has drained in production.
    _settle(db)
    settled = _touched_push(db, dims, tdims, engine, touched_ids(n, first=3), as_of)
    out["touched+push, settled"] = settled
    # What the hand-off cost before it was limited to the run's customers: every relation.
    everything = diff.enqueue_tier_changes(db=db, dims=tdims)
    out["full_diff_after_touched"] = {
        "wall_s": round(everything.seconds, 2),
        "relations": everything.relations,
        "queued": everything.changed,
    }
    engine.close()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, customers=100_000, orders=1_000_000, events=500_000)
    p.add_argument("--no-push", action="store_true", help="the re-tiers only, no push hand-off")
    p.add_argument(
        "--nightly-only",
        action="store_true",
        help="rerun only the nightly over kept data that holds a previous run's tiers",
    )
    args = check(p, p.parse_args(argv))
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(
        f"# re-tier run bench: {args.customers:,} customers, {args.orders:,} orders, "
        f"{args.events:,} events, {len(default_tiering().dimensions)} default dimensions"
    )
    with workdir(args, "retier-run-bench-") as work:
        for key, value in prepare(args, work).items():
            print(f"{key:<22} {value:>8} s")
        for backend in backends(args):
            spec = {
                "customers": args.customers,
                "url": backend_url(args, work, backend),
                "push": not args.no_push,
                "nightly_only": args.nightly_only,
            }
            r = run_child("bench.retier_run", spec)
            for run in (
                "first",
                "nightly",
                "touched",
                "touched, new engine",
                "touched+push",
                "touched+push, settled",
            ):
                if run not in r:
                    continue
                x = r[run]
                print(
                    f"{backend:<11} {run:<21} customers {x['customers']:>9,}  transitions "
                    f"{x['transitions']:>9,}  wall {x['wall_s']:>7.2f} s"
                    f"  cpu {x.get('cpu_s', 0):>7.2f} s  {x['steps']}"
                )
                if x.get("predictive"):
                    print(f"{backend:<11} {run:<21} BG/NBD + Gamma-Gamma {x['predictive']}")
            if args.no_push or args.nightly_only:
                print(f"{backend:<11} peak RSS {r['peak_rss_mb']} MB")
                continue
            print(
                f"{backend:<11} push diff, first (all relations new) {r['push_first']['wall_s']}"
                f" s, {r['push_first']['relations']:,} relations"
            )
            full = r["full_diff_after_touched"]
            print(
                f"{backend:<11} a full diff instead (the hand-off before) {full['wall_s']} s,"
                f" {full['relations']:,} relations read, {full['queued']:,} queued"
            )
            print(f"{backend:<11} peak RSS {r['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
