"""rldarts.report.analysis against hand computations."""

import math

import numpy as np
import pytest
from scipy import stats

from rldarts.report import analysis


def test_normalized_scores_use_easy_mode_constants():
    # starpilot [2.5, 64], coinrun [5, 10], jumper [3, 10] (Procgen paper table)
    np.testing.assert_allclose(
        analysis.normalized_scores("starpilot", [2.5, 64.0, 33.25]), [0.0, 1.0, 0.5]
    )
    assert analysis.normalized_scores("coinrun", 7.5) == pytest.approx(0.5)
    assert analysis.normalized_scores("jumper", 6.5) == pytest.approx(0.5)
    assert np.isnan(analysis.normalized_scores("CartPole-v1", [1.0, 2.0])).all()


def test_interquartile_mean_by_hand():
    assert analysis.interquartile_mean([100, 1, 3, 2]) == pytest.approx(2.5)  # mean of 2, 3
    # n=5: masses 0.2 each; x2 and x4 keep 0.15 of theirs, x3 all: (.15*2+.2*4+.15*8)/.5
    assert analysis.interquartile_mean([8, 1, 100, 2, 4]) == pytest.approx(4.6)
    # n=3: (x1 + 4 x2 + x3) / 6
    assert analysis.interquartile_mean([10, 1, 2]) == pytest.approx(19 / 6)
    assert analysis.interquartile_mean([7.0]) == 7.0
    assert analysis.interquartile_mean([1, 2, np.nan, 3, 100]) == pytest.approx(2.5)
    assert math.isnan(analysis.interquartile_mean([]))


@pytest.mark.parametrize("n", [4, 8, 12, 40])
def test_interquartile_mean_equals_trim_mean_when_n_divisible_by_4(n):
    x = np.random.default_rng(n).normal(size=n)
    assert analysis.interquartile_mean(x) == pytest.approx(stats.trim_mean(x, 0.25))


def test_bootstrap_ci_by_hand():
    # x = [0, 1]: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4.
    assert analysis.bootstrap_ci([0.0, 1.0], np.mean) == (0.0, 1.0)
    assert analysis.bootstrap_ci([0.0, 1.0], np.mean, confidence=0.4) == (0.5, 0.5)
    assert analysis.bootstrap_ci([3.0, 3.0, 3.0], np.mean) == (3.0, 3.0)
    assert analysis.bootstrap_ci([2.0], np.mean) == (2.0, 2.0)
    assert all(math.isnan(v) for v in analysis.bootstrap_ci([np.nan], np.mean))


def test_bootstrap_ci_is_the_seeded_percentile_bootstrap():
    x = np.random.default_rng(1).normal(size=10)
    idx = np.random.default_rng(7).integers(0, 10, size=(500, 10))
    expected = np.quantile(x[idx].mean(axis=1), [0.05, 0.95])
    got = analysis.bootstrap_ci(x, np.mean, num_resamples=500, confidence=0.9, seed=7)
    np.testing.assert_allclose(got, expected)
    assert analysis.bootstrap_ci(x, np.mean, seed=7) == analysis.bootstrap_ci(x, np.mean, seed=7)
    assert analysis.bootstrap_ci(x, np.mean, seed=7) != analysis.bootstrap_ci(x, np.mean, seed=8)
    with pytest.raises(ValueError):
        analysis.bootstrap_ci(x, np.mean, confidence=1.0)


def test_aggregate():
    a = analysis.aggregate([0.1, 0.4, 0.2, 0.3, np.nan])
    assert a["n"] == 4
    assert a["mean"] == pytest.approx(0.25)
    assert a["iqm"] == pytest.approx(0.25)  # mean of 0.2 and 0.3
    assert a["mean_ci"][0] <= 0.25 <= a["mean_ci"][1]
    assert 0.1 <= a["iqm_ci"][0] <= a["iqm_ci"][1] <= 0.4
    assert analysis.aggregate([])["n"] == 0


def test_mean_and_band_by_hand():
    a = ([0, 10, 20], [0, 10, 20])
    b = ([20, 0], [40, 0])  # unsorted on purpose; 20 at x=10 by interpolation
    x, m, lo, hi = analysis.mean_and_band([a, b])
    np.testing.assert_allclose(x, [0, 10, 20])
    np.testing.assert_allclose(m, [0, 15, 30])
    np.testing.assert_allclose(lo, [0, 10, 20])  # n = 2: min / max
    np.testing.assert_allclose(hi, [0, 20, 40])
    c = ([0, 10, 15], [3, 6, np.nan])  # ends at 10 (NaN dropped): absent at x = 20
    x, m, lo, hi = analysis.mean_and_band([a, b, c])
    np.testing.assert_allclose(m, [1, 12, 30])
    half0 = 1.96 * math.sqrt(3) / math.sqrt(3)  # values 0, 0, 3: std sqrt(3)
    half1 = 1.96 * math.sqrt(52) / math.sqrt(3)  # values 10, 20, 6: std sqrt(52)
    np.testing.assert_allclose(lo, [1 - half0, 12 - half1, 20])
    np.testing.assert_allclose(hi, [1 + half0, 12 + half1, 40])
    assert all(v.size == 0 for v in analysis.mean_and_band([]))


def test_best_so_far():
    x, best = analysis.best_so_far([(30, 1), (10, 5), (20, 3), (40, np.nan), (50, 7)])
    np.testing.assert_allclose(x, [10, 20, 30, 40, 50])
    np.testing.assert_allclose(best, [5, 5, 5, 5, 7])
    x, best = analysis.best_so_far([(1, np.nan), (2, 4.0)])
    assert np.isnan(best[0]) and best[1] == 4.0
    assert analysis.best_so_far([])[0].size == 0
