"""Customers drawn from known BG/NBD parameters: for fits to recover and for bench data.

Shared by the tests (fits recover the parameters they were drawn from) and the benches
(bench/retier_data.py's orders churn the way BG/NBD assumes; bench/predictive_fit.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def bgnbd_repeat_times(
    r: float, alpha: float, a: float, b: float, age: Array, *, seed: int
) -> tuple[IntArray, Array]:
    """Return (customer index, time) of every repeat purchase, customers first buying at 0.

    Each customer draws λ ~ Gamma(r, rate α) and p ~ Beta(a, b); while active they buy at
    Poisson rate λ until their `age`, and after each repeat purchase drop out with
    probability p. Rows come in rounds (every customer's first repeat, then second, ...).
    """
    rng = np.random.default_rng(seed)
    n = age.size
    lam = rng.gamma(r, 1.0 / alpha, size=n)
    p = rng.beta(a, b, size=n)
    now = np.zeros(n)
    active = np.ones(n, dtype=bool)
    who: list[IntArray] = []
    when: list[Array] = []
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1.0 / lam[idx])
        inside = now[idx] <= age[idx]
        bought = idx[inside]
        active[idx[~inside]] = False
        who.append(bought.astype(np.int64))
        when.append(now[bought])
        active[bought[rng.random(bought.size) < p[bought]]] = False
    return np.concatenate(who), np.concatenate(when)


def simulate_bgnbd(
    r: float, alpha: float, a: float, b: float, age: Array, *, seed: int
) -> tuple[Array, Array, Array]:
    """Return (x, t_x, T) of customers who first bought at 0 and are observed until T."""
    who, when = bgnbd_repeat_times(r, alpha, a, b, age, seed=seed)
    x = np.bincount(who, minlength=age.size).astype(np.float64)
    t_x = np.zeros(age.size)
    np.maximum.at(t_x, who, when)
    return x, t_x, age.astype(np.float64)


def expected_repeats(r: float, alpha: float, a: float, b: float, age: Array) -> float:
    """Return the mean of E[X(T)] over the ages T (the paper's equation 9, a ≠ 1)."""
    from scipy import special

    t = np.asarray(age, dtype=np.float64)
    hyp = special.hyp2f1(r, b, a + b - 1.0, t / (alpha + t))
    ex = (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + t)) ** r * hyp)
    return float(np.mean(ex))


def alpha_for_repeats(r: float, a: float, b: float, age: Array, target: float) -> float:
    """Return the α at which the mean expected repeat purchases over `age` is `target`.

    The ages are summed up by 200 quantiles: hyp2f1 costs about 0.1 ms a call.
    """
    grid = np.quantile(np.asarray(age, dtype=np.float64), (np.arange(200) + 0.5) / 200)
    lo, hi = -8.0, 12.0  # log α; E[X] falls as α grows
    for _ in range(40):
        mid = (lo + hi) / 2
        if expected_repeats(r, float(np.exp(mid)), a, b, grid) > target:
            lo = mid
        else:
            hi = mid
    return float(np.exp((lo + hi) / 2))
