"""Online-RL policy and value losses (PPO) and the masked reductions they share.

Pure functions of per-token tensors; no model, tokenizer or config inside. Every token tensor is
(B, T) and comes with a ``mask`` (B, T) that is nonzero exactly at the response tokens (the
actions). Note the naming: in this module ``logps`` / ``old_logps`` are **per-token** log-probs
(B, T) of the sampled tokens, not the per-sequence sums that ``*_logps`` means elsewhere in
alignkit -- PPO's ratio is per action, and an action here is one token.

Masked positions (prompt, padding) may hold anything, even NaN or inf: every function selects
them away with ``torch.where`` *before* any arithmetic, so neither the value nor the gradient of
a masked position can leak into the result.

    >>> import torch
    >>> lp = torch.log(torch.tensor([[0.5, 0.4]]))
    >>> loss, stats = ppo_clip_loss(lp, lp, torch.tensor([[1.0, -1.0]]), torch.ones(1, 2))
    >>> loss.tolist(), float(stats["clipfrac"])
    ([[-1.0, 1.0]], 0.0)
"""
from __future__ import annotations

import torch


def _check_shapes(**tensors: torch.Tensor) -> None:
    """Raise ValueError naming the first argument whose shape differs from the first one's."""
    names = list(tensors)
    ref_name, ref = names[0], tensors[names[0]]
    for name in names[1:]:
        if tensors[name].shape != ref.shape:
            raise ValueError(
                f"'{name}' has shape {tuple(tensors[name].shape)} but '{ref_name}' has shape "
                f"{tuple(ref.shape)}; they must match")


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is nonzero.

    x, mask: same shape, e.g. (B, T). ``dim=None`` -> 0-dim tensor (mean over every masked
    element, i.e. a token average); ``dim=d`` -> the mean along ``d`` (e.g. (B,) per sequence).
    A mean over zero tokens is a ValueError, never a silent 0 or NaN (DESIGN: a mask with no
    trainable token is an error). Checking this reads one scalar back from the device.

        >>> masked_mean(torch.tensor([1.0, 2.0, 9.0]), torch.tensor([1, 1, 0]))
        tensor(1.5000)
    """
    _check_shapes(x=x, mask=mask)
    m = _as_bool(mask)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    count = m.sum() if dim is None else m.sum(dim=dim)
    if bool((count == 0).any()):
        where = "the whole mask" if dim is None else f"at least one slice along dim {dim}"
        raise ValueError(f"masked_mean over zero tokens: {where} has no nonzero entry")
    s = total.sum() if dim is None else total.sum(dim=dim)
    return s / count.to(x.dtype)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """Normalise ``x`` to zero mean and unit variance over the masked tokens (advantage whitening).

    x, mask: same shape, e.g. (B, T). Statistics are pooled over every masked token of the batch.
    Variance is the **biased** (population) one, ``mean((x - mu)^2)``, as in the whitening of
    Ziegler et al. 2019 (lm-human-preferences, ``tf.nn.moments``); it is defined for a single
    token and differs from the unbiased one by the factor n/(n-1) only. Returns
    ``(x - mu) / sqrt(var + eps)``, plus ``mu`` again when ``shift_mean=False`` (scale only, the
    sign of each advantage relative to zero is kept). Masked-out positions are set to 0
    (deliberate: they carry no meaning and must not look like data).

        >>> masked_whiten(torch.tensor([1.0, 2.0, 3.0, 100.0]), torch.tensor([1, 1, 1, 0]))
        tensor([-1.2247,  0.0000,  1.2247,  0.0000])
    """
    m = _as_bool(mask)
    mu = masked_mean(x, m)
    var = masked_mean((x - mu) ** 2, m)
    out = (x - mu) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mu
    return torch.where(m, out, torch.zeros((), dtype=out.dtype, device=out.device))


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) over the last axis: (..., V) -> (...).

    H = -sum_v p_v log p_v, computed in float32 from ``log_softmax``. Vocabulary entries with
    logit -inf (p = 0) contribute 0, the limit of p log p, instead of 0 * -inf = NaN.

        >>> entropy_from_logits(torch.zeros(4))  # uniform over 4 -> ln 4
        tensor(1.3863)
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    plogp = torch.where(p > 0, p * logp, torch.zeros((), dtype=p.dtype, device=p.device))
    return -plogp.sum(dim=-1)


def ppo_clip_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, clip_eps: float = 0.2
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token PPO clipped surrogate loss (Schulman et al. 2017, "Proximal Policy Optimization
    Algorithms", Eq. 7), negated so that it is minimised:

        rho_t = exp(logp_t - old_logp_t)
        loss_t = -min(rho_t * A_t, clip(rho_t, 1 - eps, 1 + eps) * A_t)
               =  max(-rho_t * A_t, -clip(rho_t, 1 - eps, 1 + eps) * A_t)

    logps: (B, T) per-token log-probs of the sampled tokens under the current policy (with grad);
    old_logps: (B, T) the same under the policy that sampled them; advantages: (B, T), or (B,)
    for one advantage per sequence (GRPO / RLOO), broadcast over T; mask: (B, T) response tokens.
    ``old_logps`` and ``advantages`` are detached here (they are targets, never trained through).

    Returns ``(per_token_loss (B, T), stats)``; the loss is 0 at masked positions and unreduced
    (reduce with ``masked_mean`` or the engine's token average). ``stats`` holds detached
    0-dim tensors:
      * ``clipfrac``: share of masked tokens where the clipped branch is the active one, i.e.
        strictly larger than the unclipped branch (there its gradient is 0);
      * ``approxkl``: masked mean of the **k3** estimator ``(rho - 1) - log rho`` (Schulman 2020,
        "Approximating KL Divergence"), an unbiased, non-negative estimate of KL(old || new)
        because the tokens were sampled from the old policy. (Not the 1/2 (log rho)^2 of
        OpenAI baselines, which is biased.)

        >>> lp = torch.log(torch.tensor([[1.5, 1.0]]))
        >>> loss, s = ppo_clip_loss(lp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2))
        >>> loss, s["clipfrac"]   # rho = 1.5 is clipped to 1.2
        (tensor([[-1.2000, -1.0000]]), tensor(0.5000))
    """
    if not 0.0 < clip_eps < 1.0:
        raise ValueError(f"clip_eps must be in (0, 1), got {clip_eps}")
    if advantages.dim() == 1 and logps.dim() == 2:
        if advantages.shape[0] != logps.shape[0]:
            raise ValueError(f"'advantages' has shape {tuple(advantages.shape)} but 'logps' has "
                             f"shape {tuple(logps.shape)}; expected (B,) or (B, T)")
        advantages = advantages.unsqueeze(-1).expand_as(logps)
    _check_shapes(logps=logps, old_logps=old_logps, advantages=advantages, mask=mask)
    m = _as_bool(mask)
    zero = torch.zeros((), dtype=logps.dtype, device=logps.device)
    # Select before exp: a garbage log-prob at a padded position must not give inf/NaN, whose
    # gradient would survive a later torch.where as 0 * inf = NaN.
    log_ratio = torch.where(m, logps - old_logps.detach(), zero)
    adv = torch.where(m, advantages.detach().to(logps.dtype), zero)
    ratio = log_ratio.exp()
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    per_token = torch.where(m, torch.maximum(unclipped, clipped), zero)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).to(logps.dtype), m)
        approxkl = masked_mean(torch.expm1(log_ratio) - log_ratio, m)
    return per_token, {"clipfrac": clipfrac, "approxkl": approxkl}


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """Per-token clipped value loss, as in OpenAI baselines ``ppo2`` (the PPO paper itself uses an
    unclipped squared error; clipping the value step is the baselines/Ziegler et al. 2019 choice):

        v_clip = old_v + clip(v - old_v, -eps, +eps)
        loss_t = 1/2 * max((v - R)^2, (v_clip - R)^2)

    values: (B, T) current value predictions (with grad); old_values: (B, T) predictions at
    rollout time; returns: (B, T) targets (e.g. GAE lambda-returns); mask: (B, T).
    ``old_values`` and ``returns`` are detached. ``clip_eps`` is in the units of the value (not
    a ratio), so it should match the scale of the rewards. Returns (B, T), 0 where masked.

        >>> value_loss(torch.tensor([[1.5]]), torch.ones(1, 1), torch.tensor([[2.0]]),
        ...            torch.ones(1, 1))   # clipped 1.2 -> 1/2 * 0.8^2
        tensor([[0.3200]])
    """
    if clip_eps <= 0.0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    _check_shapes(values=values, old_values=old_values, returns=returns, mask=mask)
    m = _as_bool(mask)
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    v = torch.where(m, values, zero)
    old_v = torch.where(m, old_values.detach().to(values.dtype), zero)
    ret = torch.where(m, returns.detach().to(values.dtype), zero)
    v_clip = old_v + (v - old_v).clamp(-clip_eps, clip_eps)
    per_token = 0.5 * torch.maximum((v - ret) ** 2, (v_clip - ret) ** 2)
    return torch.where(m, per_token, zero)
