"""Pure statistics for the evaluation report: Procgen normalisation, IQM, bootstrap CIs,
seed-aggregated learning curves and best-so-far curves.

Conventions (stated once, used by `rldarts.report`):
- Non-finite values (NaN: "no episode finished", inf) are dropped before any statistic.
- The interquartile mean is the *exact* one: each of the n sorted samples carries mass 1/n
  and the samples straddling the 25% and 75% quantiles count with the fraction of their
  mass inside [0.25, 0.75]. For n divisible by 4 it equals ``scipy.stats.trim_mean(x, 0.25)``
  (what rliable reports); for other n it does not drop whole samples (trim_mean(x, 0.25) of
  3 values is their plain mean; ours is (x1 + 4 x2 + x3) / 6).
- Confidence intervals are percentile bootstraps with a seeded NumPy generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rldarts.env import procgen_scores


def _finite(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def normalized_scores(game: str, returns) -> np.ndarray:
    """(R - Rmin) / (Rmax - Rmin) elementwise with the easy-mode constants of
    `procgen_scores.CONSTANT_TABLE`. Unknown games (e.g. classic control) give NaN."""
    r = np.asarray(returns, dtype=np.float64)
    if game not in procgen_scores.load():
        return np.full(r.shape, np.nan)
    return np.asarray(procgen_scores.normalized_score(game, r), dtype=np.float64)  # linear


def interquartile_mean(x) -> float:
    """Mean of the middle 50% of the finite values, with fractional weights at the two
    boundaries (see the module docstring). NaN for no values."""
    a = np.sort(_finite(x))
    n = a.size
    if n == 0:
        return float("nan")
    lo = np.arange(n) / n
    weights = np.clip(np.minimum(lo + 1.0 / n, 0.75) - np.maximum(lo, 0.25), 0.0, None)
    return float(np.dot(weights, a) / 0.5)


def bootstrap_ci(
    x,
    statistic: Callable[[np.ndarray], float],
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic` over the finite values of `x`.

    Draws `num_resamples` resamples of size n with replacement (``np.random.default_rng(seed)``)
    and returns the (1 - confidence)/2 and (1 + confidence)/2 quantiles of the statistic.
    One value gives (v, v); none gives (nan, nan).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be positive, got {num_resamples}")
    a = _finite(x)
    if a.size == 0:
        return float("nan"), float("nan")
    if a.size == 1:
        v = float(statistic(a))
        return v, v
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(num_resamples, a.size))
    stats = np.array([statistic(a[i]) for i in idx], dtype=np.float64)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def aggregate(scores, num_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean and IQM of the finite `scores` with percentile-bootstrap CIs:
    ``{"mean", "mean_ci": (lo, hi), "iqm", "iqm_ci": (lo, hi), "n"}``."""
    a = _finite(scores)
    mean = float(a.mean()) if a.size else float("nan")
    kw = dict(num_resamples=num_resamples, confidence=confidence, seed=seed)
    return {
        "mean": mean,
        "mean_ci": bootstrap_ci(a, np.mean, **kw),
        "iqm": interquartile_mean(a),
        "iqm_ci": bootstrap_ci(a, interquartile_mean, **kw),
        "n": int(a.size),
    }


def mean_and_band(curves: Sequence[tuple[Sequence[float], Sequence[float]]]):
    """Aggregates per-seed curves ``[(x, y), ...]`` on a common grid.

    The grid is the sorted union of every seed's x (env steps). Each seed is linearly
    interpolated onto the grid *inside its own x range only* (no extrapolation), so a
    partial seed stops contributing where it ends and n varies along the grid. Points with
    non-finite y are dropped first. At each grid point with n seeds:
    n >= 3: band = mean +- 1.96 * std(ddof=1) / sqrt(n) (normal-approximation 95% CI);
    n < 3: band = [min, max] over the seeds (a CI from 1-2 seeds would be meaningless).
    Returns ``(x_grid, mean, low, high)`` as float arrays (all empty without data).
    """
    cleaned = []
    for x, y in curves:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"curve x and y differ in shape: {x.shape} vs {y.shape}")
        keep = np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[keep], kind="stable")
        if order.size:
            cleaned.append((x[keep][order], y[keep][order]))
    if not cleaned:
        empty = np.zeros(0)
        return empty, empty.copy(), empty.copy(), empty.copy()
    grid = np.unique(np.concatenate([x for x, _ in cleaned]))
    values = np.full((len(cleaned), grid.size), np.nan)
    for k, (x, y) in enumerate(cleaned):
        inside = (grid >= x[0]) & (grid <= x[-1])
        values[k, inside] = np.interp(grid[inside], x, y)
    n = np.isfinite(values).sum(axis=0)
    mean = np.nanmean(values, axis=0)
    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    many = n >= 3
    if many.any():
        std = np.nanstd(values[:, many], axis=0, ddof=1)
        half = 1.96 * std / np.sqrt(n[many])
        low[many], high[many] = mean[many] - half, mean[many] + half
    return grid, mean, low, high


def best_so_far(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative-max curve of ``[(total_env_steps_spent, return), ...]``.

    Points are sorted by steps spent (stable); a non-finite return never improves the best
    (the best stays NaN until the first finite return). Returns ``(steps, best)`` arrays.
    """
    if not points:
        return np.zeros(0), np.zeros(0)
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    return arr[:, 0], np.fmax.accumulate(arr[:, 1])


SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"


def verdict(ci, n: int, supported_above: float, refuted_below: float, min_n: int = 3) -> str:
    """The one-word verdict a CI gives a claim "effect > supported_above": supported when
    the whole CI lies above `supported_above`, not supported when it lies wholly below
    `refuted_below` (<= supported_above is not required: an equivalence margin may sit
    above it), else inconclusive; always inconclusive with fewer than `min_n` values (a
    bootstrap CI of 1-2 values is no evidence)."""
    lo, hi = ci
    if n < min_n or not (np.isfinite(lo) and np.isfinite(hi)):
        return INCONCLUSIVE
    if lo > supported_above:
        return SUPPORTED
    if hi < refuted_below:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def relative_scores(returns, low: float, high: float) -> np.ndarray:
    """(R - low) / (high - low): 0 = `low` (an untrained agent), 1 = `high` (the
    baseline's mean); NaN when high <= low (nothing to normalise by)."""
    r = np.asarray(returns, dtype=np.float64)
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return np.full(r.shape, np.nan)
    return (r - low) / (high - low)
