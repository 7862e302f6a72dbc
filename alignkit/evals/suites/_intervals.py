"""Percentile-bootstrap intervals for statistics that are not plain means (ratios, perplexity).

`stats.mean_interval` covers means; a ratio of sums (KL per token = Σ KL_i / Σ n_i, corpus
perplexity = exp(Σ NLL_i / Σ n_i)) is not the mean of per-example values, so it is resampled as a
whole: one `numpy.random.Generator(PCG64(seed))` draws `n_boot` resamples of example indices with
replacement, the statistic is evaluated on each, and the interval is the (1-ci)/2 and
1-(1-ci)/2 quantiles (Efron & Tibshirani 1993, ch. 13), as in `alignkit.evals.stats`.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_interval(n: int, statistic: Callable[[np.ndarray], np.ndarray], *,
                       n_boot: int = 2000, seed: int = 0,
                       ci: float = 0.95) -> tuple[float | None, float | None]:
    """(lo, hi) of `statistic(idx)` over `n_boot` resamples; `idx` is (n_boot, n) indices.

    `statistic` maps the index array to one value per resample, (n_boot,). Non-finite values
    (e.g. a resample whose denominator is 0) are dropped; if none is left, or n < 2, the
    interval is (None, None): there is no spread to estimate.

        >>> x = np.array([1.0, 2.0, 3.0])
        >>> lo, hi = bootstrap_interval(3, lambda idx: x[idx].mean(axis=1), n_boot=500)
        >>> 1.0 <= lo < 2.0 < hi <= 3.0
        True
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    if n < 2:
        return None, None
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, n, size=(n_boot, n))  # (n_boot, n)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = np.asarray(statistic(idx), dtype=np.float64)  # (n_boot,)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    alpha = (1.0 - ci) / 2.0
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))


def ratio_of_sums(num: np.ndarray, den: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The statistic Σ num[idx] / Σ den[idx] per resample (a ratio estimator)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return lambda idx: num[idx].sum(axis=1) / den[idx].sum(axis=1)
