"""BG/NBD and Gamma-Gamma: fit by maximum likelihood, then score each customer.

BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way"): while active a
customer buys at Poisson rate λ ~ Gamma(r, α); after each repeat purchase they drop out
with probability p ~ Beta(a, b). Inputs per customer: x repeat purchases, t_x the time of
the last one, T (`age` in the code) the time since the first (from the first purchase, in
one unit of time: weeks in the papers, days in the engine).

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie 2013): the mean
spend m of a customer's x repeat purchases, with spend per purchase ~ Gamma(p, ν) and
ν ~ Gamma(q, γ), independent of the purchase process.

Every function takes numpy arrays and works on all customers at once. The fits run a
bounded L-BFGS-B on the logarithms of the parameters with the analytic gradient, on the
distinct input rows weighted by how many customers share them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# scipy.optimize and scipy.special are imported where used: they cost about a second of
# start-up, and every CLI command imports the metrics engine (hence this module).

Array = npt.NDArray[np.float64]

# Log-scale bounds: wide enough for weeks or days as the unit, narrow enough that exp()
# and the gamma functions stay finite while the optimiser explores.
LOG_BOUNDS = (-12.0, 12.0)
MIN_REPEAT_BUYERS = 20  # below this the dropout and spend heterogeneity are not identified


# Below this mean dropout chance per repeat purchase, a/(a+b), the fit has run off towards
# a → 0 / b → ∞ (it stalls short of the bound there: the likelihood is flat): no dropout.
MIN_DROPOUT = 1e-4


class FitError(Exception):
    """A fit that did not give usable parameters.

    The message is Chinese, for operators; `english` says the same for the logs.
    """

    def __init__(self, message: str, english: str | None = None) -> None:
        super().__init__(message)
        self.english = english or message


NO_DROPOUT = (
    "数据中看不到流失：BG/NBD 退化为 NBD（客户永不流失），每位客户的 p_alive 都会是 1",
    "no dropout seen in the data: BG/NBD reduces to NBD; p_alive would be 1 for everyone",
)
# What a parameter running to a bound means: (model, parameter, towards ∞?) → (Chinese, English).
BOUND_MEANING: dict[tuple[str, str, bool], tuple[str, str]] = {
    ("BG/NBD", "a", False): NO_DROPOUT,
    ("BG/NBD", "b", True): NO_DROPOUT,
    ("BG/NBD", "a", True): (
        "客户每次复购后几乎必然流失",
        "customers almost surely drop out after every repeat purchase",
    ),
    ("BG/NBD", "b", False): (
        "客户每次复购后几乎必然流失",
        "customers almost surely drop out after every repeat purchase",
    ),
    ("BG/NBD", "r", False): (
        "购买频率极不均匀：几乎所有客户的频率都接近 0",
        "purchase rates extremely uneven: nearly every customer's is near 0",
    ),
    ("BG/NBD", "r", True): (
        "看不到客户之间购买频率的差异",
        "no difference in purchase rates between customers seen",
    ),
    ("BG/NBD", "α", True): (
        "看不到客户之间购买频率的差异，或几乎没有复购",
        "no difference in purchase rates between customers, or hardly any repeat purchase",
    ),
    ("Gamma-Gamma", "p", True): (
        "同一客户每次的消费金额都一样",
        "every customer spends the same on each purchase",
    ),
    ("Gamma-Gamma", "q", True): (
        "看不到客户之间平均客单价的差异",
        "no difference in mean spend between customers seen",
    ),
    ("Gamma-Gamma", "γ", True): (
        "看不到客户之间平均客单价的差异",
        "no difference in mean spend between customers seen",
    ),
}


@dataclass(frozen=True)
class BgNbd:
    """Fitted BG/NBD parameters with the maximised log-likelihood."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int
    seconds: float


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma parameters with the maximised log-likelihood."""

    p: float
    q: float
    gamma: float
    log_likelihood: float
    customers: int
    seconds: float


def _weighted_unique(*cols: Array) -> tuple[list[Array], Array]:
    """Return the distinct rows of `cols` and how many times each occurs."""
    stacked = np.column_stack(cols)
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    return [rows[:, i].copy() for i in range(rows.shape[1])], counts.astype(np.float64)


def bgnbd_log_likelihood(
    params: Array, x: Array, t_x: Array, age: Array, w: Array | None = None
) -> tuple[float, Array]:
    """Return the BG/NBD log-likelihood and its gradient in log(r, α, a, b)."""
    from scipy import special

    r, alpha, a, b = np.exp(params)
    w = np.ones_like(x) if w is None else w
    rep = x > 0
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    log_at = np.log(alpha + age)
    log_atx = np.log(alpha + t_x)
    a3 = -(r + x) * log_at
    bx1 = np.where(rep, b + x - 1.0, 1.0)
    a4 = np.where(rep, np.log(a) - np.log(bx1) - (r + x) * log_atx, -np.inf)
    lse = np.logaddexp(a3, a4)
    w3 = np.exp(a3 - lse)
    w4 = np.exp(a4 - lse)
    ll = float(np.sum(w * (a1 + a2 + lse)))
    dr = special.digamma(r + x) - special.digamma(r) + np.log(alpha) - w3 * log_at - w4 * log_atx
    dalpha = r / alpha - (r + x) * (w3 / (alpha + age) + w4 / (alpha + t_x))
    dab = special.digamma(a + b) - special.digamma(a + b + x)
    da = dab + w4 / a
    db = dab + special.digamma(b + x) - special.digamma(b) - w4 / bx1
    grad = np.array(
        [
            r * np.sum(w * dr),
            alpha * np.sum(w * dalpha),
            a * np.sum(w * da),
            b * np.sum(w * db),
        ]
    )
    return ll, grad


def fit_bgnbd(x: Array, t_x: Array, age: Array, weights: Array | None = None) -> BgNbd:
    """Fit BG/NBD to the customers' (x, t_x, T) by maximum likelihood.

    With `weights`, each row stands for that many customers (rows already grouped).
    """
    from scipy import optimize

    t0 = time.perf_counter()
    x, t_x, age = (np.asarray(v, dtype=np.float64) for v in (x, t_x, age))
    if weights is None:
        (ux, utx, uage), w = _weighted_unique(x, t_x, age)
    else:
        ux, utx, uage, w = x, t_x, age, np.asarray(weights, dtype=np.float64)
    n = int(np.sum(w))
    repeat = int(np.sum(w[ux > 0]))
    if repeat < MIN_REPEAT_BUYERS:
        raise FitError(
            f"复购客户只有 {repeat} 位（至少 {MIN_REPEAT_BUYERS} 位才能拟合）",
            f"only {repeat} repeat buyers (a fit needs {MIN_REPEAT_BUYERS})",
        )
    scale = float(np.sum(w))

    def objective(theta: Array) -> tuple[float, Array]:
        ll, grad = bgnbd_log_likelihood(theta, ux, utx, uage, w)
        return -ll / scale, -grad / scale

    # Start from r = 1, α = the mean age (a rate of one purchase per lifetime), a = b = 1.
    start = np.array([0.0, np.log(max(float(np.mean(age)), 1e-3)), 0.0, 0.0])
    res = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[LOG_BOUNDS] * 4)
    _check(res, "BG/NBD", ("r", "α", "a", "b"))
    r, alpha, a, b = (float(v) for v in np.exp(res.x))
    if a / (a + b) < MIN_DROPOUT:
        raise _bound_error("BG/NBD", "a", towards_inf=False, detail=f"a/(a+b) = {a / (a + b):.2g}")
    return BgNbd(r, alpha, a, b, -float(res.fun) * scale, n, time.perf_counter() - t0)


def gamma_gamma_log_likelihood(
    params: Array, x: Array, m: Array, w: Array | None = None
) -> tuple[float, Array]:
    """Return the Gamma-Gamma log-likelihood of repeat buyers and its gradient in log(p, q, γ)."""
    from scipy import special

    p, q, g = np.exp(params)
    w = np.ones_like(x) if w is None else w
    px = p * x
    log_xm_g = np.log(x * m + g)
    ll_i = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(g)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_xm_g
    )
    dp = x * (special.digamma(px + q) - special.digamma(px) + np.log(m) + np.log(x) - log_xm_g)
    dq = special.digamma(px + q) - special.digamma(q) + np.log(g) - log_xm_g
    dg = q / g - (px + q) / (x * m + g)
    grad = np.array([p * np.sum(w * dp), q * np.sum(w * dq), g * np.sum(w * dg)])
    return float(np.sum(w * ll_i)), grad


def fit_gamma_gamma(x: Array, m: Array, weights: Array | None = None) -> GammaGamma:
    """Fit Gamma-Gamma to repeat buyers' (x ≥ 1 repeat purchases, mean spend m > 0).

    Other rows are left out. With `weights`, each row stands for that many customers.
    """
    from scipy import optimize

    t0 = time.perf_counter()
    x, m = (np.asarray(v, dtype=np.float64) for v in (x, m))
    keep = (x > 0) & (m > 0)
    if weights is None:
        (ux, um), w = _weighted_unique(x[keep], m[keep])
    else:
        ux, um, w = x[keep], m[keep], np.asarray(weights, dtype=np.float64)[keep]
    n = int(np.sum(w))
    if n < MIN_REPEAT_BUYERS:
        raise FitError(
            f"有复购金额的客户只有 {n} 位（至少 {MIN_REPEAT_BUYERS} 位才能拟合）",
            f"only {n} repeat buyers with spend (a fit needs {MIN_REPEAT_BUYERS})",
        )

    def objective(theta: Array) -> tuple[float, Array]:
        ll, grad = gamma_gamma_log_likelihood(theta, ux, um, w)
        return -ll / n, -grad / n

    # Start where E[spend] matches the mean spend: p = q = 2, so γ = mean(m) · (q-1) / p.
    start = np.array([np.log(2.0), np.log(2.0), np.log(max(float(np.mean(um)), 1e-6) / 2.0)])
    res = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[LOG_BOUNDS] * 3)
    _check(res, "Gamma-Gamma", ("p", "q", "γ"))
    p, q, g = (float(v) for v in np.exp(res.x))
    if q <= 1.0:
        raise FitError(
            f"Gamma-Gamma 的 q = {q:.3g} ≤ 1：客单价的期望不存在",
            f"Gamma-Gamma q = {q:.3g} <= 1: the expected spend per purchase does not exist",
        )
    return GammaGamma(p, q, g, -float(res.fun) * n, n, time.perf_counter() - t0)


def _check(res: Any, model: str, names: tuple[str, ...]) -> None:
    """Raise FitError unless the optimiser converged inside the bounds."""
    if not res.success or not np.all(np.isfinite(res.x)):
        raise FitError(
            f"{model} 拟合未收敛：{res.message}", f"{model} fit did not converge: {res.message}"
        )
    lo, hi = LOG_BOUNDS
    for name, v in zip(names, res.x, strict=True):
        if np.isclose(v, lo) or np.isclose(v, hi):
            raise _bound_error(model, name, towards_inf=bool(np.isclose(v, hi)))


def _bound_error(model: str, name: str, *, towards_inf: bool, detail: str = "") -> FitError:
    """Return the error of a fit run off to a bound: which parameter, which way, what it means."""
    limit = "∞" if towards_inf else "0"
    zh, en = BOUND_MEANING.get(
        (model, name, towards_inf), ("数据无法确定这个参数", "the data do not determine it")
    )
    where = f"{name} → {limit}" + (f"（{detail}）" if detail else "")
    where_en = f"{name} -> {'inf' if towards_inf else '0'}" + (f" ({detail})" if detail else "")
    return FitError(
        f"{model} 拟合停在参数边界上：{where}。{zh}",
        f"{model} fit stopped on a parameter bound: {where_en}. {en}",
    )


def p_alive(m: BgNbd, x: Array, t_x: Array, age: Array) -> Array:
    """Return P(still active at T | x, t_x, T); 1 for customers without a repeat purchase."""
    x, t_x, age = (np.asarray(v, dtype=np.float64) for v in (x, t_x, age))
    return 1.0 / (1.0 + _dropout_odds(m, x, t_x, age))


def _dropout_odds(m: BgNbd, x: Array, t_x: Array, age: Array) -> Array:
    """Return a/(b+x-1) · ((α+T)/(α+t_x))^(r+x) for x > 0, else 0 (computed in logs)."""
    rep = x > 0
    bx1 = np.where(rep, m.b + x - 1.0, 1.0)
    log_odds = (
        np.log(m.a) - np.log(bx1) + (m.r + x) * (np.log(m.alpha + age) - np.log(m.alpha + t_x))
    )
    return np.where(rep, np.exp(np.minimum(log_odds, 700.0)), 0.0)


def expected_purchases(m: BgNbd, t: float, x: Array, t_x: Array, age: Array) -> Array:
    """Return E[purchases in (T, T+t] | x, t_x, T] (the paper's equation 10)."""
    from scipy import special

    x, t_x, age = (np.asarray(v, dtype=np.float64) for v in (x, t_x, age))
    if np.isclose(m.a, 1.0):
        # The closed form is 0/0 at a = 1; its limit is continuous, so nudge a by 1e-9.
        m = BgNbd(m.r, m.alpha, 1.0 + 1e-9, m.b, m.log_likelihood, m.customers, m.seconds)
    z = t / (m.alpha + age + t)
    hyp = special.hyp2f1(m.r + x, m.b + x, m.a + m.b + x - 1.0, z)
    ratio = np.exp((m.r + x) * (np.log(m.alpha + age) - np.log(m.alpha + age + t)))
    num = (m.a + m.b + x - 1.0) / (m.a - 1.0) * (1.0 - ratio * hyp)
    return np.asarray(num / (1.0 + _dropout_odds(m, x, t_x, age)), dtype=np.float64)


def expected_spend(g: GammaGamma, x: Array, m: Array) -> Array:
    """Return E[spend per purchase | x repeat purchases with mean m] (p·(γ + x·m)/(p·x + q − 1))."""
    x, m = (np.asarray(v, dtype=np.float64) for v in (x, m))
    return (g.p * (g.gamma + x * m)) / (g.p * x + g.q - 1.0)


def mean_spend(g: GammaGamma) -> float:
    """Return the population's expected spend per purchase, p·γ/(q − 1)."""
    return g.p * g.gamma / (g.q - 1.0)


def bgnbd_standard_errors(m: BgNbd, x: Array, t_x: Array, age: Array) -> Array:
    """Return the standard errors of (r, α, a, b) from the observed information matrix."""
    theta = np.log([m.r, m.alpha, m.a, m.b])
    (ux, utx, uage), w = _weighted_unique(*(np.asarray(v, dtype=np.float64) for v in (x, t_x, age)))
    # Hessian in log-parameters by central differences of the analytic gradient.
    h = 1e-5
    hess = np.empty((4, 4))
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        gp = bgnbd_log_likelihood(theta + e, ux, utx, uage, w)[1]
        gm = bgnbd_log_likelihood(theta - e, ux, utx, uage, w)[1]
        hess[i] = (gp - gm) / (2 * h)
    hess = (hess + hess.T) / 2
    cov_log = np.linalg.inv(-hess)
    # Delta method: se(θ) = θ · se(log θ).
    return np.asarray(np.exp(theta) * np.sqrt(np.diag(cov_log)), dtype=np.float64)
