"""Predictive metrics in the engine: fitted by a full run, reused by touched runs, explained.

The engine's numbers are checked against the models computed here from the orders written
(purchase days counted in Python), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from bench.btyd import simulate_bgnbd
from bot.db import Database
from bot.db.models import RetierRun
from bot.rules import load_dimensions
from bot.tiering import predictive as pred
from bot.tiering.defaults import default_tiering
from bot.tiering.engine import MetricsEngine, compute_metrics
from bot.tiering.run import retier
from tagbot.cli import main
from tests.support.configs import write_config
from tests.tier_metrics_factory import AS_OF, TZ, customer, local, order, relation, staff

PREDICTIVE = ("p_alive", "expected_orders_90d", "expected_aov", "clv_365d", "clv_percentile")


def _histories(n: int, seed: int) -> list[list[tuple[int, int]]]:
    """Purchase days (days ago) and yuan per customer, drawn from known BG/NBD parameters."""
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 700, size=n).astype(np.float64)
    x, t_x, _ = simulate_bgnbd(0.6, 30.0, 0.8, 3.0, age, seed=seed)
    out = []
    for i in range(n):
        first, last = int(age[i]), int(age[i] - round(t_x[i]))
        inner = max(0, min(int(x[i]) - 1, first - last - 1))
        days = {first, last} | {
            int(d) for d in rng.choice(np.arange(last + 1, first), size=inner, replace=False)
        }
        spend = float(rng.gamma(4.0, 50.0))
        out.append([(d, round(spend * rng.uniform(0.7, 1.3))) for d in sorted(days)])
    return out


def _seed(db: Database, histories: list[list[tuple[int, int]]]) -> dict[str, int]:
    ids = {}
    with db.write() as s:
        for i, days in enumerate(histories):
            c = customer(s, f"wm_{i}")
            ids[c.external_userid] = c.id
            for d, yuan in days:
                order(s, c, yuan, local(d))
        ids["wm_none"] = customer(s, "wm_none").id  # no paid order
        c = customer(s, "wm_sameday")  # two orders, one purchase day
        ids["wm_sameday"] = c.id
        order(s, c, 100, local(10, 9))
        order(s, c, 300, local(10, 18))
    return ids


def _expected(histories: list[list[tuple[int, int]]]) -> dict[str, np.ndarray]:
    """The models fitted and scored from the histories, independently of the engine."""
    hs = [*histories, [(10, 400)]]  # wm_sameday: one purchase day of 400
    x = np.array([len(h) - 1 for h in hs], dtype=float)
    age = np.array([max(d for d, _ in h) for h in hs], dtype=float)
    t_x = age - np.array([min(d for d, _ in h) for h in hs], dtype=float)
    m = np.array(
        [sum(y for _, y in h[:-1]) / (len(h) - 1) if len(h) > 1 else 0.0 for h in hs]
    )  # sorted by days ago, so the last is the first purchase
    bg = pred.fit_bgnbd(x, t_x, age)
    gg = pred.fit_gamma_gamma(x, m)
    aov = pred.expected_spend(gg, x, m)
    clv = pred.expected_purchases(bg, 365.0, x, t_x, age) * np.where(
        x > 0, aov, pred.mean_spend(gg)
    )
    window = age - t_x < 365  # the 365-day window's buyers rank the clv
    pct = np.array([100.0 * np.sum(clv[window] <= v) / window.sum() for v in clv])
    return {
        "r": np.array([bg.r, bg.alpha, bg.a, bg.b]),
        "g": np.array([gg.p, gg.q, gg.gamma]),
        "p_alive": pred.p_alive(bg, x, t_x, age),
        "expected_orders_90d": pred.expected_purchases(bg, 90.0, x, t_x, age),
        "expected_aov": np.where(x > 0, aov, np.nan),
        "clv_365d": clv,
        "clv_percentile": np.where(window, pct, np.nan),
    }


def _column(rows: dict[int, dict[str, object]], ids: list[int], name: str) -> np.ndarray:
    return np.array([np.nan if rows[i][name] is None else rows[i][name] for i in ids], float)


def test_full_run_fits_and_scores_every_buyer(db: Database) -> None:
    histories = _histories(160, seed=7)
    ids = _seed(db, histories)
    want = _expected(histories)
    order_ids = [ids[f"wm_{i}"] for i in range(len(histories))] + [ids["wm_sameday"]]
    with compute_metrics(db, as_of=AS_OF, tz=TZ) as frame:
        model = frame.model
        rows = frame.rows()
    assert model is not None
    assert model.errors == []
    assert model.bgnbd is not None
    assert model.gamma_gamma is not None
    assert model.buyers == len(order_ids)
    got = [model.bgnbd.r, model.bgnbd.alpha, model.bgnbd.a, model.bgnbd.b]
    np.testing.assert_allclose(got, want["r"], rtol=1e-4)
    g = model.gamma_gamma
    np.testing.assert_allclose([g.p, g.q, g.gamma], want["g"], rtol=1e-4)
    for name in PREDICTIVE:
        np.testing.assert_allclose(
            _column(rows, order_ids, name), want[name], rtol=1e-3, err_msg=name
        )
    # Missing, not 0, where the model does not apply.
    assert all(rows[ids["wm_none"]][n] is None for n in PREDICTIVE)
    same = rows[ids["wm_sameday"]]
    assert same["p_alive"] == 1.0
    assert same["expected_aov"] is None
    assert same["clv_365d"] is not None
    assert same["clv_365d"] > 0
    p = _column(rows, order_ids, "p_alive")
    assert np.all((p > 0) & (p <= 1))
    assert np.any(p < 0.3)
    assert np.any(p > 0.9)


def test_touched_runs_reuse_the_nights_parameters(db: Database) -> None:
    ids = _seed(db, _histories(120, seed=3))
    dims = load_dimensions(default_tiering().dimensions)
    report = retier(db, dims, tz=TZ, as_of=AS_OF)
    assert report.model is not None
    assert report.model.run_id == report.run_id
    with db.read() as s:
        stored = json.loads(s.scalar(select(RetierRun.predictive)) or "null")
    assert report.model.bgnbd is not None
    assert stored["bgnbd"]["r"] == report.model.bgnbd.r
    assert stored["bgnbd"]["log_likelihood"] < 0
    assert stored["fit_seconds"] > 0
    assert stored["gamma_gamma"]["customers"] > 20
    some = [ids["wm_1"], ids["wm_5"], ids["wm_sameday"], ids["wm_none"]]
    with compute_metrics(db, as_of=AS_OF, tz=TZ) as full:
        expected = full.rows(some)
    # A new process (the touched re-tier, an explanation) takes the stored run's model.
    with MetricsEngine(db, tz=TZ) as engine, engine.compute(as_of=AS_OF, customer_ids=some) as part:
        assert part.model is not None
        assert part.model.run_id == report.run_id
        assert part.rows() == expected
    assert report.model.summary().startswith("BG/NBD r=")


def test_too_few_repeat_buyers_leaves_the_metrics_missing_and_says_why(db: Database) -> None:
    with db.write() as s:
        for i in range(30):
            c = customer(s, f"wm_{i}")
            order(s, c, 100, local(5 + i))
            if i < 3:
                order(s, c, 100, local(2))
    with compute_metrics(db, as_of=AS_OF, tz=TZ) as frame:
        model = frame.model
        rows = frame.rows()
    assert model is not None
    assert model.bgnbd is None
    assert model.errors == ["BG/NBD：复购客户只有 3 位（至少 20 位才能拟合）"]
    assert "未拟合：BG/NBD：复购客户只有 3 位" in model.summary()
    assert all(r[n] is None for r in rows.values() for n in PREDICTIVE)


def test_no_dropout_leaves_the_metrics_missing_and_names_the_bound(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody drops out (ever more orders lately): the fit runs off to a → 0, said so."""
    rng = np.random.default_rng(1)
    with db.write() as s:
        for i in range(200):
            c = customer(s, f"wm_{i}")
            k = 1 + rng.poisson(8) if rng.random() < 0.4 else 1
            for d in np.unique(np.floor(rng.random(k) ** 1.5 * 700)):
                order(s, c, 100, local(int(d)))
    with compute_metrics(db, as_of=AS_OF, tz=TZ) as frame:
        model = frame.model
        rows = frame.rows()
    assert model is not None
    assert model.bgnbd is None
    assert len(model.errors) == 1
    assert model.errors[0].startswith("BG/NBD：BG/NBD 拟合停在参数边界上：a → 0（a/(a+b) = ")
    assert model.errors[0].endswith(
        "数据中看不到流失：BG/NBD 退化为 NBD（客户永不流失），每位客户的 p_alive 都会是 1"
    )
    assert "未拟合：BG/NBD：BG/NBD 拟合停在参数边界上：a → 0" in model.summary()
    assert all(r[n] is None for r in rows.values() for n in PREDICTIVE)
    logged = [r.getMessage() for r in caplog.records if r.name == "bot.tiering.metrics_predictive"]
    assert len(logged) == 1
    assert logged[0].startswith("predictive: BG/NBD not fitted over 200 buyers: ")
    assert "a -> 0" in logged[0]
    assert logged[0].endswith(
        "no dropout seen in the data: BG/NBD reduces to NBD; p_alive would be 1 for everyone"
    )


def _churned_vip(db: Database) -> None:
    """Background buyers, a 高价值 customer gone quiet after a fast rhythm, one still buying."""
    _seed(db, _histories(120, seed=5))
    with db.write() as s:
        zhang = staff(s, "zhang")
        for ext, last in (("wm_risk", 290), ("wm_fresh", 2)):
            c = customer(s, ext)
            relation(s, c, zhang, added=local(400))
            for k in range(8):
                order(s, c, 800, local(last + 10 * k))


def test_retier_and_customer_show_explain_churn_risk(
    tmp_path: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _churned_vip(db)
    config = write_config(tmp_path, db.url, default_tiers=True)
    as_of = ["--as-of", AS_OF.isoformat()]
    assert main(["--config", str(config), "retier", "--no-push", *as_of]) == 0
    out = capsys.readouterr().out
    assert "预测模型 / predictive model: BG/NBD r=" in out
    assert "Gamma-Gamma p=" in out
    assert main(["--config", str(config), "customer", "show", "wm_risk", *as_of]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("  流失风险："))
    assert lines[head].startswith("  流失风险：流失风险高 — ")
    block = "\n".join(lines[head : head + 8])
    assert "预测模型：BG/NBD r=" in block
    assert "orders_total = 8" in block
    assert "days_since_first_order = 360" in block
    assert "days_since_last_order = 290" in block
    values = next(line for line in lines[head : head + 8] if "指标：" in line)
    assert float(values.split("p_alive = ")[1].split("，")[0]) < 0.3
    assert main(["--config", str(config), "customer", "show", "wm_fresh", *as_of]) == 0
    assert "  流失风险：流失风险低 — " in capsys.readouterr().out


def test_outreach_run_with_p_alive_in_when(
    tmp_path: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _churned_vip(db)
    config = write_config(tmp_path, db.url, default_tiers=True)
    with config.open("a", encoding="utf-8") as f:
        f.write(
            '\n[[outreach.campaigns]]\nname = "挽留"\naction = "follow_up"\n'
            'dimension = "value"\ntiers = ["高价值"]\nwhen = "p_alive < 0.3"\n'
            'holdout_pct = 0\ntext = "建议回访"\n'
        )
    as_of = ["--as-of", AS_OF.isoformat()]
    assert main(["--config", str(config), "retier", "--no-push", *as_of]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "outreach", "run", "挽留", "--dry-run", *as_of]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].startswith("受众 1 人：触达 1，对照组 0")
    assert lines[2:] == ["员工 zhang：", "  触达 1 人：wm_risk"]
