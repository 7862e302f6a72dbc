"""Calibration of predicted probabilities: expected calibration error and temperature scaling.

Both follow Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks"
(ICML), Sec. 2 (ECE, Eq. 3) and Sec. 4.2 (temperature scaling).

    >>> round(expected_calibration_error([0.1, 0.4, 0.6, 0.9], [0, 1, 1, 1], n_bins=2), 6)
    0.25
    >>> round(fit_temperature([2.0, 2.0, 2.0, 2.0], [1, 1, 1, 0]), 4)  # 2 / ln 3
    1.8205
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...
T_MIN, T_MAX = 1e-3, 1e3  # search range of fit_temperature


def _labels(labels: Sequence[int], n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.size != n:
        raise ValueError(f"labels must be a flat list of {n} labels, got shape {y.shape}")
    if y.size and not np.all(np.isin(y, np.arange(n_classes))):
        bad = int(np.flatnonzero(~np.isin(y, np.arange(n_classes)))[0])
        raise ValueError(f"labels[{bad}] = {y[bad]!r} is not a class in 0..{n_classes - 1}")
    return y.astype(np.int64)


def expected_calibration_error(probs: Sequence[float] | Sequence[Sequence[float]],
                               labels: Sequence[int], n_bins: int = 15) -> float:
    """ECE = Σ_b (n_b / N) · |acc_b − conf_b| over `n_bins` equal-width bins (Guo et al. Eq. 3).

    Two input forms:
    - `probs` shape (N,): the predicted probability that the label is 1, `labels` in {0, 1}.
      conf_b = mean predicted probability in bin b, acc_b = fraction of label 1 in bin b
      (calibration of the positive-class probability, e.g. a reward model's σ(r_c − r_r)).
    - `probs` shape (N, C): class probabilities, integer `labels`; Guo et al.'s top-label form:
      conf = max_c p_c, correct = (argmax_c p_c == label), acc_b = fraction correct.

    Bin edges: bin b (1-based) is ((b−1)/M, b/M]; a probability exactly on an edge goes to the
    lower bin and 0.0 goes to the first bin. Empty bins contribute nothing.

        >>> expected_calibration_error([0.5, 0.5], [0, 1])
        0.0
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim not in (1, 2) or p.shape[0] == 0:
        raise ValueError(f"probs must have shape (N,) or (N, C) with N > 0, got {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite and within [0, 1]")
    if p.ndim == 1:
        y = _labels(labels, p.shape[0], 2)
        conf, hit = p, y.astype(np.float64)  # (N,), (N,)
    else:
        y = _labels(labels, p.shape[0], p.shape[1])
        conf = p.max(axis=1)  # (N,)
        hit = (p.argmax(axis=1) == y).astype(np.float64)  # (N,)
    edges = np.linspace(0.0, 1.0, n_bins + 1)  # (M+1,)
    # side="left": a value equal to edges[b] gets index b, i.e. bin (edges[b-1], edges[b]].
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (N,)
    n = conf.size
    ece = 0.0
    for b in range(n_bins):
        mask = which == b
        n_b = int(mask.sum())
        if n_b:
            ece += n_b / n * abs(float(hit[mask].mean()) - float(conf[mask].mean()))
    return ece


def _nll_binary(x: np.ndarray, y: np.ndarray, t: float) -> float:
    # -log σ(s·x/T) with s = ±1 = log(1 + exp(-s·x/T)); logaddexp is stable for large |x/T|.
    s = 2.0 * y - 1.0
    return float(np.logaddexp(0.0, -s * x / t).mean())


def _nll_multiclass(z: np.ndarray, y: np.ndarray, t: float) -> float:
    zt = z / t  # (N, C)
    m = zt.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(zt - m).sum(axis=1)))  # (N,)
    return float((lse - zt[np.arange(len(y)), y]).mean())


def fit_temperature(logits_or_margins: Sequence[float] | Sequence[Sequence[float]],
                    labels: Sequence[int], tol: float = 1e-10) -> float:
    """The temperature T > 0 that minimises the NLL of the rescaled scores (Guo et al. Sec. 4.2).

    - shape (N,): margins x (e.g. r_chosen − r_rejected, or a binary logit), labels in {0, 1};
      NLL(T) = mean −log σ(±x/T).
    - shape (N, C): logits, integer labels; NLL(T) = mean −log softmax(z/T)[label].

    NLL as a function of β = 1/T is convex (a one-parameter logistic regression), hence
    unimodal in u = log T; golden-section search on u ∈ [log 1e-3, log 1e3] finds it
    deterministically (no random start, no gradient). A result at a bound means the optimum
    is outside the range: T_MIN when the scores separate the labels perfectly, T_MAX when they
    carry no signal or the wrong sign. T > 1 softens over-confident scores.

        >>> round(fit_temperature([1.0, -1.0], [1, 0]), 3)   # perfectly separated
        0.001
    """
    x = np.asarray(logits_or_margins, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise ValueError(f"scores must have shape (N,) or (N, C) with N > 0, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite")
    if x.ndim == 1:
        y = _labels(labels, x.shape[0], 2).astype(np.float64)

        def nll(u: float) -> float:
            return _nll_binary(x, y, math.exp(u))
    else:
        yi = _labels(labels, x.shape[0], x.shape[1])

        def nll(u: float) -> float:
            return _nll_multiclass(x, yi, math.exp(u))

    a, b = math.log(T_MIN), math.log(T_MAX)
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tol:
        if fc <= fd:  # minimum in [a, d]
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = nll(c)
        else:  # minimum in [c, b]
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2.0)


def apply_temperature(margins: Sequence[float], temperature: float) -> np.ndarray:
    """σ(x / T) for margins of shape (N,): calibrated probabilities of label 1, shape (N,)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    x = np.asarray(margins, dtype=np.float64) / temperature
    return 0.5 * (1.0 + np.tanh(x / 2.0))  # = σ(x), without overflow in exp
