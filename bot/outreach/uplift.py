"""Uplift statistics: intervals for a proportion, a difference and ratio of proportions or means.

Pure functions on counts and sufficient statistics (n, sum, sum of squares), so the report
aggregates in SQL and only the arithmetic happens here. Methods, all two-sided:

- one proportion: Wilson score interval (Wilson 1927; Newcombe 1998a, method 3);
- difference of two proportions: Newcombe's hybrid score interval built from the two
  Wilson intervals (Newcombe 1998b, method 10);
- ratio of two proportions (relative lift): Katz's log method, ln(RR) ± z·se with
  se² = 1/x₁ − 1/n₁ + 1/x₂ − 1/n₂ (Katz et al. 1978);
- difference of two means: Welch's t interval with Welch–Satterthwaite degrees of freedom;
- ratio of two means (relative lift): the delta method on ln(m₁/m₂) with a normal quantile.

Quantiles come from scipy.stats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm, t

CONFIDENCE = 0.95
# Below these a group is too small to conclude anything (see `too_small`).
MIN_PER_ARM = 30
MIN_EVENTS = 5
TOO_SMALL = "样本太少，暂不能下结论"


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval (None when the interval is undefined)."""

    value: float
    low: float | None
    high: float | None

    def covers(self, x: float) -> bool:
        """Tell whether the interval contains x (False when there is no interval)."""
        return self.low is not None and self.high is not None and self.low <= x <= self.high

    def shifted(self, by: float) -> Estimate:
        """Return the estimate with `by` added to the value and both bounds."""
        return Estimate(
            self.value + by,
            None if self.low is None else self.low + by,
            None if self.high is None else self.high + by,
        )


@dataclass(frozen=True)
class WelchEstimate(Estimate):
    """A difference of means with the Welch–Satterthwaite degrees of freedom it used."""

    df: float | None = None


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of one sample: count, sum and sum of squares (additive)."""

    n: int
    total: float
    total_sq: float

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    @classmethod
    def of(cls, values: list[float]) -> Moments:
        """Return the moments of a list of values."""
        return cls(len(values), float(sum(values)), float(sum(v * v for v in values)))

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """Return the sample variance (n − 1), or None below two values."""
        if self.n < 2:
            return None
        # Clamped: rounding in the sum of squares can leave a tiny negative number.
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))


def _z(confidence: float) -> float:
    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(
    successes: int, n: int, *, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Return the Wilson score interval for successes / n (n > 0)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    # Exact at the edges: rounding must not put 0/n's lower bound a hair above 0.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def proportion_difference(
    x1: int, n1: int, x2: int, n2: int, *, confidence: float = CONFIDENCE
) -> Estimate:
    """Return p₁ − p₂ with Newcombe's hybrid score interval (method 10)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, confidence=confidence)
    l2, u2 = wilson_interval(x2, n2, confidence=confidence)
    d = p1 - p2
    return Estimate(
        d,
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def proportion_ratio(
    x1: int, n1: int, x2: int, n2: int, *, confidence: float = CONFIDENCE
) -> Estimate | None:
    """Return p₁ / p₂ with Katz's log interval; None when either arm has no events."""
    if x1 == 0 or x2 == 0:
        return None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    z = _z(confidence)
    return Estimate(ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se))


def mean_difference(a: Moments, b: Moments, *, confidence: float = CONFIDENCE) -> WelchEstimate:
    """Return mean(a) − mean(b) with Welch's t interval.

    No interval below two values per arm or when both arms have zero variance.
    """
    ma, mb = a.mean, b.mean
    if ma is None or mb is None:
        raise ValueError("both samples need at least one value")
    va, vb = a.variance, b.variance
    d = ma - mb
    if va is None or vb is None:
        return WelchEstimate(d, None, None)
    wa, wb = va / a.n, vb / b.n
    se2 = wa + wb
    if se2 <= 0:
        return WelchEstimate(d, None, None)
    df = se2 * se2 / (wa * wa / (a.n - 1) + wb * wb / (b.n - 1))
    half = float(t.ppf(0.5 + confidence / 2, df)) * math.sqrt(se2)
    return WelchEstimate(d, d - half, d + half, df=df)


def mean_ratio(a: Moments, b: Moments, *, confidence: float = CONFIDENCE) -> Estimate | None:
    """Return mean(a) / mean(b) with a delta-method interval on the log ratio.

    None when a mean is not positive or a variance is undefined.
    """
    ma, mb, va, vb = a.mean, b.mean, a.variance, b.variance
    if ma is None or mb is None or ma <= 0 or mb <= 0 or va is None or vb is None:
        return None
    ratio = ma / mb
    se = math.sqrt(va / (a.n * ma * ma) + vb / (b.n * mb * mb))
    z = _z(confidence)
    return Estimate(ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se))


def too_small(n1: int, n2: int, events1: int | None = None, events2: int | None = None) -> bool:
    """Tell whether two arms are too small to conclude: < 30 each, or < 5 events in one."""
    if min(n1, n2) < MIN_PER_ARM:
        return True
    return events1 is not None and events2 is not None and min(events1, events2) < MIN_EVENTS


def too_small_warning(n1: int, n2: int, events1: int | None, events2: int | None) -> str:
    """Return the operator's warning with the counts behind it (events when known)."""
    if events1 is None or events2 is None:
        counts = f"实验组 {n1} 人，对照组 {n2} 人"
    else:
        counts = f"实验组 {n1} 人、转化 {events1} 人；对照组 {n2} 人、转化 {events2} 人"
    return f"{TOO_SMALL}（{counts}；每组至少需 {MIN_PER_ARM} 人且至少 {MIN_EVENTS} 人转化）"
