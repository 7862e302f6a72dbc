"""L2-regularised logistic regression on hashed text features, trained full-batch with L-BFGS.

Model: score(x) = sigmoid(w·x + b), a number in [0, 1] read as "how likely the text violates
the policy" (label 1 = unsafe). Objective, minimised over (w, b):

    L(w, b) = sum_i c_i [log(1 + exp(z_i)) - y_i z_i] / sum_i c_i  +  (l2 / 2) ||w||²
    z_i = w·x_i + b,   y_i in {0, 1}

(the bias is not penalised). With ``balance_classes`` each class gets the same total weight,
c_i = N / (2 N_{y_i}) (King & Zeng 2001's weighting; scikit-learn's class_weight="balanced"),
so a training set that is mostly unsafe does not push every score up. The gradient is

    dL/dw = X^T r + l2 w,   dL/db = sum_i r_i,   r_i = c_i (sigmoid(z_i) - y_i) / sum_j c_j.

The loss and gradient are computed in NumPy float64 with `np.bincount` (sums in index order,
so a run is bit-for-bit repeatable); torch's L-BFGS (Nocedal 1980, with a strong-Wolfe line
search) only proposes the steps. The problem is strictly convex for l2 > 0, so the optimum is
unique and does not depend on an initialisation or a seed.

    >>> clf = train_classifier(["burn the barn", "bake the bread"] * 4, [1, 0] * 4,
    ...                        FeatureSpec(dim=2**10))
    >>> s = clf.score(["burn it down", "bake a cake"])
    >>> bool(s[0] > 0.5 > s[1])
    True
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from alignkit.errors import ConfigError, DataError
from alignkit.guard.features import FeatureSpec, SparseRows, featurize


class TrainSpec(BaseModel):
    """How the classifier is fitted; stored in the guard's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    l2: float = Field(1e-4, gt=0)  # weight of (1/2)||w||² next to the mean log-loss
    max_iter: int = Field(300, ge=1)  # L-BFGS iterations (each may evaluate the loss several times)
    balance_classes: bool = True  # each class gets half of the total example weight
    history_size: int = Field(20, ge=1)  # L-BFGS curvature pairs kept


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow: exp(-log(1 + exp(-z)))."""
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass
class LinearClassifier:
    """score(text) = sigmoid(w·features(text) + b). `weights` is float32, as saved."""

    spec: FeatureSpec
    weights: np.ndarray  # (dim,) float32
    bias: float
    fit: dict | None = None  # how training ended: loss, gradient norm, iterations, examples

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) float64 w·x + b."""
        x = featurize(texts, self.spec)
        return x.dot(self.weights.astype(np.float64)) + self.bias

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) float64 scores in [0, 1]."""
        return sigmoid(self.logits(texts))


def _example_weights(y: np.ndarray, balance: bool) -> np.ndarray:
    if not balance:
        return np.ones_like(y, dtype=np.float64)
    n, n_pos = len(y), int(y.sum())
    return np.where(y == 1, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))


def loss_and_grad(x: SparseRows, y: np.ndarray, c: np.ndarray, w: np.ndarray, b: float,
                  l2: float) -> tuple[float, np.ndarray, float]:
    """L(w, b) and its gradient (see the module docstring). Shapes: y, c (N,); w (dim,)."""
    z = x.dot(w) + b  # (N,)
    total = c.sum()
    loss = float(np.dot(c, np.logaddexp(0.0, z) - y * z) / total + 0.5 * l2 * np.dot(w, w))
    r = c * (sigmoid(z) - y) / total  # (N,)
    return loss, x.rdot(r) + l2 * w, float(r.sum())


def _check_labels(labels: Sequence[int], n_texts: int) -> np.ndarray:
    y = np.asarray(labels, dtype=np.float64)
    if y.shape != (n_texts,):
        raise DataError(f"got {n_texts} texts but {y.size} labels", field="label")
    if not np.isin(y, (0.0, 1.0)).all():
        bad = int(np.flatnonzero(~np.isin(y, (0.0, 1.0)))[0])
        raise DataError(f"labels must be 0 (safe) or 1 (unsafe), got {labels[bad]!r}",
                        line=bad + 1, field="label")
    if y.sum() == 0 or y.sum() == len(y):
        which = "unsafe (1)" if y.sum() == 0 else "safe (0)"
        raise DataError(f"training data needs both classes, but it has no {which} example",
                        field="label")
    return y


def train_classifier(texts: Sequence[str], labels: Sequence[int], spec: FeatureSpec | None = None,
                     train: TrainSpec | None = None) -> LinearClassifier:
    """Fit the classifier on `texts` with labels 1 = unsafe, 0 = safe (N each)."""
    import torch  # only training needs it; scoring is NumPy

    spec = spec if spec is not None else FeatureSpec()
    train = train if train is not None else TrainSpec()
    y = _check_labels(labels, len(texts))
    x = featurize(texts, spec)
    c = _example_weights(y, train.balance_classes)
    theta = torch.zeros(spec.dim + 1, dtype=torch.float64, requires_grad=True)  # [w, b]
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=train.max_iter,
                            max_eval=train.max_iter * 2, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=train.history_size,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        t = theta.detach().numpy()
        loss, gw, gb = loss_and_grad(x, y, c, t[:-1], float(t[-1]), train.l2)
        theta.grad = torch.from_numpy(np.append(gw, gb))
        return torch.tensor(loss, dtype=torch.float64)

    opt.step(closure)
    t = theta.detach().numpy()
    if not np.isfinite(t).all():
        raise ConfigError("training diverged (non-finite weights); try a larger l2")
    loss, gw, gb = loss_and_grad(x, y, c, t[:-1], float(t[-1]), train.l2)
    fit = {"loss": loss, "grad_norm": float(np.sqrt(np.dot(gw, gw) + gb * gb)),
           "n_iter": int(opt.state[theta].get("n_iter", 0)), "n_train": len(texts),
           "n_unsafe": int(y.sum())}
    return LinearClassifier(spec=spec, weights=t[:-1].astype(np.float32), bias=float(t[-1]),
                            fit=fit)
