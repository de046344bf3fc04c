"""BG/NBD and Gamma-Gamma against the published CDNOW estimates, known parameters and mpmath."""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import pytest
from scipy import optimize

from bench.btyd import simulate_bgnbd
from bot.tiering import predictive as pred

CDNOW = Path(__file__).parent / "data" / "cdnow_summary.csv"


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    data = np.genfromtxt(CDNOW, delimiter=",", names=True)
    return {name: np.asarray(data[name], dtype=np.float64) for name in data.dtype.names or ()}


def test_cdnow_sample_is_the_papers(cdnow: dict[str, np.ndarray]) -> None:
    assert cdnow["x"].size == 2357
    assert int(np.count_nonzero(cdnow["x"] > 0)) == 946
    assert float(cdnow["T"].max()) <= 39.0


def test_bgnbd_reproduces_the_published_cdnow_fit(cdnow: dict[str, np.ndarray]) -> None:
    # Fader, Hardie & Lee (2005), weeks as the unit: r, α, a, b and LL = -9582.4.
    m = pred.fit_bgnbd(cdnow["x"], cdnow["t_x"], cdnow["T"])
    for got, published in ((m.r, 0.243), (m.alpha, 4.414), (m.a, 0.793), (m.b, 2.426)):
        assert got == pytest.approx(published, rel=0.01)
    assert m.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert m.customers == 2357


def test_gamma_gamma_reproduces_the_published_cdnow_fit(cdnow: dict[str, np.ndarray]) -> None:
    # Fader, Hardie & Lee (2005) "RFM and CLV": p ≈ 6.25, q ≈ 3.74, γ ≈ 15.44.
    g = pred.fit_gamma_gamma(cdnow["x"], cdnow["zbar"])
    assert g.customers == 946
    assert g.p == pytest.approx(6.25, rel=0.01)
    assert g.q == pytest.approx(3.74, rel=0.01)
    assert g.gamma == pytest.approx(15.44, rel=0.01)


def test_days_are_a_unit_change(cdnow: dict[str, np.ndarray]) -> None:
    # Weeks → days scales α by 7 and leaves r, a, b and the scores as they were.
    w = pred.fit_bgnbd(cdnow["x"], cdnow["t_x"], cdnow["T"])
    d = pred.fit_bgnbd(cdnow["x"], cdnow["t_x"] * 7, cdnow["T"] * 7)
    assert d.alpha == pytest.approx(w.alpha * 7, rel=1e-3)
    assert (d.r, d.a, d.b) == pytest.approx((w.r, w.a, w.b), rel=1e-3)
    ew = pred.expected_purchases(w, 39.0, cdnow["x"], cdnow["t_x"], cdnow["T"])
    ed = pred.expected_purchases(d, 273.0, cdnow["x"], cdnow["t_x"] * 7, cdnow["T"] * 7)
    np.testing.assert_allclose(ed, ew, rtol=2e-3)


@pytest.mark.parametrize(
    "theta", [np.log([0.243, 4.414, 0.793, 2.426]), np.array([0.3, 1.0, -0.5, 1.2])]
)
def test_bgnbd_gradient_is_the_likelihoods(cdnow: dict[str, np.ndarray], theta: np.ndarray) -> None:
    def f(t: np.ndarray) -> float:
        return pred.bgnbd_log_likelihood(t, cdnow["x"], cdnow["t_x"], cdnow["T"])[0]

    def g(t: np.ndarray) -> np.ndarray:
        return pred.bgnbd_log_likelihood(t, cdnow["x"], cdnow["t_x"], cdnow["T"])[1]

    numeric = optimize.approx_fprime(theta, f, 1e-6)
    np.testing.assert_allclose(g(theta), numeric, rtol=1e-4, atol=1e-2)


def test_gamma_gamma_gradient_is_the_likelihoods(cdnow: dict[str, np.ndarray]) -> None:
    rep = cdnow["x"] > 0
    x, m = cdnow["x"][rep], cdnow["zbar"][rep]
    theta = np.log([5.0, 3.0, 12.0])
    numeric = optimize.approx_fprime(
        theta, lambda t: pred.gamma_gamma_log_likelihood(t, x, m)[0], 1e-6
    )
    np.testing.assert_allclose(
        pred.gamma_gamma_log_likelihood(theta, x, m)[1], numeric, rtol=1e-4, atol=1e-2
    )


def _paper_log_likelihood(
    r_: float, alpha_: float, a_: float, b_: float, x: int, tx_: float, age_: float
) -> float:
    """The paper's equation (6), evaluated directly in mpmath."""
    r, alpha, a, b, tx, age = (mpmath.mpf(v) for v in (r_, alpha_, a_, b_, tx_, age_))
    common = (
        mpmath.beta(a, b + x) / mpmath.beta(a, b) * mpmath.gamma(r + x) * alpha**r / mpmath.gamma(r)
    )
    tail = 1 / (alpha + age) ** (r + x)
    if x > 0:
        tail += a / (b + x - 1) / (alpha + tx) ** (r + x)
    return float(mpmath.log(common * tail))


def test_log_likelihood_matches_the_papers_equation(cdnow: dict[str, np.ndarray]) -> None:
    params = (0.243, 4.414, 0.793, 2.426)
    rows = [0, 1, 2, 17, 156, 1515]
    x, tx, age = (cdnow[k][rows] for k in ("x", "t_x", "T"))
    for i in range(len(rows)):
        ours = pred.bgnbd_log_likelihood(
            np.log(params), x[i : i + 1], tx[i : i + 1], age[i : i + 1]
        )[0]
        paper = _paper_log_likelihood(*params, int(x[i]), float(tx[i]), float(age[i]))
        assert ours == pytest.approx(float(paper), rel=1e-10)


def _paper_p_alive(m: pred.BgNbd, x: int, tx: float, age: float) -> float:
    """P(alive) from the papers' equation (13) with the likelihood's two terms in mpmath."""
    if x == 0:
        return 1.0
    r, alpha, a, b = (mpmath.mpf(v) for v in (m.r, m.alpha, m.a, m.b))
    alive = 1 / (alpha + age) ** (r + x)
    dead = a / (b + x - 1) / (alpha + tx) ** (r + x)
    return float(alive / (alive + dead))


def _paper_expected(m: pred.BgNbd, t: float, x: int, tx: float, age: float) -> float:
    """E[Y(t) | x, t_x, T], the paper's equation (10), in mpmath at 50 digits."""
    with mpmath.workdps(50):
        r, alpha, a, b = (mpmath.mpf(v) for v in (m.r, m.alpha, m.a, m.b))
        tx_, age_, t_ = mpmath.mpf(tx), mpmath.mpf(age), mpmath.mpf(t)
        hyp = mpmath.hyp2f1(r + x, b + x, a + b + x - 1, t_ / (alpha + age_ + t_))
        num = (
            (a + b + x - 1)
            / (a - 1)
            * (1 - ((alpha + age_) / (alpha + age_ + t_)) ** (r + x) * hyp)
        )
        den = 1 + (a / (b + x - 1) * ((alpha + age_) / (alpha + tx_)) ** (r + x) if x > 0 else 0)
        return float(num / den)


CUSTOMERS = [
    (0, 0.0, 38.86),
    (1, 1.71, 38.86),
    (2, 30.43, 38.86),
    (7, 29.43, 35.0),
    (26, 30.86, 31.0),
]


@pytest.mark.parametrize(("x", "tx", "age"), CUSTOMERS)
def test_closed_forms_match_mpmath(x: int, tx: float, age: float) -> None:
    m = pred.BgNbd(0.243, 4.414, 0.793, 2.426, 0.0, 0, 0.0)
    arr = [np.array([v], dtype=np.float64) for v in (x, tx, age)]
    assert pred.p_alive(m, *arr)[0] == pytest.approx(_paper_p_alive(m, x, tx, age), rel=1e-10)
    for t in (13.0, 39.0, 52.0):
        ours = pred.expected_purchases(m, t, *arr)[0]
        assert ours == pytest.approx(_paper_expected(m, t, x, tx, age), rel=1e-8)


def test_closed_forms_in_days_match_mpmath() -> None:
    # The engine's unit: α in days, horizons of 90 and 365 days, ages up to years.
    m = pred.BgNbd(0.8, 120.0, 0.6, 3.0, 0.0, 0, 0.0)
    for x, tx, age in [(0, 0.0, 0.0), (0, 0.0, 800.0), (3, 200.0, 400.0), (40, 1000.0, 1010.0)]:
        arr = [np.array([v], dtype=np.float64) for v in (x, tx, age)]
        for t in (90.0, 365.0):
            ours = pred.expected_purchases(m, t, *arr)[0]
            assert ours == pytest.approx(_paper_expected(m, t, x, tx, age), rel=1e-8)


def test_expected_spend_matches_the_papers_equation() -> None:
    g = pred.GammaGamma(6.25, 3.74, 15.44, 0.0, 0, 0.0)
    x, m = np.array([1.0, 2.0, 10.0]), np.array([11.77, 22.35, 40.0])
    # E[M | x, m̄] = (q-1)/(px+q-1) · pγ/(q-1) + px/(px+q-1) · m̄ (a weighted mean).
    w = g.p * x / (g.p * x + g.q - 1)
    np.testing.assert_allclose(pred.expected_spend(g, x, m), (1 - w) * pred.mean_spend(g) + w * m)


def test_p_alive_falls_as_silence_grows() -> None:
    # Three orders 30 days apart. Right after the last, only the chance of dropping out with
    # it (a / (b + x - 1)) counts against them; then the longer nothing follows, the less.
    m = pred.BgNbd(0.8, 120.0, 0.6, 3.0, 0.0, 0, 0.0)
    silence = np.array([0.0, 15, 30, 60, 120, 240, 480])
    x, tx = np.full(silence.size, 2.0), np.full(silence.size, 60.0)
    p = pred.p_alive(m, x, tx, tx + silence)
    assert p[0] == pytest.approx(1 / (1 + 0.6 / (3.0 + 2 - 1)))
    assert np.all(np.diff(p) < 0)
    assert p[-1] < 0.3
    # A faster rhythm (nine orders in the same span) starts surer, and once the silence
    # passes several of its gaps (30+ days against 7.5) falls below and far faster.
    fast = pred.p_alive(m, np.full(silence.size, 8.0), tx, tx + silence)
    assert fast[0] > p[0]
    assert np.all(np.diff(fast) < 0)
    assert np.all(fast[2:] < p[2:])
    assert fast[4] < 0.3 < p[4]


@pytest.mark.parametrize("seed", [1, 3])
def test_fit_recovers_known_parameters(seed: int) -> None:
    truth = {"r": 0.5, "alpha": 40.0, "a": 0.8, "b": 3.0}  # days: one order per 80 days
    age = np.random.default_rng(100 + seed).uniform(30, 720, size=20_000).round()
    x, tx, age = simulate_bgnbd(0.5, 40.0, 0.8, 3.0, age, seed=seed)
    m = pred.fit_bgnbd(x, tx, age)
    se = pred.bgnbd_standard_errors(m, x, tx, age)
    for (name, true), est, s in zip(truth.items(), (m.r, m.alpha, m.a, m.b), se, strict=True):
        # Three standard errors: four estimates per draw, each off by chance now and then.
        assert abs(est - true) < 3 * s, f"{name}: {est:.4g} vs {true} (se {s:.3g})"
        assert s < 0.25 * true  # the data identify it: the check above is not vacuous


def test_too_few_repeat_buyers_is_a_reasoned_failure() -> None:
    x = np.array([0.0] * 100 + [1.0] * 5)
    with pytest.raises(pred.FitError, match="复购客户只有 5 位"):
        pred.fit_bgnbd(x, x * 10, np.full(x.size, 50.0))
    with pytest.raises(pred.FitError, match="只有 5 位"):
        pred.fit_gamma_gamma(x, x * 30)


def _no_dropout(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) of buyers who never drop out: 40 % buy again, ever more often lately.

    Purchase days are drawn towards today (days ago = 700 · u^1.5), as in a growing shop
    where nobody leaves: the likelihood runs off to the no-dropout limit a → 0.
    """
    rng = np.random.default_rng(seed)
    k = np.where(rng.random(n) < 0.4, 1 + rng.poisson(8, n), 1)
    rows = []
    for i in range(n):
        days = np.unique(np.floor(rng.random(k[i]) ** 1.5 * 700))
        rows.append((days.size - 1, days.max() - days.min(), days.max()))
    x, tx, age = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    return x, tx, age


@pytest.mark.parametrize("seed", [1, 2])
def test_no_dropout_names_the_parameter_and_what_it_means(seed: int) -> None:
    x, tx, age = _no_dropout(300, seed)
    with pytest.raises(pred.FitError) as err:
        pred.fit_bgnbd(x, tx, age)
    assert str(err.value).startswith("BG/NBD 拟合停在参数边界上：a → 0（a/(a+b) = ")
    assert str(err.value).endswith(
        "数据中看不到流失：BG/NBD 退化为 NBD（客户永不流失），每位客户的 p_alive 都会是 1"
    )
    assert err.value.english.startswith("BG/NBD fit stopped on a parameter bound: a -> 0 (")
    assert err.value.english.endswith(
        "no dropout seen in the data: BG/NBD reduces to NBD; p_alive would be 1 for everyone"
    )
