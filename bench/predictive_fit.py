"""Time BG/NBD + Gamma-Gamma fitting and scoring for N synthetic buyers, apart from the run.

    python -m bench.predictive_fit [--buyers 1000000]

Draws buyers (days, ages up to three years) from known parameters, stages them in DuckDB
as the engine's `bg` table, then times `metrics_predictive.fit` and `score` (wall and
process CPU) the way a full re-tier calls them.
"""

from __future__ import annotations

import argparse
import json
import time

import duckdb
import numpy as np

from bench.btyd import simulate_bgnbd
from bot.tiering import metrics_predictive


def simulate(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Return bg's columns for n buyers drawn from BG/NBD (r=0.6, α=30, a=0.8, b=3)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(0, 1095, size=n).astype(np.float64)
    x, t_x, age = simulate_bgnbd(0.6, 30.0, 0.8, 3.0, age, seed=seed + 1)
    m = np.where(x > 0, rng.gamma(4.0, 50.0, size=n), 0.0).round(2)
    # Whole days, as the engine's bg table holds them.
    return {"cid": np.arange(n, dtype=np.int64), "x": x, "t_x": np.floor(t_x), "age": age, "m": m}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--buyers", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    data = simulate(args.buyers)
    con = duckdb.connect(config={"threads": 2})
    con.register("bg_arrays", data)
    con.execute("CREATE TABLE bg AS SELECT * FROM bg_arrays")
    con.unregister("bg_arrays")
    w0, c0 = time.perf_counter(), time.process_time()
    model = metrics_predictive.fit(con)
    w1, c1 = time.perf_counter(), time.process_time()
    metrics_predictive.score(con, model, timed=True)
    w2, c2 = time.perf_counter(), time.process_time()
    row = con.execute("SELECT count(*), count(p_alive), avg(p_alive) FROM pred").fetchone()
    print(
        json.dumps(
            {
                "buyers": args.buyers,
                "repeat_buyers": int(np.count_nonzero(data["x"] > 0)),
                "fit": {"wall_s": round(w1 - w0, 2), "cpu_s": round(c1 - c0, 2)},
                "fit_bgnbd_wall_s": round(model.bgnbd.seconds, 2) if model.bgnbd else None,
                "fit_gamma_gamma_wall_s": (
                    round(model.gamma_gamma.seconds, 2) if model.gamma_gamma else None
                ),
                "score": {"wall_s": round(w2 - w1, 2), "cpu_s": round(c2 - c1, 2)},
                "summary": model.summary(),
                "scored": row,
            },
            ensure_ascii=False,
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
