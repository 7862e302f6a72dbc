"""KL coefficient controllers for RL with a KL penalty: fixed, or adaptive towards a target KL.

The adaptive controller is the proportional controller of Ziegler et al. 2019, "Fine-Tuning
Language Models from Human Preferences", Sec. 2.2:

    e_t  = clip(KL_t / KL_target - 1, -0.2, 0.2)
    beta <- beta * (1 + K_beta * e_t),      K_beta = n_steps / horizon

where KL_t is the measured KL of the current batch and n_steps the number of samples (or
steps) since the last update. (The paper writes K_beta as a constant, 0.1; its released code,
lm-human-preferences, scales it by the batch as n_steps / horizon, which is the form used
here, so beta's drift per sample does not depend on the batch size.) Thus ``horizon`` is the
number of samples over which a persistent error of 0.2 changes beta by about e^0.2. The clip
keeps one noisy batch from moving beta far.

Both controllers expose ``.value`` (the beta to use now), ``update(current_kl, n_steps)`` and
``state_dict()`` / ``load_state_dict()`` for checkpoints (plain floats and strings, JSON-safe),
so a resumed run continues with exactly the beta an uninterrupted run would have.

    >>> ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10_000)
    >>> ctl.update(current_kl=12.0, n_steps=256)   # error clipped to +0.2
    >>> round(ctl.value, 6)                        # 0.1 * (1 + 0.0256 * 0.2)
    0.100512
"""
from __future__ import annotations

import math
from typing import Any


def _finite_float(name: str, x: Any) -> float:
    """float(x) for Python numbers and 0-dim tensors; ValueError if not finite."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"'{name}' must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"'{name}' must be finite, got {v}")
    return v


def _positive(name: str, x: Any) -> float:
    v = _finite_float(name, x)
    if v <= 0:
        raise ValueError(f"'{name}' must be > 0, got {v}")
    return v


def _check_n_steps(n_steps: Any) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"'n_steps' must be an int >= 0, got {n_steps!r}")
    return n_steps


class AdaptiveKLController:
    """Proportional KL controller (Ziegler et al. 2019, Sec. 2.2); see the module docstring.

    init_beta: starting KL coefficient (> 0); target: the KL per sequence to hold (> 0, in the
    same units as the ``current_kl`` passed to ``update``); horizon: samples over which beta
    adapts (> 0).
    """

    kind = "adaptive"

    def __init__(self, init_beta: float, target: float, horizon: float):
        self._value = _positive("init_beta", init_beta)
        self.target = _positive("target", target)
        self.horizon = _positive("horizon", horizon)

    @property
    def value(self) -> float:
        return self._value

    def update(self, current_kl: float, n_steps: int) -> None:
        """One controller step from the measured KL of the last ``n_steps`` samples.

        ``current_kl`` may be a float or a 0-dim tensor; a non-finite KL is a ValueError (it
        would turn beta into NaN for the rest of the run). A KL estimate below 0 (k1 can be)
        is allowed; its error clips to -0.2.
        """
        kl = _finite_float("current_kl", current_kl)
        n = _check_n_steps(n_steps)
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        factor = 1.0 + error * n / self.horizon
        if factor <= 0.0:
            # Only possible when n_steps > 5 * horizon: the linearised rule is meaningless there.
            raise ValueError(f"n_steps={n} is too large for horizon={self.horizon}: beta would "
                             f"become {self._value * factor} (n_steps must stay below 5 * horizon)")
        self._value *= factor

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self._value, "target": self.target,
                "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore beta. The checkpoint's target and horizon must equal this controller's:
        resuming under a different configuration would not reproduce the run, so it is refused
        (ValueError) rather than silently mixed."""
        _check_kind(state, self.kind)
        for key in ("target", "horizon"):
            if _finite_float(key, state.get(key)) != getattr(self, key):
                raise ValueError(f"checkpoint KL controller has {key}={state.get(key)} but this "
                                 f"run is configured with {key}={getattr(self, key)}")
        self._value = _positive("value", state.get("value"))


class FixedKLController:
    """A constant KL coefficient; ``update`` accepts the same arguments and changes nothing."""

    kind = "fixed"

    def __init__(self, beta: float):
        v = _finite_float("beta", beta)
        if v < 0:
            raise ValueError(f"'beta' must be >= 0, got {v}")
        self._value = v

    @property
    def value(self) -> float:
        return self._value

    def update(self, current_kl: float, n_steps: int) -> None:
        """Validate the arguments like the adaptive controller does, then do nothing."""
        _finite_float("current_kl", current_kl)
        _check_n_steps(n_steps)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self._value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Refuses a checkpoint whose beta differs from the configured one (ValueError)."""
        _check_kind(state, self.kind)
        if _finite_float("value", state.get("value")) != self._value:
            raise ValueError(f"checkpoint KL controller has beta={state.get('value')} but this "
                             f"run is configured with beta={self._value}")


def _check_kind(state: dict[str, Any], kind: str) -> None:
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint holds a KL controller of kind {got!r}, expected {kind!r}")
