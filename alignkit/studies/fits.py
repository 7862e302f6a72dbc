"""Least-squares fits of the over-optimisation functional forms (Gao, Schulman & Hilton 2022).

With d = sqrt(KL(π ‖ π_ref)) and R(d) the reward gained over the starting policy
(R(0) := 0 by definition in the paper, so the measured rewards are first shifted by their
value at d = 0):

    best-of-n:  R_bon(d) = d (α − β d)       = α·d − β·d²
    RL:         R_RL(d)  = d (α − β log d)   = α·d − β·d·log d      (d·log d := 0 at d = 0)

Both are linear in (α, β), so ordinary least squares on the two features gives them exactly
(no iterative optimiser, no starting point): minimise Σ_i (R_i − α x_i + β z_i)² with x = d and
z = d² (bon) or d·log d (RL). The peak of the fitted curve is where dR/dd = 0:
d* = α / (2β) for best-of-n and d* = exp(α/β − 1) for RL (both need β > 0; otherwise the fit
has no interior maximum and `d_peak` is None).

    >>> f = fit_bon([1.0, 2.0, 3.0], [0.5, 0.0, -1.5])   # points on d(1 − 0.5 d)
    >>> round(f["alpha"], 6), round(f["beta"], 6), round(f["d_peak"], 6)
    (1.0, 0.5, 1.0)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

FORM_BON = "R(d) = d (alpha - beta d)"
FORM_RL = "R(d) = d (alpha - beta log d)"


def _d_log_d(d: float) -> float:
    return d * math.log(d) if d > 0 else 0.0


def _fit(d: Sequence[float], r: Sequence[float], second: Callable[[float], float],
         form: str, peak: Callable[[float, float], float | None]) -> dict[str, Any]:
    import numpy as np

    if len(d) != len(r):
        raise ValueError(f"{len(d)} d values but {len(r)} rewards")
    x = np.asarray(d, dtype=np.float64)
    y = np.asarray(r, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("d and rewards must be finite")
    if (x < 0).any():
        raise ValueError("d = sqrt(KL) cannot be negative")
    X = np.stack([x, -np.asarray([second(v) for v in x])], axis=1)  # (P, 2)
    informative = int((x > 0).sum())
    out: dict[str, Any] = {"form": form, "alpha": None, "beta": None, "rmse": None,
                           "d_peak": None, "n_points": len(x)}
    if informative < 2 or np.linalg.matrix_rank(X) < 2:
        out["note"] = "fewer than two distinct d > 0: nothing to fit"
        return out
    (alpha, beta), *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ np.array([alpha, beta])
    out.update(alpha=float(alpha), beta=float(beta), rmse=float(np.sqrt((resid ** 2).mean())),
               d_peak=peak(float(alpha), float(beta)))
    return out


def fit_bon(d: Sequence[float], r: Sequence[float]) -> dict[str, Any]:
    """α, β of R_bon(d) = d(α − β d) by least squares; r must already be R(d) − R(0).

    Returns {"form", "alpha", "beta", "rmse", "d_peak", "n_points"} (alpha/beta/rmse/d_peak
    None with a "note" when fewer than two points have d > 0).
    """
    return _fit(d, r, lambda v: v * v, FORM_BON,
                lambda a, b: a / (2 * b) if b > 0 and a > 0 else None)


def fit_rl(d: Sequence[float], r: Sequence[float]) -> dict[str, Any]:
    """α, β of R_RL(d) = d(α − β log d) by least squares; r must already be R(d) − R(0)."""
    def peak(a: float, b: float) -> float | None:
        if b <= 0:
            return None
        e = a / b - 1
        return math.exp(e) if e < 700 else None  # beyond float range: no peak in sight
    return _fit(d, r, _d_log_d, FORM_RL, peak)


def predict(fit: dict[str, Any], d: Sequence[float]) -> list[float] | None:
    """The fitted curve at `d` (None when the fit has no parameters)."""
    if fit.get("alpha") is None:
        return None
    a, b = fit["alpha"], fit["beta"]
    second = (lambda v: v * v) if fit["form"] == FORM_BON else _d_log_d
    return [a * v - b * second(v) for v in d]


__all__ = ["FORM_BON", "FORM_RL", "fit_bon", "fit_rl", "predict"]
