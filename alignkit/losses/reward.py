"""Reward-model objectives: pairwise Bradley–Terry losses on scalar rewards.

Pure functions of per-pair rewards, UNREDUCED: every function maps (B,) tensors to a (B,) tensor
of per-pair losses; the reward stage reduces with a mean over pairs. No model, tokenizer or config
inside; only `torch` is imported (DESIGN.md dependency rules), so bad arguments raise `ValueError`
naming the argument.

    >>> import torch
    >>> r_c, r_r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    >>> loss = bradley_terry(r_c, r_r) + reward_centering(r_c, r_r, coef=0.01)
    >>> [round(v, 4) for v in loss.tolist()]
    [0.3233, 0.6931]

Every function here works in the dtype of its inputs; pass float32 rewards.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> None:
    # Shapes are checked, not broadcast: a (B,) against (B, 1) mix-up would silently produce a
    # (B, B) loss whose mean still looks like a plausible number.
    if r_chosen.dim() != 1:
        raise ValueError(f"r_chosen: expected shape (B,), got {tuple(r_chosen.shape)}")
    if r_rejected.shape != r_chosen.shape:
        raise ValueError(
            f"r_rejected: shape {tuple(r_rejected.shape)} does not match r_chosen {tuple(r_chosen.shape)}"
        )


def _as_per_pair(value: torch.Tensor | float, like: torch.Tensor, name: str) -> torch.Tensor:
    """A float or a (B,) tensor, returned as a tensor on `like`'s device and dtype."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.dim() != 0 and t.shape != like.shape:
        raise ValueError(f"{name}: expected a float or shape {tuple(like.shape)}, got {tuple(t.shape)}")
    return t


def bradley_terry(
    r_chosen: torch.Tensor,  # (B,)
    r_rejected: torch.Tensor,  # (B,)
    margin: torch.Tensor | float | None = None,  # (B,) or scalar
) -> torch.Tensor:  # (B,)
    """Pairwise ranking loss −log σ(r_c − r_r − m).

    Bradley & Terry (1952) preference model as used for RLHF reward models (Ouyang et al. 2022,
    Eq. 1); the margin m(r) is the Llama 2 variant (Touvron et al. 2023, Sec. 3.2.2, Eq. 2): pairs
    labelled "significantly better" must win by at least m. `margin=None` is m = 0.
    Written with `logsigmoid` so a large negative difference gives a large finite loss, not inf.

    >>> round(bradley_terry(torch.tensor([1.0]), torch.tensor([0.0]), margin=1.0).item(), 6)
    0.693147
    """
    _check_pair(r_chosen, r_rejected)
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - _as_per_pair(margin, r_chosen, "margin")
    return -F.logsigmoid(diff)


def soft_bradley_terry(
    r_chosen: torch.Tensor,  # (B,)
    r_rejected: torch.Tensor,  # (B,)
    p: torch.Tensor | float,  # (B,) or scalar, P(chosen ≻ rejected) in [0, 1]
) -> torch.Tensor:  # (B,)
    """Cross-entropy of the Bradley–Terry probability σ(r_c − r_r) against a soft label p.

        loss = −p·log σ(d) − (1 − p)·log σ(−d),   d = r_c − r_r

    For AI-feedback labels, where a judge gives a preference probability rather than a hard
    choice (Bai et al. 2022, "Constitutional AI", Sec. 4.1 trains the preference model on the
    judge's normalised log-probabilities as soft targets). p = 1 is `bradley_terry` without margin;
    p = 0.5 is minimised at d = 0 (no preference). The minimum over d is the binary entropy H(p),
    not 0, so loss values are only comparable between batches with the same labels.

    >>> round(soft_bradley_terry(torch.tensor([0.0]), torch.tensor([0.0]), 0.9).item(), 6)
    0.693147
    """
    _check_pair(r_chosen, r_rejected)
    target = _as_per_pair(p, r_chosen, "p")
    if bool(((target < 0) | (target > 1)).any()):
        raise ValueError("p: soft preference labels must lie in [0, 1]")
    diff = r_chosen - r_rejected
    return -(target * F.logsigmoid(diff) + (1 - target) * F.logsigmoid(-diff))


def reward_centering(
    r_chosen: torch.Tensor,  # (B,)
    r_rejected: torch.Tensor,  # (B,)
    coef: float,
) -> torch.Tensor:  # (B,)
    """Auxiliary loss coef·(r_c + r_r)² that pins the mean reward of each pair near zero.

    Eisenstein et al. 2023, "Helping or Herding? Reward Model Ensembles Mitigate but do not
    Eliminate Reward Hacking", arXiv:2312.09244 (the Bradley–Terry loss only sees differences, so the
    reward's offset is free; the penalty fixes it, which makes rewards from separately trained
    models comparable). Same quantity as TRL's `center_rewards_coefficient` term, left
    unreduced: its batch mean equals TRL's `coef * mean((r_c + r_r) ** 2)`.

    >>> round(reward_centering(torch.tensor([1.0]), torch.tensor([2.0]), coef=0.01).item(), 6)
    0.09
    """
    _check_pair(r_chosen, r_rejected)
    if not isinstance(coef, (int, float)) or isinstance(coef, bool) or coef < 0:
        raise ValueError(f"coef: expected a non-negative float, got {coef!r}")
    return coef * (r_chosen + r_rejected) ** 2
