"""Uncertainty for evaluation numbers: rates with Wilson intervals, paired bootstrap, slices.

Every metric alignkit reports is an estimate from a finite sample, so it comes with an interval:

- `wilson_interval` / `rate`: a binomial rate (refusal rate, attack success, win rate) with the
  Wilson (1927) score interval, which stays inside [0, 1] and behaves at k = 0 or k = n, unlike
  the normal "p ± z·sqrt(p(1-p)/n)" interval.
- `paired_bootstrap_diff`: the difference of two systems scored on the *same* examples
  (Efron & Tibshirani 1993, ch. 13 percentile interval; the paired design as in Koehn 2004,
  "Statistical Significance Tests for Machine Translation Evaluation").
- `mean_interval`: the mean of a non-binary per-example metric (percentile bootstrap, or the
  normal approximation).
- `slice_rates`: a rate per slice (category, prompt type, ...) of a list of records.

    >>> est = rate(8, 10)
    >>> round(est.value, 2), round(est.lo, 3), round(est.hi, 3)
    (0.8, 0.49, 0.943)
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from alignkit.errors import DataError

Z95 = 1.959964  # two-sided 95% standard-normal quantile, Phi^-1(0.975)


def wilson_interval(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (Wilson 1927, JASA 22:209).

    With p = k/n:
        centre = (p + z²/(2n)) / (1 + z²/n)
        half   = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/(4n²))
        (lo, hi) = (centre - half, centre + half), clipped to [0, 1] against rounding.

    `k` may be fractional (e.g. wins + ties/2 in `winrate.win_rate`); the formula is then an
    approximation, since the count is no longer binomial. With n = 0 there is no information
    and the interval is the whole range (0.0, 1.0).

        >>> [round(x, 4) for x in wilson_interval(0, 10)]
        [0.0, 0.2775]
    """
    if isinstance(n, bool) or not float(n).is_integer() or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not (math.isfinite(k) and 0 <= k <= n):
        raise ValueError(f"k must satisfy 0 <= k <= n = {n}, got {k!r}")
    if not (math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a positive number, got {z!r}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RateEstimate:
    """A rate k/n with its Wilson interval. `value` is NaN when n = 0 (interval (0, 1))."""

    value: float
    lo: float
    hi: float
    n: int
    k: float

    def as_dict(self) -> dict:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n, "k": self.k}


def rate(k: float, n: int, z: float = Z95) -> RateEstimate:
    """k successes out of n as a `RateEstimate` (value k/n, Wilson interval at `z`).

        >>> rate(0, 0).lo, rate(0, 0).hi
        (0.0, 1.0)
    """
    lo, hi = wilson_interval(k, n, z)
    return RateEstimate(value=k / n if n else float("nan"), lo=lo, hi=hi, n=int(n), k=k)


def _as_1d(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat list of numbers, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is not a finite number ({arr[bad[0]]})")
    return arr


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")


def _percentile_interval(boot: np.ndarray, ci: float) -> tuple[float, float]:
    # numpy's default "linear" quantile (type 7 in Hyndman & Fan 1996).
    alpha = (1.0 - ci) / 2.0
    return float(np.quantile(boot, alpha)), float(np.quantile(boot, 1.0 - alpha))


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], n_boot: int = 2000,
                          seed: int = 0, ci: float = 0.95) -> tuple[float, float, float]:
    """Mean of a - b over paired examples, with a percentile bootstrap interval.

    `a[i]` and `b[i]` are two systems' scores on the same example i (shape (N,) each). One
    `numpy.random.Generator(PCG64(seed))` draws `n_boot` resamples of example indices with
    replacement (one (n_boot, N) integer array); each resample gives mean(a[idx] - b[idx]).
    The interval is the (1-ci)/2 and 1-(1-ci)/2 quantiles of those means ("percentile
    interval", Efron & Tibshirani 1993, ch. 13; numpy's linear quantile). Pairing keeps the
    per-example correlation of a and b, so the interval is much tighter than for two
    independent samples when the systems agree on which examples are hard.

    Returns (diff, lo, hi) with diff = mean(a) - mean(b) on the original sample.

        >>> paired_bootstrap_diff([1, 1, 0], [0, 1, 0], n_boot=500)[0] == 1 / 3
        True
    """
    xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"a and b must be paired (same length), got {xa.size} and {xb.size}")
    if xa.size == 0:
        raise ValueError("a and b are empty")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    _check_ci(ci)
    d = xa - xb  # (N,)
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, d.size, size=(n_boot, d.size))  # (n_boot, N)
    boot = d[idx].mean(axis=1)  # (n_boot,)
    lo, hi = _percentile_interval(boot, ci)
    return float(d.mean()), lo, hi


def mean_interval(values: Sequence[float], ci: float = 0.95, method: str = "bootstrap",
                  n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a non-binary per-example metric (shape (N,)) with an interval: (mean, lo, hi).

    method="bootstrap" (default): percentile bootstrap over examples, exactly as in
    `paired_bootstrap_diff` (one Generator(PCG64(seed)), `n_boot` resamples).
    method="normal": mean ± z·s/sqrt(N), s the sample standard deviation (ddof = 1) and z the
    standard-normal quantile for `ci`; appropriate for large N only (no Student-t correction).
    N = 1 gives (x, x, x) with either method: one value carries no spread information.

        >>> mean_interval([1.0, 2.0, 3.0], method="normal")[0]
        2.0
    """
    x = _as_1d(values, "values")
    if x.size == 0:
        raise ValueError("values is empty")
    _check_ci(ci)
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    if method == "bootstrap":
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {n_boot}")
        rng = np.random.Generator(np.random.PCG64(seed))
        boot = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)  # (n_boot,)
        lo, hi = _percentile_interval(boot, ci)
        return mean, lo, hi
    if method == "normal":
        z = _normal_quantile(0.5 + ci / 2.0)
        half = z * float(x.std(ddof=1)) / math.sqrt(x.size)
        return mean, mean - half, mean + half
    raise ValueError(f"method must be 'bootstrap' or 'normal', got {method!r}")


def _normal_quantile(p: float) -> float:
    """Standard-normal quantile by bisection on Phi(x) = (1 + erf(x/√2))/2 (exact to ~1e-12)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def _as_binary(value: object, *, file: str | None, line: int, field: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    raise DataError(f"expected a boolean or 0/1, got {value!r}", file=file, line=line,
                    field=field)


def slice_rates(records: Sequence[Mapping], by: str, value_key: str, *,
                file: str | None = None, z: float = Z95) -> dict[Hashable, RateEstimate]:
    """Rate of `value_key` (bool or 0/1) per value of `by`, each with a Wilson interval.

    `records` are dicts; record i is reported as line i+1 (of `file`, when given) in errors.
    A missing key, an unhashable slice value or a non-binary value is a DataError naming the
    line and field. Slices come out sorted by their string form, so reports are stable.

        >>> rows = [{"cat": "x", "ok": True}, {"cat": "x", "ok": False}, {"cat": "y", "ok": 1}]
        >>> {s: (e.k, e.n) for s, e in slice_rates(rows, "cat", "ok").items()}
        {'x': (1, 2), 'y': (1, 1)}
    """
    counts: dict[Hashable, list[int]] = {}
    for i, rec in enumerate(records):
        line = i + 1
        if not isinstance(rec, Mapping):
            raise DataError(f"expected an object, got {type(rec).__name__}", file=file, line=line)
        for key in (by, value_key):
            if key not in rec:
                raise DataError("missing", file=file, line=line, field=key)
        key = rec[by]
        if not isinstance(key, Hashable):
            raise DataError(f"slice value must be hashable (str, int, ...), got "
                            f"{type(key).__name__}", file=file, line=line, field=by)
        hit = _as_binary(rec[value_key], file=file, line=line, field=value_key)
        c = counts.setdefault(key, [0, 0])
        c[0] += hit
        c[1] += 1
    return {s: rate(counts[s][0], counts[s][1], z) for s in sorted(counts, key=str)}
