"""Advantage estimators for online RL: GAE for PPO, group baselines for GRPO and RLOO.

Pure functions of rewards and values; every output is detached (advantages and returns are
regression / policy-gradient *targets*, never trained through) and float32.

* ``gae``: per-token advantages from a learned value (Schulman et al. 2016, "High-Dimensional
  Continuous Control Using Generalized Advantage Estimation", Eq. 16 and the TD residual of
  Eq. 10).
* ``grpo_advantages``: one advantage per completion, its reward normalised within the group of
  completions sampled for the same prompt (Shao et al. 2024, "DeepSeekMath", Sec. 4.1.2,
  outcome supervision).
* ``rloo_advantages``: REINFORCE with the leave-one-out baseline (Ahmadian et al. 2024, "Back to
  Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs";
  the estimator is from Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!").

    >>> rloo_advantages(torch.tensor([1.0, 0.0, 3.0, 1.0]), group_size=2)
    tensor([ 1., -1.,  2., -2.])
"""
from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the response tokens of each row.

    rewards, values, mask: (B, T). Over the masked (response) tokens t of a row, with t' the
    *next masked token* after t:

        delta_t = r_t + gamma * V_{t'} - V_t          (TD residual, GAE Eq. 10)
        A_t     = delta_t + gamma * lam * A_{t'}       (GAE Eq. 16, written recursively)
        R_t     = A_t + V_t                            (lambda-return, the value target)

    and for the last masked token of a row ``V_{t'} = A_{t'} = 0``: the response ended there
    (terminal state), so nothing is bootstrapped from padding. Positions where ``mask`` is 0
    contribute nothing and get ``A = R = 0``; a value or reward there is never read. Unmasked
    positions *inside* a response (e.g. tool output between two model turns) are skipped, not
    treated as an episode end: the next model token is the next action (deliberate, so
    multi-turn masks work; it equals plain GAE when each row's mask is one contiguous block).
    A nonzero reward at a masked position is a ValueError: it would otherwise be dropped silently.

    Returns ``(advantages, returns)``, each (B, T) float32, detached. The recursion runs over T
    in a Python loop vectorised over B (T small tensor ops; GAE is inherently sequential).

        >>> A, R = gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]]),
        ...            torch.ones(1, 2), gamma=1.0, lam=1.0)
        >>> A.tolist(), R.tolist()   # lam = gamma = 1: A_t = sum of future rewards - V_t
        ([[0.5, 0.5]], [[1.0, 1.0]])
    """
    for name, t in (("rewards", rewards), ("values", values), ("mask", mask)):
        if t.dim() != 2:
            raise ValueError(f"'{name}' must be (B, T), got shape {tuple(t.shape)}")
        if t.shape != rewards.shape:
            raise ValueError(f"'{name}' has shape {tuple(t.shape)} but 'rewards' has shape "
                             f"{tuple(rewards.shape)}; they must match")
    if not 0.0 <= gamma <= 1.0 or not 0.0 <= lam <= 1.0:
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    with torch.no_grad():
        m = mask if mask.dtype == torch.bool else mask != 0
        r = rewards.detach().float()
        if bool(((r != 0) & ~m).any()):
            b, t = (((r != 0) & ~m).nonzero()[0]).tolist()
            raise ValueError(f"'rewards' is nonzero at a masked position (row {b}, token {t}); "
                             f"a reward must sit on a response token or it would be ignored")
        zero = torch.zeros((), device=r.device)
        v = torch.where(m, values.detach().float(), zero)
        B, T = r.shape
        adv = torch.zeros(B, T, device=r.device)
        next_v = torch.zeros(B, device=r.device)    # V_{t'}: value of the next response token
        next_a = torch.zeros(B, device=r.device)    # A_{t'}
        for t in range(T - 1, -1, -1):
            delta = r[:, t] + gamma * next_v - v[:, t]
            a_t = delta + gamma * lam * next_a
            mt = m[:, t]
            adv[:, t] = torch.where(mt, a_t, zero)
            # Carry over unmasked positions unchanged, so they are skipped.
            next_v = torch.where(mt, v[:, t], next_v)
            next_a = torch.where(mt, a_t, next_a)
        returns = torch.where(m, adv + v, zero)
    return adv, returns


def _group_index(rewards: torch.Tensor, group_size: int | None,
                 group_ids: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """(N,) dense group index in [0, G) and G, from either a group size or explicit ids."""
    if rewards.dim() != 1:
        raise ValueError(f"'rewards' must be (N,), got shape {tuple(rewards.shape)}")
    n = rewards.shape[0]
    if n == 0:
        raise ValueError("'rewards' is empty: no completions to compute advantages for")
    if (group_size is None) == (group_ids is None):
        raise ValueError("give exactly one of 'group_size' (consecutive blocks) or 'group_ids'")
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"'group_size' must be a positive int, got {group_size!r}")
        if n % group_size != 0:
            raise ValueError(f"{n} rewards cannot be split into groups of {group_size} "
                             f"(N must be a multiple of group_size)")
        idx = torch.arange(n, device=rewards.device) // group_size
        return idx, n // group_size
    assert group_ids is not None
    if group_ids.shape != rewards.shape:
        raise ValueError(f"'group_ids' has shape {tuple(group_ids.shape)} but 'rewards' has shape "
                         f"{tuple(rewards.shape)}; they must match")
    _, idx = torch.unique(group_ids.to(rewards.device), return_inverse=True)
    return idx, int(idx.max()) + 1


def _group_sums(x: torch.Tensor, idx: torch.Tensor, g: int) -> torch.Tensor:
    return torch.zeros(g, dtype=x.dtype, device=x.device).index_add_(0, idx, x)


def _min_group_size(counts: torch.Tensor, who: str, need: int) -> None:
    smallest = int(counts.min())
    if smallest < need:
        raise ValueError(f"{who} needs at least {need} completions per group, but a group has "
                         f"{smallest}: with one completion the baseline is the reward itself and "
                         f"the advantage carries no signal")


def grpo_advantages(rewards: torch.Tensor, group_size: int | None = None, *,
                    group_ids: torch.Tensor | None = None, scale_by_std: bool = True,
                    eps: float = 1e-4) -> torch.Tensor:
    """GRPO outcome advantages (Shao et al. 2024, DeepSeekMath, Sec. 4.1.2):

        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)      if scale_by_std
        A_i =  r_i - mean(r_group)                              otherwise

    rewards: (N,) one scalar per completion. Groups are either consecutive blocks of
    ``group_size`` (the usual layout: prompt 0's k completions, then prompt 1's, ...) or given
    by ``group_ids`` (N,) of any integer labels. Returns (N,) float32, detached; each completion's
    advantage is then broadcast to all its tokens.

    ``std`` is the **unbiased** sample standard deviation (divisor k - 1), as in TRL's GRPO
    trainer (the paper does not say); ``eps`` (not in the paper) keeps a group whose rewards are
    all equal at advantage 0 instead of 0/0. ``scale_by_std=False`` is the Dr. GRPO variant (Liu
    et al. 2025), which drops the per-prompt difficulty re-weighting. A group of one completion
    is a ValueError (its advantage is always 0, and its unbiased std is undefined).

        >>> grpo_advantages(torch.tensor([1.0, 0.0, 5.0, 5.0]), group_size=2, scale_by_std=False)
        tensor([ 0.5000, -0.5000,  0.0000,  0.0000])
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    with torch.no_grad():
        r = rewards.detach().float()
        idx, g = _group_index(r, group_size, group_ids)
        counts = _group_sums(torch.ones_like(r), idx, g)
        _min_group_size(counts, "grpo_advantages", 2)
        mean = _group_sums(r, idx, g) / counts
        centred = r - mean[idx]
        if not scale_by_std:
            return centred
        std = (_group_sums(centred ** 2, idx, g) / (counts - 1)).sqrt()
        return centred / (std[idx] + eps)


def rloo_advantages(rewards: torch.Tensor, group_size: int | None = None, *,
                    group_ids: torch.Tensor | None = None) -> torch.Tensor:
    """RLOO advantages (Ahmadian et al. 2024): each completion's baseline is the mean
    reward of the *other* completions of its prompt,

        A_i = r_i - 1/(k-1) * sum_{j != i} r_j  =  k/(k-1) * (r_i - mean(r_group)),

    which is independent of r_i, so the policy gradient stays unbiased. rewards: (N,); groups as
    in ``grpo_advantages`` (consecutive blocks of ``group_size`` or ``group_ids``); groups may
    differ in size when given by ids. Returns (N,) float32, detached. A group of size 1 is a
    ValueError (no other completion to form a baseline from).

        >>> rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), group_size=4)
        tensor([ 0.6667, -0.6667, -0.6667,  0.6667])
    """
    with torch.no_grad():
        r = rewards.detach().float()
        idx, g = _group_index(r, group_size, group_ids)
        counts = _group_sums(torch.ones_like(r), idx, g)
        _min_group_size(counts, "rloo_advantages", 2)
        others = _group_sums(r, idx, g)[idx] - r
        return r - others / (counts[idx] - 1)
