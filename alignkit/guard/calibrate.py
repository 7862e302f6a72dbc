"""Pick the guard's threshold for a target false-positive rate on benign calibration texts.

The guard flags a text when score >= t. On n benign calibration scores s_1..s_n the empirical
false-positive rate of a threshold is

    FPR(t) = #{i : s_i >= t} / n,

a step function that only falls as t grows. `calibrate` returns the *smallest* t with
FPR(t) <= target (the smallest t flags the most unsafe texts, i.e. maximises recall):

    m  = floor(target · n)              false positives allowed
    v  = the (m+1)-th largest s_i       (ties counted with multiplicity)
    t  = the next float above v         (np.nextafter(v, +inf))

Any t <= v flags at least m+1 benign texts (v itself and the m scores at or above it), too
many; t just above v flags only the scores strictly above v, at most m. With ties at v, the
whole tie is left unflagged, so the calibration FPR can be well under the target.

Finite-sample caveats (write them next to any FPR you report):

- Resolution: with n benign texts the FPR moves in steps of 1/n. A target below 1/n gives
  m = 0: t lies above the largest benign score (calibration FPR 0, nothing finer is possible).
- The calibration FPR is an in-sample number. For a new benign text exchangeable with the
  calibration set (and no ties), P(score >= t) = (m+1)/(n+1), which can exceed the target:
  target 0.05 with n = 100 gives m = 5 and an expected FPR on new data of 6/101 = 0.059.
  ``method="conformal"`` instead takes m = floor(target · (n+1)) - 1, which guarantees
  E[FPR on new data] = (m+1)/(n+1) <= target (split-conformal quantile; Vovk, Gammerman &
  Shafer 2005; Angelopoulos & Bates 2021, "A Gentle Introduction to Conformal Prediction",
  §1), and needs n >= 1/target - 1 benign texts to exist.
- Either guarantee is about the *average* over calibration sets; one realised test FPR
  scatters around it (report it with a Wilson interval, `alignkit.evals.stats.rate`), and
  nothing holds when deployment texts differ from the calibration texts.

    >>> c = calibrate([0.1, 0.2, 0.3, 0.4, 0.9], target_fpr=0.2)   # m = 1, v = 0.4
    >>> c.threshold > 0.4, c.false_positives, c.allowed_false_positives
    (True, 1, 1)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alignkit.errors import ConfigError, DataError
from alignkit.evals.stats import RateEstimate, rate

METHODS = ("empirical", "conformal")
_EPS = 1e-9  # so that target · n = 28.999999999999996 (0.29 · 100 in floats) counts as 29


@dataclass(frozen=True)
class Calibration:
    """A chosen threshold and what it means on the calibration split."""

    threshold: float  # flag when score >= threshold
    target_fpr: float
    method: str  # "empirical" | "conformal"
    n_benign: int  # n
    allowed_false_positives: int  # m
    false_positives: int  # k = #{benign calibration scores >= threshold} <= m
    fpr: RateEstimate  # k / n with its Wilson interval
    expected_fpr_new: float  # (m+1)/(n+1): E[FPR] on new exchangeable benign texts, no ties

    @property
    def resolution(self) -> float:
        """1/n: the smallest step the calibration FPR can take."""
        return 1.0 / self.n_benign

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "target_fpr": self.target_fpr,
                "method": self.method, "n_benign": self.n_benign,
                "allowed_false_positives": self.allowed_false_positives,
                "false_positives": self.false_positives, "fpr": self.fpr.as_dict(),
                "resolution": self.resolution, "expected_fpr_new": self.expected_fpr_new}


def allowed_false_positives(n: int, target_fpr: float, method: str = "empirical") -> int:
    """m, the number of benign calibration texts the threshold may flag (see module docs)."""
    if method == "empirical":
        m = math.floor(target_fpr * n + _EPS)
    elif method == "conformal":
        m = math.floor(target_fpr * (n + 1) + _EPS) - 1
        if m < 0:
            need = math.ceil(1.0 / target_fpr - 1.0 - _EPS) if target_fpr > 0 else None
            raise ConfigError(
                f"method='conformal' cannot guarantee FPR <= {target_fpr} with {n} benign "
                "calibration texts" + (f"; it needs at least {need}" if need else
                                       " (target 0 is impossible)"))
    else:
        raise ConfigError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
    return min(m, n - 1)  # at most n-1: some benign score must stay below the threshold


def calibrate(scores_benign: Sequence[float], target_fpr: float,
              method: str = "empirical") -> Calibration:
    """The smallest threshold whose FPR on `scores_benign` (shape (n,)) is <= `target_fpr`."""
    if isinstance(target_fpr, bool) or not (isinstance(target_fpr, (int, float))
                                            and 0 <= target_fpr < 1):
        raise ConfigError(f"target_fpr must be a number in [0, 1), got {target_fpr!r}")
    s = np.asarray(scores_benign, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores_benign must be a flat list of numbers, got shape {s.shape}")
    if s.size == 0:
        raise DataError("no benign calibration texts: the threshold cannot be calibrated",
                        field="label")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"scores_benign[{bad[0]}] is not a finite number ({s[bad[0]]})")
    n = int(s.size)
    m = allowed_false_positives(n, float(target_fpr), method)
    v = np.sort(s)[::-1][m]  # the (m+1)-th largest
    threshold = float(np.nextafter(v, np.inf))
    k = int((s >= threshold).sum())
    return Calibration(threshold=threshold, target_fpr=float(target_fpr), method=method,
                       n_benign=n, allowed_false_positives=m, false_positives=k,
                       fpr=rate(k, n), expected_fpr_new=(m + 1) / (n + 1))
