"""Customers drawn from known BG/NBD parameters, for fits to recover."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def simulate_bgnbd(
    r: float, alpha: float, a: float, b: float, age: Array, *, seed: int
) -> tuple[Array, Array, Array]:
    """Return (x, t_x, T) of customers who first bought at 0 and are observed until T.

    Each draws λ ~ Gamma(r, rate α) and p ~ Beta(a, b); while active they buy at Poisson
    rate λ, and after each repeat purchase drop out with probability p.
    """
    rng = np.random.default_rng(seed)
    n = age.size
    lam = rng.gamma(r, 1.0 / alpha, size=n)
    p = rng.beta(a, b, size=n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    now = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1.0 / lam[idx])
        bought = idx[now[idx] <= age[idx]]
        active[idx[now[idx] > age[idx]]] = False
        x[bought] += 1
        t_x[bought] = now[bought]
        active[bought[rng.random(bought.size) < p[bought]]] = False
    return x, t_x, age.astype(np.float64)
