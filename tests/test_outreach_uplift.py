"""The uplift statistics against published worked examples, statsmodels, scipy and simulation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bot.outreach import uplift
from bot.outreach.uplift import Estimate, Moments

with warnings.catch_warnings():  # statsmodels' own imports may warn on new pandas/scipy
    warnings.simplefilter("ignore")
    from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint


# Newcombe (1998a) "Two-sided confidence intervals for the single proportion", Table I,
# method 3 (Wilson score, no continuity correction).
WILSON_PUBLISHED = [
    ((81, 263), (0.2553, 0.3662)),
    ((15, 148), (0.0624, 0.1605)),
    ((0, 20), (0.0, 0.1611)),
    ((1, 29), (0.0061, 0.1718)),
]

# Newcombe (1998b) "Interval estimation for the difference between independent proportions",
# Table II, method 10 (hybrid score), examples (a)-(h).
NEWCOMBE_PUBLISHED = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), WILSON_PUBLISHED)
def test_wilson_matches_newcombe_table_i(
    counts: tuple[int, int], published: tuple[float, float]
) -> None:
    low, high = uplift.wilson_interval(*counts)
    assert (round(low, 4), round(high, 4)) == published


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE_PUBLISHED)
def test_difference_matches_newcombe_table_ii_method_10(
    counts: tuple[int, int, int, int], published: tuple[float, float]
) -> None:
    x1, n1, x2, n2 = counts
    est = uplift.proportion_difference(x1, n1, x2, n2)
    assert est.value == pytest.approx(x1 / n1 - x2 / n2)
    assert est.low is not None
    assert est.high is not None
    assert (round(est.low, 4), round(est.high, 4)) == published


counts = st.integers(min_value=1, max_value=5000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)


@settings(max_examples=200, deadline=None)
@given(a=counts, b=counts)
def test_intervals_agree_with_statsmodels(a: tuple[int, int], b: tuple[int, int]) -> None:
    (x1, n1), (x2, n2) = a, b
    assert uplift.wilson_interval(x1, n1) == pytest.approx(
        proportion_confint(x1, n1, method="wilson"), abs=1e-9
    )
    ours = uplift.proportion_difference(x1, n1, x2, n2)
    theirs = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
    assert (ours.low, ours.high) == pytest.approx(theirs, abs=1e-9)
    ratio = uplift.proportion_ratio(x1, n1, x2, n2)
    if x1 == 0 or x2 == 0:
        assert ratio is None
    else:
        assert ratio is not None
        log = confint_proportions_2indep(x1, n1, x2, n2, method="log", compare="ratio")
        assert (ratio.low, ratio.high) == pytest.approx(log, rel=1e-9)


def test_katz_risk_ratio_by_hand() -> None:
    # 30/200 vs 20/210: RR 1.575, se² = 1/30 − 1/200 + 1/20 − 1/210.
    est = uplift.proportion_ratio(30, 200, 20, 210)
    assert est is not None
    se = math.sqrt(1 / 30 - 1 / 200 + 1 / 20 - 1 / 210)
    assert est.value == pytest.approx(1.575)
    assert est.low == pytest.approx(1.575 * math.exp(-1.959964 * se), rel=1e-6)
    assert est.high == pytest.approx(1.575 * math.exp(1.959964 * se), rel=1e-6)


def test_welch_matches_scipy_on_raw_data() -> None:
    rng = np.random.default_rng(3)
    a = rng.exponential(120.0, 57).tolist()
    b = rng.normal(90.0, 40.0, 81).tolist()
    ours = uplift.mean_difference(Moments.of(a), Moments.of(b))
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert ours.value == pytest.approx(np.mean(a) - np.mean(b))
    assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert ours.df == pytest.approx(ref.df, rel=1e-9)


def test_moments_add_up_like_the_pooled_sample() -> None:
    a, b = [1.0, 2.0, 5.0], [4.0, 4.0]
    joined = Moments.of(a) + Moments.of(b)
    assert joined == Moments.of(a + b)
    assert joined.mean == pytest.approx(3.2)
    assert joined.variance == pytest.approx(float(np.var(a + b, ddof=1)))


def test_mean_ratio_delta_method_is_centred_on_the_log_ratio() -> None:
    a, b = Moments.of([10.0, 12.0, 14.0] * 20), Moments.of([8.0, 10.0, 12.0] * 20)
    est = uplift.mean_ratio(a, b)
    assert est is not None
    assert est.low is not None
    assert est.high is not None
    assert est.value == pytest.approx(1.2)
    assert math.log(est.high) - math.log(est.value) == pytest.approx(
        math.log(est.value) - math.log(est.low)
    )
    assert uplift.mean_ratio(Moments.of([0.0] * 40), b) is None


def test_undefined_intervals_are_none_not_nan() -> None:
    one = uplift.mean_difference(Moments.of([5.0]), Moments.of([1.0, 2.0]))
    assert one.value == 3.5
    assert one.low is None
    assert one.high is None
    flat = uplift.mean_difference(Moments.of([0.0] * 50), Moments.of([0.0] * 40))
    assert flat.low is None
    assert not flat.covers(0.0)
    assert uplift.proportion_ratio(0, 100, 5, 100) is None
    with pytest.raises(ValueError, match="n > 0"):
        uplift.wilson_interval(0, 0)


def test_too_small_rule_and_warning() -> None:
    assert uplift.too_small(29, 500)
    assert uplift.too_small(100, 100, 4, 20)
    assert not uplift.too_small(30, 30, 5, 5)
    assert not uplift.too_small(30, 30)
    text = uplift.too_small_warning(12, 3, 2, 0)
    assert text.startswith("样本太少，暂不能下结论")
    assert "实验组 12 人、转化 2 人" in text
    assert "对照组 3 人、转化 0 人" in text


def test_shifted_estimate_moves_value_and_bounds() -> None:
    moved = Estimate(1.5, 1.2, 1.9).shifted(-1)
    assert (moved.value, moved.low, moved.high) == pytest.approx((0.5, 0.2, 0.9))
    assert Estimate(1.0, None, None).shifted(2) == Estimate(3.0, None, None)


# Coverage: over many seeded simulations the 95% interval covers the truth about 95% of the
# time. Deterministic (fixed seeds); the band allows the Monte Carlo error of 1,000 runs.
SIMULATIONS = 1000


def _coverage(hits: int) -> float:
    return hits / SIMULATIONS


def test_newcombe_covers_a_null_effect_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(20261201)
    x1 = rng.binomial(400, 0.10, SIMULATIONS)
    x2 = rng.binomial(120, 0.10, SIMULATIONS)
    hits = sum(
        uplift.proportion_difference(int(a), 400, int(b), 120).covers(0.0)
        for a, b in zip(x1, x2, strict=True)
    )
    assert 0.93 <= _coverage(hits) <= 0.97


def test_newcombe_covers_a_real_effect_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(5)
    x1 = rng.binomial(600, 0.15, SIMULATIONS)
    x2 = rng.binomial(200, 0.10, SIMULATIONS)
    hits = sum(
        uplift.proportion_difference(int(a), 600, int(b), 200).covers(0.05)
        for a, b in zip(x1, x2, strict=True)
    )
    assert 0.93 <= _coverage(hits) <= 0.97


def test_katz_covers_the_true_ratio_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    hits = 0
    for a, b in zip(
        rng.binomial(300, 0.15, SIMULATIONS), rng.binomial(300, 0.10, SIMULATIONS), strict=True
    ):
        est = uplift.proportion_ratio(int(a), 300, int(b), 300)
        hits += est is not None and est.covers(1.5)
    assert 0.93 <= _coverage(hits) <= 0.97


def test_welch_covers_a_null_effect_on_skewed_revenue() -> None:
    # Revenue per customer: most spend nothing, buyers spend an exponential amount.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(SIMULATIONS):
        a = rng.exponential(150.0, 300) * (rng.random(300) < 0.3)
        b = rng.exponential(150.0, 200) * (rng.random(200) < 0.3)
        hits += uplift.mean_difference(Moments.of(a.tolist()), Moments.of(b.tolist())).covers(0.0)
    assert 0.93 <= _coverage(hits) <= 0.97
