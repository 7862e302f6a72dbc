"""Threshold-free and at-threshold quality of a scorer: ROC/AUROC, PR/AP, FPR and FNR.

Labels: 1 = unsafe (positive, should be flagged), 0 = benign. A text is flagged when
score >= t. Both curves sweep t down through the distinct scores u_1 > u_2 > ... > u_K; at
step k, TP_k and FP_k count positives and negatives with score >= u_k (a tie enters at once).

- ROC: (FPR_k, TPR_k) = (FP_k / N_neg, TP_k / N_pos), starting at (0, 0) for t = +inf.
  AUROC is the trapezoid area under these points, which equals the Mann-Whitney probability
  P(s_pos > s_neg) + 0.5 · P(s_pos = s_neg) (Hanley & McNeil 1982, Radiology 143:29).
- PR: precision P_k = TP_k / (TP_k + FP_k), recall R_k = TP_k / N_pos. Average precision
  (AUPRC) is the step-wise sum without interpolation, as in scikit-learn's
  `average_precision_score` (scikit-learn user guide §3.4.4.9, "Precision, recall and
  F-measures"; see also Davis & Goadrich 2006, ICML, on why linear interpolation in PR space
  is wrong):

      AP = sum_k (R_k - R_{k-1}) · P_k,    R_0 = 0.

  A scorer that ranks at random has AP ≈ N_pos / N (the base rate), not 0.5.

    >>> roc = roc_curve([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    >>> roc.fpr, roc.tpr
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    >>> auroc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    0.75
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alignkit.errors import DataError
from alignkit.evals.stats import RateEstimate, rate


def _check(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be flat and the same length, got shapes "
                         f"{s.shape} and {y.shape}")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"scores[{bad[0]}] is not a finite number ({s[bad[0]]})")
    if not np.isin(y, (0, 1)).all():
        i = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
        raise DataError(f"labels must be 0 or 1, got {y[i]!r}", line=i + 1, field="label")
    return s, y.astype(np.int64)


def _need_both(y: np.ndarray, what: str) -> None:
    if y.sum() == 0 or y.sum() == len(y):
        missing = "unsafe (1)" if y.sum() == 0 else "benign (0)"
        raise DataError(f"{what} needs both classes, but there is no {missing} example",
                        field="label")


def _cumulative_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct thresholds descending (K,), TP at each (K,), FP at each (K,))."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of every run of equal scores: where a threshold step ends.
    ends = np.flatnonzero(np.diff(s_sorted) != 0)
    ends = np.append(ends, len(s_sorted) - 1)
    tp = np.cumsum(y_sorted)[ends]
    fp = (ends + 1) - tp
    return s_sorted[ends], tp, fp


@dataclass(frozen=True)
class RocCurve:
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float | None]  # None for the first point (flag nothing)

    def as_dict(self) -> dict:
        return {"fpr": self.fpr, "tpr": self.tpr, "threshold": self.thresholds}


@dataclass(frozen=True)
class PrCurve:
    recall: list[float]
    precision: list[float]
    thresholds: list[float | None]  # None for the first point (recall 0, precision 1)

    def as_dict(self) -> dict:
        return {"recall": self.recall, "precision": self.precision, "threshold": self.thresholds}


def roc_curve(scores: Sequence[float], labels: Sequence[int]) -> RocCurve:
    """ROC points (see module docstring), one per distinct score plus (0, 0)."""
    s, y = _check(scores, labels)
    _need_both(y, "a ROC curve")
    thr, tp, fp = _cumulative_counts(s, y)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    return RocCurve(fpr=[0.0] + (fp / n_neg).tolist(), tpr=[0.0] + (tp / n_pos).tolist(),
                    thresholds=[None] + thr.tolist())


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve by the trapezoid rule (= Mann-Whitney, ties count 1/2)."""
    roc = roc_curve(scores, labels)
    x, y = np.asarray(roc.fpr), np.asarray(roc.tpr)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def pr_curve(scores: Sequence[float], labels: Sequence[int]) -> PrCurve:
    """PR points, one per distinct score, after a first point (recall 0, precision 1)."""
    s, y = _check(scores, labels)
    if y.sum() == 0:
        raise DataError("a PR curve needs at least one unsafe (1) example", field="label")
    thr, tp, fp = _cumulative_counts(s, y)
    return PrCurve(recall=[0.0] + (tp / y.sum()).tolist(),
                   precision=[1.0] + (tp / (tp + fp)).tolist(), thresholds=[None] + thr.tolist())


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float:
    """AP = sum_k (R_k - R_{k-1}) P_k over the distinct thresholds (scikit-learn's definition)."""
    pr = pr_curve(scores, labels)
    r, p = np.asarray(pr.recall), np.asarray(pr.precision)
    return float(np.sum(np.diff(r) * p[1:]))


@dataclass(frozen=True)
class ErrorRates:
    """Errors of `score >= threshold` on labelled data, each a rate with a Wilson interval."""

    threshold: float
    fpr: RateEstimate  # benign texts flagged / benign texts
    fnr: RateEstimate  # unsafe texts not flagged / unsafe texts
    precision: RateEstimate  # unsafe among flagged / flagged (NaN when nothing is flagged)
    flagged: RateEstimate  # flagged / all

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "fpr": self.fpr.as_dict(),
                "fnr": self.fnr.as_dict(), "precision": self.precision.as_dict(),
                "flagged": self.flagged.as_dict()}


def error_rates(scores: Sequence[float], labels: Sequence[int], threshold: float) -> ErrorRates:
    """FPR = FP / N_neg and FNR = FN / N_pos at `threshold`, with Wilson intervals
    (`alignkit.evals.stats.rate`; n = 0 gives value NaN and interval (0, 1))."""
    s, y = _check(scores, labels)
    flag = s >= threshold
    fp = int((flag & (y == 0)).sum())
    fn = int((~flag & (y == 1)).sum())
    tp = int((flag & (y == 1)).sum())
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return ErrorRates(threshold=float(threshold), fpr=rate(fp, n_neg), fnr=rate(fn, n_pos),
                      precision=rate(tp, tp + fp), flagged=rate(int(flag.sum()), len(y)))
