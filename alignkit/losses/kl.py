"""Per-token KL estimators between the sampling policy and a reference, from log-probs only.

The full-vocabulary KL(pi || ref) = E_{y~pi}[log pi(y) - log ref(y)] needs both distributions
over the whole vocabulary at every position. With only the log-probs of the *sampled* tokens we
estimate it per token (Schulman 2020, "Approximating KL Divergence",
http://joschu.net/blog/kl-approx.html). With ``d = logp - ref_logp`` and ``r = ref/pi = exp(-d)``:

    k1 = d                      unbiased; high variance; negative for some tokens
    k2 = 1/2 d^2                biased (exact only to second order as pi -> ref); low variance; >= 0
    k3 = (r - 1) - log r        unbiased (E_pi[r] = 1); low variance when pi ~ ref; >= 0 pointwise
       = expm1(-d) + d          (computed with expm1, exact for tiny d)

"Unbiased" means: for tokens sampled from pi (the policy that produced ``logps``). Each
estimator is an element-wise function, gathered in ``KL_ESTIMATORS``.

As a *loss* (differentiated w.r.t. the policy on its own samples) they behave differently
from their values (exact expectations, checked in tests/losses/test_kl.py):
    E_pi[grad k1] = 0                    -- k1 gives no KL gradient at all;
    E_pi[grad k2] = grad KL(pi || ref)   -- the gradient of the forward KL;
    E_pi[grad k3] = grad KL(ref || pi)   -- the gradient of the *reverse* KL.
GRPO (Shao et al. 2024, Eq. 4) puts k3 in the loss, i.e. follows the reverse-KL gradient; the
two KLs agree to second order near ref, so this is usually harmless, but it is a different
objective.

    >>> kl_k3(torch.tensor([0.0]), torch.tensor([0.0]))
    tensor([0.])
"""
from __future__ import annotations

from typing import Callable

import torch


def kl_k1(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k1 = logp - ref_logp, element-wise. Any shape, e.g. (B, T) -> (B, T).

        >>> kl_k1(torch.tensor([-1.0]), torch.tensor([-2.0]))
        tensor([1.])
    """
    return logps - ref_logps


def kl_k2(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k2 = 1/2 (logp - ref_logp)^2, element-wise. (B, T) -> (B, T).

        >>> kl_k2(torch.tensor([-1.0]), torch.tensor([-3.0]))
        tensor([2.])
    """
    return 0.5 * (logps - ref_logps) ** 2


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k3 = (r - 1) - log r with r = exp(ref_logp - logp), element-wise. (B, T) -> (B, T).

    Written as ``expm1(x) - x`` with ``x = ref_logp - logp``: for tiny x the naive
    ``exp(x) - 1 - x`` cancels to 0 in float32, expm1 keeps the x^2/2 leading term.

        >>> kl_k3(torch.tensor([0.0]), torch.log(torch.tensor([2.0])))  # r = 2: 1 - ln 2
        tensor([0.3069])
    """
    x = ref_logps - logps
    return torch.expm1(x) - x


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}


def kl_estimate(logps: torch.Tensor, ref_logps: torch.Tensor, estimator: str) -> torch.Tensor:
    """Apply the estimator named ``estimator`` ("k1" | "k2" | "k3"); element-wise, same shape."""
    try:
        fn = KL_ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose one of "
                         f"{sorted(KL_ESTIMATORS)}") from None
    return fn(logps, ref_logps)


def _masked_kl(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
               estimator: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token KL with 0 at masked positions, bool mask), all (B, T)."""
    for name, t in (("ref_logps", ref_logps), ("mask", mask)):
        if t.shape != logps.shape:
            raise ValueError(f"'{name}' has shape {tuple(t.shape)} but 'logps' has shape "
                             f"{tuple(logps.shape)}; they must match")
    m = mask if mask.dtype == torch.bool else mask != 0
    zero = torch.zeros((), dtype=logps.dtype, device=logps.device)
    # Select before the estimator so padding garbage (inf, NaN) never reaches exp or a gradient.
    lp = torch.where(m, logps, zero)
    ref = torch.where(m, ref_logps.to(logps.dtype), zero)
    return torch.where(m, kl_estimate(lp, ref, estimator), zero), m


def kl_penalty_rewards(scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor,
                       mask: torch.Tensor, beta: float, estimator: str = "k1") -> torch.Tensor:
    """Per-token rewards with the KL penalty in the reward (Ziegler et al. 2019, "Fine-Tuning
    Language Models from Human Preferences", Sec. 2.2; Stiennon et al. 2020, "Learning to
    summarize from human feedback", Eq. 1):

        reward_t = -beta * kl_t                     for every response token t
        reward_T += score                           at the last response token of the row

    scores: (B,) one reward-model / reward-function score per sequence; logps, ref_logps: (B, T)
    per-token log-probs of the sampled tokens under the policy that sampled them and under the
    reference; mask: (B, T) response tokens (each row needs at least one). ``estimator`` is
    "k1" by default, the papers' log-ratio (unbiased for the summed sequence KL; the per-token
    value may be negative). Returns (B, T) float, detached (it is the environment's reward, a
    target), 0 at masked positions -- ready for ``gae``.

        >>> kl_penalty_rewards(torch.tensor([2.0]), torch.tensor([[-1.0, -1.0]]),
        ...                    torch.tensor([[-1.5, -0.5]]), torch.ones(1, 2), beta=0.1)
        tensor([[-0.0500,  2.0500]])
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if logps.dim() != 2:
        raise ValueError(f"'logps' must be (B, T), got shape {tuple(logps.shape)}")
    if scores.shape != (logps.shape[0],):
        raise ValueError(f"'scores' has shape {tuple(scores.shape)}; expected ({logps.shape[0]},),"
                         f" one score per row of 'logps'")
    with torch.no_grad():
        kl, m = _masked_kl(logps.detach(), ref_logps.detach(), mask, estimator)
        if not bool(m.any(dim=1).all()):
            row = int((~m.any(dim=1)).nonzero()[0])
            raise ValueError(f"'mask' row {row} has no response token: nowhere to put its score")
        rewards = -beta * kl
        # Index of the last response token per row: the largest t with mask 1.
        t_idx = torch.arange(m.shape[1], device=m.device).expand_as(m)
        last = torch.where(m, t_idx, -1).max(dim=1).values                      # (B,)
        rows = torch.arange(m.shape[0], device=m.device)
        rewards[rows, last] += scores.detach().to(rewards.dtype)
    return rewards


def kl_loss_term(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                 estimator: str = "k3") -> torch.Tensor:
    """Per-token KL to put in the loss, GRPO style (Shao et al. 2024, DeepSeekMath, Eq. 3-4):
    the objective adds ``beta * kl_t`` per token, and the gradient flows through ``logps``.

    logps: (B, T) with grad; ref_logps: (B, T) (detached here; the reference is frozen);
    mask: (B, T). Returns (B, T), 0 at masked positions, unreduced and unscaled (multiply by
    beta and reduce like the policy loss). Default "k3" as in the paper; see the module
    docstring for which KL each estimator's gradient follows ("k1" has zero expected
    gradient and is useless here; "k2" follows KL(pi || ref) exactly on-policy).

        >>> kl_loss_term(torch.tensor([[0.0, 5.0]]), torch.log(torch.tensor([[2.0, 1.0]])),
        ...              torch.tensor([[1, 0]]))
        tensor([[0.3069, 0.0000]])
    """
    kl, _ = _masked_kl(logps, ref_logps.detach(), mask, estimator)
    return kl
