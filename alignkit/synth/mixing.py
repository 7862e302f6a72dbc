"""Mixture arithmetic: examples-proportional rates with a cap, and whole-row counts.

Examples-proportional mixing (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
with a Unified Text-to-Text Transformer", §3.5.2): task i with n_i examples is sampled with

    rate_i = min(n_i, K) / sum_j min(n_j, K)

where the cap K stops the largest tasks from swamping the mixture (FLAN, Wei et al. 2022 §3,
uses K = 3,000). K = None means no cap (plain examples-proportional). An explicit weight w_i
replaces task i's mass min(n_i, K): the weight is in the same unit, "examples", so
``weights={a: 500}`` gives task a the share a 500-row task would get. A weight of 0 leaves a
task out.

A mixture of N rows gets c_i = rate_i * N rows of task i, made whole by the largest-remainder
(Hamilton) method: every task gets floor(rate_i N), and the rows still missing go one each to
the tasks with the largest fractional parts (ties: the task listed first). The counts sum to
N exactly and each differs from rate_i N by less than 1.

    >>> rates = mixture_rates({"a": 10, "b": 100, "c": 5000}, cap=1000)
    >>> [round(r * 1110) for r in rates.values()]
    [10, 100, 1000]
    >>> allocate_counts(rates, 111)
    {'a': 1, 'b': 10, 'c': 100}
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from alignkit.errors import ConfigError


def mixture_masses(sizes: Mapping[str, int], cap: int | None,
                   weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per task: its explicit weight if given, else min(n_i, K) (n_i when cap is None)."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(sizes))
    if unknown:
        raise ConfigError(f"weights: unknown task(s) {unknown}; tasks: {', '.join(sizes)}")
    if cap is not None and cap < 1:
        raise ConfigError(f"cap must be >= 1 (or null for no cap), got {cap}")
    masses = {}
    for name, n in sizes.items():
        if n < 0:
            raise ConfigError(f"task {name!r}: size must be >= 0, got {n}")
        if name in weights:
            w = float(weights[name])
            if not math.isfinite(w) or w < 0:
                raise ConfigError(f"weights.{name}: must be a finite number >= 0, got {w}")
            masses[name] = w
        else:
            masses[name] = float(min(n, cap) if cap is not None else n)
    return masses


def mixture_rates(sizes: Mapping[str, int], cap: int | None,
                  weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """rate_i = mass_i / sum_j mass_j (see the module docstring), in the order of `sizes`."""
    masses = mixture_masses(sizes, cap, weights)
    total = sum(masses.values())
    if total <= 0:
        raise ConfigError("every task has mass 0 (empty tasks or zero weights); nothing to mix")
    return {name: m / total for name, m in masses.items()}


def allocate_counts(rates: Mapping[str, float], total: int) -> dict[str, int]:
    """Whole row counts summing to `total` (largest-remainder method)."""
    if total < 0:
        raise ConfigError(f"total must be >= 0, got {total}")
    quotas = {name: r * total for name, r in rates.items()}
    # The 1e-9 absorbs float error, so a quota that is whole on paper (10/1110 * 111 = 1) is not
    # floored to 0 because it came out as 0.9999999999999999.
    counts = {name: math.floor(q + 1e-9) for name, q in quotas.items()}
    missing = total - sum(counts.values())
    order = list(rates)
    by_remainder = sorted(order, key=lambda name: (-max(quotas[name] - counts[name], 0.0),
                                                   order.index(name)))
    for name in by_remainder[:missing]:
        counts[name] += 1
    return counts
