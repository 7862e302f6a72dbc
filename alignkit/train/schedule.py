"""Learning-rate schedules: linear warmup, then cosine / linear decay or constant.

``lr_at`` is a pure function of the optimizer step, so a resumed run recomputes exactly the
learning rate an uninterrupted run used. Steps are 0-based: ``lr_at(0, ...)`` is the rate of the
first optimizer step.

* Warmup (Goyal et al. 2017, "Accurate, Large Minibatch SGD", sec. 2.2): step ``s < W`` uses
  ``lr * (s + 1) / W`` -- the first step already moves (``lr / W``) and step ``W - 1`` uses the
  full ``lr``. (Deviation from the common ``s / W``, which wastes the first step at rate 0.)
* Decay over the remaining ``D = total_steps - W`` steps with ``p = (s - W) / D`` in [0, 1):
  cosine (Loshchilov & Hutter 2017, "SGDR", eq. 5 without restarts)
  ``f = 0.5 * (1 + cos(pi * p))``, or linear ``f = 1 - p``; the rate is
  ``lr * (m + (1 - m) * f)`` with ``m = min_lr_ratio``. ``p`` never reaches 1 inside the run,
  so the last step still trains (the floor ``m * lr`` is where the curve would land one step
  after the end).

    >>> lr_at(0, base_lr=1.0, total_steps=10, warmup_steps=2)
    0.5
    >>> lr_at(6, base_lr=1.0, total_steps=10, warmup_steps=2, schedule="cosine")
    0.5
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from alignkit.errors import ConfigError


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(progress: float) -> float:
    return 1.0 - progress


def _constant(progress: float) -> float:
    return 1.0


# Decay shape after warmup, as a function of progress p in [0, 1) -> factor in (0, 1].
DECAYS: dict[str, Callable[[float], float]] = {
    "cosine": _cosine,
    "linear": _linear,
    "constant": _constant,
}


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup_steps: int = 0,
          schedule: str = "cosine", min_lr_ratio: float = 0.0) -> float:
    """Learning rate of 0-based optimizer step ``step`` (see the module docstring for formulas).

    >>> lr_at(4, base_lr=1.0, total_steps=10, warmup_steps=2, schedule="linear")
    0.75
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if schedule not in DECAYS:
        raise ConfigError(f"unknown schedule {schedule!r} (valid: {', '.join(DECAYS)})")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    # clamped: steps past the end stay at the floor
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    factor = DECAYS[schedule](progress)
    return base_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * factor)


def _factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str,
            min_lr_ratio: float) -> float:
    return lr_at(step, base_lr=1.0, total_steps=total_steps, warmup_steps=warmup_steps,
                 schedule=schedule, min_lr_ratio=min_lr_ratio)


def make_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int = 0,
                   schedule: str = "cosine",
                   min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that sets each param group's lr to ``group_initial_lr * lr_at(step)/lr``.

    Call ``scheduler.step()`` once after each ``optimizer.step()``. The factor is a
    ``functools.partial`` of a module function, so the scheduler's ``state_dict`` carries only
    its step counter, never a stale copy of the schedule settings.
    """
    if schedule not in DECAYS:
        raise ConfigError(f"unknown schedule {schedule!r} (valid: {', '.join(DECAYS)})")
    fn = functools.partial(_factor, total_steps=total_steps, warmup_steps=warmup_steps,
                           schedule=schedule, min_lr_ratio=min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
