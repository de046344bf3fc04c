"""Time `explain_customer` (what `tagbot customer show` and GET /api/customers/ID run).

    python -m bench.explain [--customers 100000] [--orders 1000000] [--events 500000]
                            [--backend sqlite|postgresql|both] [--workdir DIR] [--keep]

On bench/retier.py's data (loaded once per size), in one child process per backend: a
full re-tier of the default dimensions records every tier, then `explain_customer` runs
for customers spread over the id range — first as a one-shot command does, then with the
engine a serving process keeps — and every explained tier is checked against the stored
one (same as_of: the explanation must give what the run gave).
"""

from __future__ import annotations

import json
import resource
import time
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

SAMPLE = 5


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from bot.rules import load_dimensions
    from bot.tiering.defaults import default_tiering
    from bot.tiering.run import retier
    from bot.tiering.why import ExplainEngine, explain_customer

    db = Database(spec["url"])
    dims = load_dimensions(default_tiering().dimensions)
    t0 = time.perf_counter()
    retier(db, dims, tz=TZ, as_of=AS_OF)
    out: dict[str, Any] = {"retier_s": round(time.perf_counter() - t0, 2)}
    step = max(spec["customers"] // SAMPLE, 1)
    ids = list(range(1, spec["customers"] + 1, step))[:SAMPLE]
    mismatches = 0
    for name, kept in (("one-shot", None), ("kept engine", ExplainEngine())):
        took = []
        for cid in ids:
            t = time.perf_counter()
            views = explain_customer(db, dims, customer_id=cid, tz=TZ, as_of=AS_OF, engine=kept)
            took.append(round(time.perf_counter() - t, 3))
            mismatches += sum(v.now != v.tier for v in views)
        if kept is not None:
            kept.close()
        out[name] = took
    out["mismatches"] = mismatches
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, customers=100_000, orders=1_000_000, events=500_000).parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print(f"# explain bench: {args.customers:,} customers, {args.orders:,} orders")
    with workdir(args, "explain-bench-") as work:
        for key, value in prepare(args, work).items():
            print(f"{key:<22} {value:>8} s")
        for backend in backends(args):
            spec = {"customers": args.customers, "url": backend_url(args, work, backend)}
            r = run_child("bench.explain", spec)
            print(f"{backend:<11} full re-tier {r['retier_s']} s, peak RSS {r['peak_rss_mb']} MB")
            for name in ("one-shot", "kept engine"):
                print(f"{backend:<11} explain {name:<12} s per customer: {r[name]}")
            print(f"{backend:<11} explained tiers differing from the run's: {r['mismatches']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
