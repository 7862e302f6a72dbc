"""Best-of-n sampling measured without re-sampling: expectations and KL from N draws per prompt.

Best-of-n (BoN) draws n completions from the reference policy π_ref and keeps the one the
proxy reward scores highest. As Gao, Schulman & Hilton do (2022, "Scaling Laws for Reward Model
Overoptimization", arXiv:2210.10760), every n is measured from one pool of N ≥ n draws per
prompt instead of fresh samples per n:

**Unbiased estimator.** A uniformly random n-subset of N i.i.d. draws is itself n i.i.d.
draws, so E[value of best-of-n] = E over random n-subsets of the value of the subset's proxy
maximum. Sort the N draws by proxy score ascending (ranks i = 1..N); draw i is the maximum of a
random n-subset with probability

    w_i = C(i − 1, n − 1) / C(N, n)        (Σ_i w_i = 1)

(the subset holds i and n − 1 of the i − 1 draws below it). Draws with equal proxy scores form
one tie group; best-of-n picks uniformly inside the group, so the group gets Σ w_i of its
ranks and contributes the mean gold reward of its members.

**KL of best-of-n.** The expression used in the literature (Gao et al. 2022 compute their
best-of-n KL with it) is KL(π_bon ‖ π_ref) = log n − (n − 1)/n. It holds when no two draws can
tie; in general it is an upper bound (Beirami et al. 2024, "Theoretical guarantees on the
best-of-n alignment policy", arXiv:2401.01879), far from tight on a discrete completion space
where the policy repeats itself. The *measured* value here is
the exact KL of best-of-n applied to the empirical distribution p̂ of the N draws, with draws
grouped into levels k = 1..K of equal proxy score (identical completions always share one):

    F_k = Σ_{j ≤ k} p̂_j,   q_k = F_k^n − F_{k−1}^n,   KL = Σ_k q_k log(q_k / p̂_k)

(q is the law of the maximum level of n draws from p̂). It is a plug-in estimate: as N grows it
tends to the KL of best-of-n on π_ref; with N distinct draws and n ≪ N it approaches the
analytic value.

    >>> round(analytic_bon_kl(2), 4)        # log 2 − 1/2
    0.1931
    >>> best_of_n_expectation([0.1, 0.9, 0.5], [0.0, 1.0, 0.0], n=3)   # the max of all 3 draws
    1.0
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def analytic_bon_kl(n: int) -> float:
    """KL(π_bon ‖ π_ref) = log n − (n − 1)/n for best-of-n with a tie-free proxy (nats)."""
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def powers_of_two(max_n: int) -> list[int]:
    """[1, 2, 4, ..., max_n]; `max_n` must be a power of two.

        >>> powers_of_two(8)
        [1, 2, 4, 8]
    """
    if max_n < 1 or max_n & (max_n - 1):
        raise ValueError(f"max_n must be a power of two (1, 2, 4, ...), got {max_n}")
    return [2 ** k for k in range(max_n.bit_length())]


@dataclass(frozen=True)
class _Level:
    proxy: float  # the tie group's proxy score
    count: int  # draws in the group
    gold_sum: float  # summed gold reward of its draws


def _levels(proxy: Sequence[float], gold: Sequence[float] | None = None) -> list[_Level]:
    """Draws grouped by equal proxy score, ascending."""
    if gold is not None and len(gold) != len(proxy):
        raise ValueError(f"{len(proxy)} proxy scores but {len(gold)} gold rewards")
    if not proxy:
        raise ValueError("no draws")
    groups: dict[float, list[float]] = {}
    for i, p in enumerate(proxy):
        p = float(p)
        if not math.isfinite(p):
            raise ValueError(f"proxy score {i} is not finite ({p})")
        groups.setdefault(p, []).append(float(gold[i]) if gold is not None else 0.0)
    return [_Level(p, len(g), sum(g)) for p, g in sorted(groups.items())]


def max_rank_weights(N: int, n: int) -> list[float]:
    """w_i = C(i − 1, n − 1) / C(N, n) for ranks i = 1..N (ascending): P(rank i is the maximum
    of a uniformly random n-subset of the N draws).

        >>> max_rank_weights(3, 2)     # C(0,1)/3, C(1,1)/3, C(2,1)/3
        [0.0, 0.3333333333333333, 0.6666666666666666]
    """
    if not 1 <= n <= N:
        raise ValueError(f"best-of-{n} needs 1 <= n <= N = {N} draws per prompt")
    total = math.comb(N, n)
    return [math.comb(i - 1, n - 1) / total for i in range(1, N + 1)]


def best_of_n_expectation(proxy: Sequence[float], gold: Sequence[float], n: int) -> float:
    """E[gold reward of the proxy-best of n draws], unbiased from the N = len(proxy) draws of
    one prompt (module docstring). Pass ``gold = proxy`` for the expected proxy score."""
    levels = _levels(proxy, gold)
    w = max_rank_weights(len(proxy), n)
    out, start = 0.0, 0
    for lv in levels:
        mass = sum(w[start:start + lv.count])
        out += mass * lv.gold_sum / lv.count
        start += lv.count
    return out


def best_of_n_kl(proxy: Sequence[float], n: int) -> float:
    """Plug-in KL(π_bon ‖ π_ref) on the empirical distribution of the draws (module docstring).

        >>> round(best_of_n_kl([0.0, 1.0], 2), 4)   # q = (1/4, 3/4) against p = (1/2, 1/2)
        0.1308
    """
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    levels = _levels(proxy)
    if n == 1:
        return 0.0  # best-of-1 is π_ref itself (the sum below would leave rounding dust)
    N = len(proxy)
    kl, below = 0.0, 0
    for lv in levels:
        p = lv.count / N
        q = ((below + lv.count) / N) ** n - (below / N) ** n
        if q > 0:
            kl += q * math.log(q / p)
        below += lv.count
    return max(kl, 0.0)  # a sum of rounded terms must not print as −1e-17


__all__ = ["analytic_bon_kl", "best_of_n_expectation", "best_of_n_kl", "max_rank_weights",
           "powers_of_two"]
