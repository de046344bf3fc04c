"""Predictive metrics: BG/NBD and Gamma-Gamma fitted over every buyer, then each scored.

A purchase is a local day with a paid order (two orders on one day are one purchase), so
x = purchase days − 1, t_x = days from the first to the last, T = days since the first,
all counted from the as_of local day like every other metric. The spend of a repeat
purchase is that day's paid amount; m is their mean (yuan).

A full run fits both models on all buyers (`fit`). The model travels with the engine's
rank population (bot.tiering.population): a touched run or an explanation uses the kept
one's, or the model of the full run whose population it loads (`for_run`: "the night's
parameters"), or fits anew when it builds a population (no full run for the day). Where a
model does not apply the metric is missing, never 0: customers without a paid order;
expected_aov below two purchase days; every metric when the fit failed, with the reason in
`Model`.
clv_365d = expected purchases in 365 days × expected spend per purchase (the customer's
expected_aov, or the buyers' mean from Gamma-Gamma for a single purchase). clv_percentile
ranks it among the 365-day window's buyers, like spend_percentile_365d (the rank
population holds each one's clv_365d).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np
from sqlalchemy import select

from bot.db import Database
from bot.db.models import RetierRun
from bot.tiering import predictive
from bot.tiering.predictive import Array, BgNbd, FitError, GammaGamma

log = logging.getLogger(__name__)

HORIZON_ORDERS = 90.0
HORIZON_CLV = 365.0

# `bg` from the staged orders `o`: one row per buyer with the models' inputs.
STAGE = """
    CREATE TABLE bg AS
    SELECT cid,
           CAST(count(*) - 1 AS DOUBLE) AS x,
           CAST(max(ago) - min(ago) AS DOUBLE) AS t_x,
           CAST(max(ago) AS DOUBLE) AS age,
           coalesce((sum(fen) - arg_max(fen, ago)) / 100.0 / nullif(count(*) - 1, 0), 0.0) AS m
    FROM (SELECT cid, ago, sum(fen) AS fen FROM o GROUP BY cid, ago)
    GROUP BY cid
"""

COLUMNS: dict[str, str] = {
    "p_alive": "pred.p_alive",
    "expected_orders_90d": "pred.expected_orders_90d",
    "expected_aov": "pred.expected_aov",
    "clv_365d": "pred.clv_365d",
    "clv_percentile": "CASE WHEN pred.clv_365d IS NOT NULL THEN 100.0 * ranks.k_c / ranks.n_c END",
}
NAMES = ("p_alive", "expected_orders_90d", "expected_aov", "clv_365d")  # `pred`'s columns
INPUTS = ("orders_total", "days_since_first_order", "days_since_last_order")


@dataclass
class Model:
    """The fitted models of one full run, or why they are missing."""

    bgnbd: BgNbd | None = None
    gamma_gamma: GammaGamma | None = None
    errors: list[str] = field(default_factory=list)  # Chinese, for operators
    buyers: int = 0
    fit_seconds: float = 0.0
    score_seconds: float = 0.0
    run_id: int | None = None  # the full run that fitted it (None: not recorded)

    def to_json(self) -> str:
        """Return the model as stored in `retier_runs.predictive`."""
        return json.dumps(
            {k: v for k, v in asdict(self).items() if k != "run_id"}, ensure_ascii=False
        )

    @classmethod
    def from_json(cls, text: str, *, run_id: int | None) -> Model:
        """Return the model a run stored."""
        raw: dict[str, Any] = json.loads(text)
        bg, gg = raw.pop("bgnbd"), raw.pop("gamma_gamma")
        return cls(
            bgnbd=BgNbd(**bg) if bg else None,
            gamma_gamma=GammaGamma(**gg) if gg else None,
            run_id=run_id,
            **raw,
        )

    def summary(self, *, timing: bool = True) -> str:
        """Return one line for `tagbot retier` and `customer show` (Chinese).

        `timing=False` leaves the times out: an explanation is the same whoever computes it.
        """
        parts: list[str] = []
        if (m := self.bgnbd) is not None:
            parts.append(
                f"BG/NBD r={m.r:.4g} α={m.alpha:.4g} a={m.a:.4g} b={m.b:.4g}"
                f"（对数似然 {m.log_likelihood:.1f}，{m.customers} 位客户）"
            )
        if (g := self.gamma_gamma) is not None:
            parts.append(
                f"Gamma-Gamma p={g.p:.4g} q={g.q:.4g} γ={g.gamma:.4g}"
                f"（对数似然 {g.log_likelihood:.1f}，{g.customers} 位复购客户）"
            )
        parts.extend(f"未拟合：{e}" for e in self.errors)
        source = f"全量分层 #{self.run_id}，" if self.run_id is not None else ""
        took = f"拟合 {self.fit_seconds:.2f}s，评分 {self.score_seconds:.2f}s" if timing else ""
        tail = f"（{source}{took}）".replace("，）", "）").replace("（）", "")
        return "；".join(parts) + tail


def inputs(cur: duckdb.DuckDBPyConnection) -> dict[str, Array]:
    """Return `bg`'s columns as arrays (cid, x, t_x, age, m)."""
    got = cur.execute("SELECT cid, x, t_x, age, m FROM bg ORDER BY cid").fetchnumpy()
    return {k: np.asarray(v) for k, v in got.items()}


def fit(cur: duckdb.DuckDBPyConnection) -> Model:
    """Fit both models over every buyer in `bg` (rows grouped in DuckDB, weighted)."""
    t0 = time.perf_counter()
    model = Model()
    row = cur.execute("SELECT count(*) FROM bg").fetchone()
    model.buyers = int(row[0]) if row else 0
    # ORDER BY: DuckDB's parallel GROUP BY hands rows back in any order, and the fit's sums
    # (so its last digits, so the optimiser's path) follow the order: the same buyers must
    # give the same parameters in every run and every process.
    g = cur.execute("SELECT x, t_x, age, count(*) FROM bg GROUP BY ALL ORDER BY ALL").fetchnumpy()
    try:
        model.bgnbd = predictive.fit_bgnbd(g["x"], g["t_x"], g["age"], weights=g["count_star()"])
    except FitError as exc:
        log.warning("predictive: BG/NBD not fitted over %d buyers: %s", model.buyers, exc.english)
        model.errors.append(f"BG/NBD：{exc}")
    if model.bgnbd is not None:
        s = cur.execute(
            "SELECT x, m, count(*) FROM bg WHERE x > 0 GROUP BY ALL ORDER BY ALL"
        ).fetchnumpy()
        try:
            model.gamma_gamma = predictive.fit_gamma_gamma(
                s["x"], s["m"], weights=s["count_star()"]
            )
        except FitError as exc:
            log.warning("predictive: Gamma-Gamma not fitted: %s", exc.english)
            model.errors.append(f"Gamma-Gamma：{exc}")
    model.fit_seconds = time.perf_counter() - t0
    return model


def score(
    cur: duckdb.DuckDBPyConnection, model: Model | None, *, timed: bool = False
) -> dict[str, Array]:
    """Create `pred` (cid and the four per-customer metrics) from `bg`; return its arrays.

    `timed`: record the time in `model.score_seconds` (the run that fitted it scores all).
    """
    t0 = time.perf_counter()
    data = inputs(cur)
    n = data["cid"].size
    nan = np.full(n, np.nan)
    out: dict[str, Array] = {"cid": data["cid"], **dict.fromkeys(NAMES, nan)}
    if model is not None and (m := model.bgnbd) is not None:
        x, t_x, age = data["x"], data["t_x"], data["age"]
        out["p_alive"] = predictive.p_alive(m, x, t_x, age)
        out["expected_orders_90d"] = predictive.expected_purchases(m, HORIZON_ORDERS, x, t_x, age)
        if (g := model.gamma_gamma) is not None:
            aov = predictive.expected_spend(g, x, data["m"])
            out["expected_aov"] = np.where(x > 0, aov, np.nan)
            per_order = np.where(x > 0, aov, predictive.mean_spend(g))
            clv = predictive.expected_purchases(m, HORIZON_CLV, x, t_x, age) * per_order
            out["clv_365d"] = clv
    cur.register("pred_arrays", out)
    try:
        cols = ", ".join(f"CASE WHEN isnan({c}) THEN NULL ELSE {c} END AS {c}" for c in NAMES)
        cur.execute(f"CREATE TABLE pred AS SELECT cid, {cols} FROM pred_arrays")
    finally:
        cur.unregister("pred_arrays")
    if model is not None and timed:
        model.score_seconds = time.perf_counter() - t0
    return out


def for_run(db: Database, run_id: int) -> Model | None:
    """Return the model a recorded full run stored (None: it has none)."""
    with db.read() as session:
        text = session.scalar(select(RetierRun.predictive).where(RetierRun.id == run_id))
    return None if text is None else Model.from_json(text, run_id=run_id)
