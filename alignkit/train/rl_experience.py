"""From scored rollouts to training targets: KL, advantages per algorithm, minibatches.

One RL iteration samples N = prompts x group_size completions, scores them (`rl_rewards`), and
turns them into per-token targets for the clipped policy loss. Everything here is a function of
tensors (no model), so the arithmetic is tested by hand (tests/train/test_rl_experience.py).

KL to the reference, per token t of completion i, with the configured estimator
(`alignkit.losses.kl`, Schulman 2020) on the log-probs recorded at sampling time:
``kl_it = k(logp_it, ref_logp_it)``, and per sequence ``KL_i = Σ_t kl_it`` (the unit of the
adaptive controller's target, as in Ziegler et al. 2019).

Advantages (`ADVANTAGES`, one function per algorithm):

- ``ppo`` (Schulman et al. 2017; KL in the reward: Ziegler et al. 2019 Sec. 2.2 / Stiennon et
  al. 2020 Eq. 1): per-token rewards ``-β kl_it`` plus the score on the last token
  (`kl_penalty_rewards`; with the KL in the loss, β = 0 here), then GAE over the critic's values
  (`gae`, Schulman et al. 2016) -> advantages and λ-returns; advantages whitened over the batch
  (Ziegler et al. 2019's lm-human-preferences does the same).
- ``grpo`` (Shao et al. 2024, DeepSeekMath Sec. 4.1.2): ``A_i = (r_i - mean_g r) / (std_g r + eps)``
  within each group of completions of one prompt, the same A_i on every token of i.
- ``rloo`` (Ahmadian et al. 2024): ``A_i = r_i - mean_{j != i in g} r_j``, on every token.

For grpo and rloo, ``r_i = score_i - β KL_i`` when the KL is in the reward (the RLOO paper's
sequence-level reward), else ``r_i = score_i`` (GRPO's default: β·k3 goes into the loss).

``val/explained_variance`` = 1 - Var(y - ŷ) / Var(y) of the baseline the algorithm subtracts:
for PPO ŷ = the critic's values and y = the λ-returns, over response tokens; for GRPO ŷ = the
group mean and for RLOO the leave-one-out mean, y = r_i, over completions. 1 = the baseline
predicts the return exactly, 0 = no better than a constant, < 0 = worse.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import torch

from alignkit.losses.advantages import gae, grpo_advantages, rloo_advantages
from alignkit.losses.kl import kl_estimate, kl_penalty_rewards
from alignkit.losses.rl import masked_whiten


def token_kl(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
             estimator: str) -> torch.Tensor:
    """(N, R) per-token KL estimate, 0 where ``mask`` is 0.

        >>> token_kl(torch.tensor([[-1.0, 0.0]]), torch.tensor([[-2.0, 9.0]]),
        ...          torch.tensor([[1, 0]]), "k1")
        tensor([[1., 0.]])
    """
    m = mask.bool()
    zero = torch.zeros((), dtype=logps.dtype, device=logps.device)
    lp, ref = torch.where(m, logps, zero), torch.where(m, ref_logps.to(logps.dtype), zero)
    return torch.where(m, kl_estimate(lp, ref, estimator), zero)


def explained_variance(pred: torch.Tensor, target: torch.Tensor,
                       mask: torch.Tensor | None = None) -> float:
    """1 - Var(target - pred) / Var(target) over the masked elements (population variances).

    A constant target has no variance to explain; then, as scikit-learn's
    ``explained_variance_score`` does (``force_finite=True``), the result is 1.0 for a perfect
    prediction and 0.0 otherwise.

        >>> round(explained_variance(torch.tensor([1.0, 2.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])), 4)
        0.6667
    """
    if mask is None:
        mask = torch.ones_like(target, dtype=torch.bool)
    m = mask.bool()
    y, yhat = target.detach().double()[m], pred.detach().double()[m]
    if y.numel() == 0:
        raise ValueError("explained_variance over zero elements")
    var_y = float(((y - y.mean()) ** 2).mean())
    resid = y - yhat
    var_r = float(((resid - resid.mean()) ** 2).mean())
    if var_y == 0.0:
        return 1.0 if bool(torch.equal(y, yhat)) else 0.0
    return 1.0 - var_r / var_y


@dataclass
class AdvantageInputs:
    """What an advantage estimator sees; every tensor is for the N completions of one iteration."""

    scores: torch.Tensor  # (N,) summed reward-source scores (missing-EOS penalty included)
    kl: torch.Tensor  # (N, R) per-token KL estimate to the reference, 0 where masked
    mask: torch.Tensor  # (N, R) response tokens
    beta: float  # KL coefficient of this iteration
    kl_in_reward: bool  # True: -β·KL is part of the reward; False: it is in the loss
    group_size: int  # completions per prompt, consecutive rows
    values: torch.Tensor | None = None  # (N, R) critic values at sampling time (ppo)
    gamma: float = 1.0  # ppo: discount
    lam: float = 0.95  # ppo: GAE λ
    whiten: bool = True  # ppo: whiten advantages over the batch


@dataclass
class Advantages:
    advantages: torch.Tensor  # (N, R), 0 where masked
    returns: torch.Tensor | None  # (N, R) value targets (ppo), else None
    explained_variance: float  # of the baseline (module docstring)


def _sequence_rewards(x: AdvantageInputs) -> torch.Tensor:
    """r_i = score_i - β KL_i (KL in the reward) or score_i (KL in the loss)."""
    if x.kl_in_reward:
        return x.scores - x.beta * x.kl.sum(dim=1)
    return x.scores.clone()


def _per_token(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), adv[:, None].expand_as(mask).float(), 0.0)


def ppo_advantages(x: AdvantageInputs) -> Advantages:
    """GAE on per-token rewards -β kl_t (+ score at the last token); see the module docstring."""
    if x.values is None:
        raise ValueError("ppo advantages need the critic's values")
    # kl_penalty_rewards takes log-probs; a per-token KL k is the k1 of (k, 0), so pass it so.
    beta = x.beta if x.kl_in_reward else 0.0
    rewards = kl_penalty_rewards(x.scores, x.kl, torch.zeros_like(x.kl), x.mask, beta, "k1")
    adv, returns = gae(rewards, x.values, x.mask, gamma=x.gamma, lam=x.lam)
    ev = explained_variance(x.values, returns, x.mask)
    if x.whiten:
        adv = masked_whiten(adv, x.mask)
    return Advantages(adv, returns, ev)


def grpo_advantages_fn(x: AdvantageInputs) -> Advantages:
    r = _sequence_rewards(x)
    adv = grpo_advantages(r, group_size=x.group_size)
    baseline = r.view(-1, x.group_size).mean(dim=1).repeat_interleave(x.group_size)
    return Advantages(_per_token(adv, x.mask), None, explained_variance(baseline, r))


def rloo_advantages_fn(x: AdvantageInputs) -> Advantages:
    r = _sequence_rewards(x)
    adv = rloo_advantages(r, group_size=x.group_size)
    return Advantages(_per_token(adv, x.mask), None, explained_variance(r - adv, r))


ADVANTAGES: dict[str, Callable[[AdvantageInputs], Advantages]] = {
    "ppo": ppo_advantages,
    "grpo": grpo_advantages_fn,
    "rloo": rloo_advantages_fn,
}


def iteration_prompt_indices(n_prompts: int, per_iteration: int, iteration: int,
                             seed: int) -> list[int]:
    """Which prompts iteration `iteration` samples: consecutive slices of seeded shuffles.

    Pass p over the pool is ``random.Random(f"{seed}-prompts-{p}")``'s shuffle; iteration i
    takes positions [i·k, (i+1)·k) of the concatenated passes (k = per_iteration), so every
    prompt is used once per pass and the choice depends only on (seed, i).

        >>> first, second = iteration_prompt_indices(4, 3, 0, 0), iteration_prompt_indices(4, 3, 1, 0)
        >>> sorted(first + second[:1])   # pass 0 = iteration 0 and the start of iteration 1
        [0, 1, 2, 3]
    """
    if n_prompts < 1:
        raise ValueError("no prompts to sample from")
    out: list[int] = []
    start = iteration * per_iteration
    pass_no, offset = divmod(start, n_prompts)
    while len(out) < per_iteration:
        order = list(range(n_prompts))
        random.Random(f"{seed}-prompts-{pass_no}").shuffle(order)
        out += order[offset:offset + per_iteration - len(out)]
        pass_no, offset = pass_no + 1, 0
    return out


def _trim(t: torch.Tensor, left: int, right: int) -> torch.Tensor:
    return t[:, left:t.shape[1] - right] if right else t[:, left:]


def make_minibatches(tensors: dict[str, torch.Tensor], *, n_epochs: int, minibatch: int,
                     micro_batch: int, shuffle_key: str,
                     extras: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Micro-batches of every PPO epoch over the N rows of ``tensors``, in training order.

    ``tensors`` holds (N, ...) tensors and must contain ``prompt_mask`` (N, P) and
    ``response_mask`` (N, R); 2-D tensors whose key starts with ``prompt`` are (N, P)
    prompt-block tensors, every other 2-D tensor is an (N, R) response-block one. Each epoch shuffles the rows with
    ``random.Random(f"{shuffle_key}-{epoch}")``, cuts them into minibatches of ``minibatch`` rows
    (one optimizer step each) and those into micro-batches of ``micro_batch`` rows; each
    micro-batch drops prompt columns that are padding in all its rows (on the left) and
    response columns likewise (on the right). ``extras`` are copied into every micro-batch.

        >>> t = {"prompt_mask": torch.tensor([[0, 1], [1, 1]]),
        ...      "response_mask": torch.tensor([[1, 0], [1, 1]])}
        >>> mbs = make_minibatches(t, n_epochs=1, minibatch=2, micro_batch=1, shuffle_key="k")
        >>> sorted(tuple(b["prompt_mask"].shape) + tuple(b["response_mask"].shape) for b in mbs)
        [(1, 1, 1, 1), (1, 2, 1, 2)]
    """
    n = tensors["prompt_mask"].shape[0]
    P, R = tensors["prompt_mask"].shape[1], tensors["response_mask"].shape[1]
    if n % minibatch or minibatch % micro_batch:
        raise ValueError(f"{n} rows do not split into minibatches of {minibatch} and micro-batches "
                         f"of {micro_batch}")
    out = []
    for epoch in range(n_epochs):
        order = list(range(n))
        random.Random(f"{shuffle_key}-{epoch}").shuffle(order)
        for start in range(0, n, micro_batch):
            idx = torch.tensor(order[start:start + micro_batch])
            pm, rm = tensors["prompt_mask"][idx], tensors["response_mask"][idx]
            left = int(P - pm.sum(1).max())  # prompt columns that are padding everywhere
            right = int(R - rm.sum(1).max())
            batch: dict[str, Any] = {}
            for key, t in tensors.items():
                t = t[idx]
                if t.dim() == 2:
                    t = _trim(t, left, 0) if key.startswith("prompt") else _trim(t, 0, right)
                batch[key] = t
            batch.update(extras or {})
            out.append(batch)
    return out


__all__ = ["ADVANTAGES", "AdvantageInputs", "Advantages", "explained_variance",
           "grpo_advantages_fn", "iteration_prompt_indices", "make_minibatches",
           "ppo_advantages", "rloo_advantages_fn", "token_kl"]
