"""Preference-optimisation objectives: the DPO family, IPO, SimPO, ORPO and KTO.

Pure functions of per-sequence log-probs, UNREDUCED, with no model, tokenizer or config inside;
only `torch` is imported (DESIGN.md dependency rules), so bad arguments raise `ValueError` naming
the argument. `*_logps` always means the log-prob of a response SUMMED over its tokens, shape (B,).
The stage reduces `losses` with a mean over the batch (every variant, KTO included, matches TRL's
reduction that way).

Call convention
---------------
Every loss is called with keyword arguments only and accepts exactly the arguments its objective
uses; an argument it does not use is a `TypeError`, never silently ignored. A name means the same
thing in every function:

    policy_chosen_logps, policy_rejected_logps   (B,) Σ_t log π_θ(y_t | x, y_<t) over response tokens
    ref_chosen_logps, ref_rejected_logps         (B,) the same under the frozen reference π_ref
    chosen_lengths, rejected_lengths             (B,) response token counts (≥ 1), int or float
    beta                                         float, the variant's temperature / strength
    label_smoothing                              float ε, assumed label-flip probability
    reference_free                               bool, treat the reference log-probs as 0
    policy_logps, ref_logps, labels, kl          KTO's unpaired inputs (see `kto_loss`)

    name     function        arguments (besides beta)
    sigmoid  sigmoid_loss    policy_*, ref_*, reference_free
    cdpo     cdpo_loss       policy_*, ref_*, label_smoothing, reference_free
    robust   robust_loss     policy_*, ref_*, label_smoothing, reference_free
    hinge    hinge_loss      policy_*, ref_*, reference_free
    ipo      ipo_loss        policy_*, ref_*, length_normalize, *_lengths, reference_free
    simpo    simpo_loss      policy_*, *_lengths, gamma, label_smoothing          (no reference)
    orpo     orpo_loss       policy_*, *_lengths                                  (no reference)
    kto      kto_loss        policy_logps, ref_logps, labels, kl, desirable_weight, undesirable_weight

Each returns a `PreferenceLossOutput`, which unpacks as `(losses, chosen_rewards,
rejected_rewards)`:

- `losses` (B,) per-example losses, with gradient;
- `chosen_rewards`, `rejected_rewards` (B,) detached implicit rewards β·(log π_θ − log π_ref),
  the numbers TRL logs as rewards/* (for SimPO and ORPO, which have no reference: β·average
  log-prob; for KTO: the desirable and undesirable subsets, see `kto_loss`);
- `.extras`: a dict of detached per-example diagnostics (ORPO's NLL and odds-ratio parts, KTO's
  reference point), empty for the other variants.

    >>> import torch
    >>> out = PREFERENCE_LOSSES["sigmoid"](
    ...     policy_chosen_logps=torch.tensor([-1.0]), policy_rejected_logps=torch.tensor([-3.0]),
    ...     ref_chosen_logps=torch.tensor([-2.0]), ref_rejected_logps=torch.tensor([-2.0]), beta=0.5)
    >>> losses, chosen_rewards, rejected_rewards = out
    >>> round(losses.item(), 4), chosen_rewards.item(), rejected_rewards.item()
    (0.3133, 0.5, -0.5)
    >>> preference_metrics(chosen_rewards, rejected_rewards)["rewards/margins"]
    1.0

Every function works in the dtype of its inputs (ORPO upcasts to float32); pass float32 log-probs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PreferenceLossOutput:
    """What every preference loss returns; unpacks as `(losses, chosen_rewards, rejected_rewards)`.

    A dataclass rather than a bare tuple so that ORPO and KTO can hand back their diagnostics in
    `extras` without giving those two variants a different return arity from the rest.
    """

    losses: torch.Tensor  # (B,) with gradient
    chosen_rewards: torch.Tensor  # (B,) detached; KTO: (N_desirable,)
    rejected_rewards: torch.Tensor  # (B,) detached; KTO: (N_undesirable,)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # detached diagnostics

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.losses, self.chosen_rewards, self.rejected_rewards))


# ---------------------------------------------------------------------------------------------
# argument checks (cheap; the few data-dependent ones cost one host sync per call)


def _check_float(value: float, name: str, *, low: float, low_inclusive: bool,
                 high: float = math.inf, high_inclusive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite float, got {value!r}")
    ok_low = value >= low if low_inclusive else value > low
    ok_high = value <= high if high_inclusive else value < high
    if not (ok_low and ok_high):
        lo, hi = ("[" if low_inclusive else "("), ("]" if high_inclusive else ")")
        raise ValueError(f"{name}: must lie in {lo}{low}, {high}{hi}, got {value!r}")


def _check_beta(beta: float) -> None:
    _check_float(beta, "beta", low=0.0, low_inclusive=False)


def _check_vector(t: object, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    # Shapes are checked, not broadcast: (B,) against (B, 1) would silently give a (B, B) loss.
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (B,), got {type(t).__name__}")
    if t.dim() != 1:
        raise ValueError(f"{name}: expected shape (B,), got {tuple(t.shape)}")
    if like is not None and t.shape != like.shape:
        raise ValueError(f"{name}: shape {tuple(t.shape)} does not match {tuple(like.shape)}")
    return t


def _log_ratios(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    reference_free: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π_θ(y|x) − log π_ref(y|x) for chosen and rejected, each (B,)."""
    _check_vector(policy_chosen_logps, "policy_chosen_logps")
    _check_vector(policy_rejected_logps, "policy_rejected_logps", like=policy_chosen_logps)
    if reference_free:
        # log π_ref ≡ 0: DPO without the reference anchor (TRL's `reference_free`). Reference
        # log-probs passed anyway mean the caller is confused about the mode: refuse them.
        for name, value in (("ref_chosen_logps", ref_chosen_logps),
                            ("ref_rejected_logps", ref_rejected_logps)):
            if value is not None:
                raise ValueError(f"{name}: given with reference_free=True; pass one or the other")
        return policy_chosen_logps, policy_rejected_logps
    if ref_chosen_logps is None or ref_rejected_logps is None:
        missing = "ref_chosen_logps" if ref_chosen_logps is None else "ref_rejected_logps"
        raise ValueError(f"{missing}: required unless reference_free=True")
    _check_vector(ref_chosen_logps, "ref_chosen_logps", like=policy_chosen_logps)
    _check_vector(ref_rejected_logps, "ref_rejected_logps", like=policy_chosen_logps)
    return policy_chosen_logps - ref_chosen_logps, policy_rejected_logps - ref_rejected_logps


def _per_token(values: torch.Tensor, lengths: object, name: str) -> torch.Tensor:
    """values / lengths, i.e. a per-sequence sum turned into a per-token average. (B,) -> (B,)"""
    if lengths is None:
        raise ValueError(f"{name}: required (number of response tokens per sequence)")
    lengths = _check_vector(lengths, name, like=values)
    if bool((lengths < 1).any()):
        # An empty response has no log-prob to average; upstream tokenisation should have
        # rejected it already (DESIGN: an assistant mask with no trainable token is an error).
        raise ValueError(f"{name}: every response needs at least one token, got {lengths.tolist()}")
    return values / lengths.to(values.dtype)


def _smoothed_logistic(z: torch.Tensor, label_smoothing: float | torch.Tensor) -> torch.Tensor:
    """−(1 − ε)·log σ(z) − ε·log σ(−z): logistic loss against the soft target 1 − ε.

    ε is a float, or a (B,) tensor giving each pair its own ε_i."""
    loss = -F.logsigmoid(z)
    if isinstance(label_smoothing, torch.Tensor) or label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-z)
    return loss


def _check_per_pair_smoothing(label_smoothing: object, like: torch.Tensor) -> None:
    """ε as a (B,) tensor of per-pair values in [0, 0.5] (soft labels: ε_i = 1 − p_i)."""
    _check_vector(label_smoothing, "label_smoothing", like=like)
    if bool(((label_smoothing < 0) | (label_smoothing > 0.5)).any()):
        raise ValueError("label_smoothing: per-pair values must lie in [0, 0.5], got "
                         f"{label_smoothing.tolist()}")


# ---------------------------------------------------------------------------------------------
# paired, reference-based: DPO and friends.  h = (log π_θ/π_ref)(y_w) − (log π_θ/π_ref)(y_l)


def sigmoid_loss(
    *,
    policy_chosen_logps: torch.Tensor,  # (B,)
    policy_rejected_logps: torch.Tensor,  # (B,)
    ref_chosen_logps: torch.Tensor | None = None,  # (B,)
    ref_rejected_logps: torch.Tensor | None = None,  # (B,)
    beta: float,
    reference_free: bool = False,
) -> PreferenceLossOutput:
    """DPO: −log σ(β·h) (Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7).

    No label smoothing here: that is `cdpo_loss` (with ε = 0 the two agree exactly). As β → 0 the
    loss tends to log 2 for every pair, whatever the log-probs.
    """
    _check_beta(beta)
    chosen, rejected = _log_ratios(policy_chosen_logps, policy_rejected_logps,
                                   ref_chosen_logps, ref_rejected_logps, reference_free)
    losses = -F.logsigmoid(beta * (chosen - rejected))
    return PreferenceLossOutput(losses, beta * chosen.detach(), beta * rejected.detach())


def cdpo_loss(
    *,
    policy_chosen_logps: torch.Tensor,  # (B,)
    policy_rejected_logps: torch.Tensor,  # (B,)
    ref_chosen_logps: torch.Tensor | None = None,  # (B,)
    ref_rejected_logps: torch.Tensor | None = None,  # (B,)
    beta: float,
    label_smoothing: float | torch.Tensor,
    reference_free: bool = False,
) -> PreferenceLossOutput:
    """Conservative DPO: −(1 − ε)·log σ(β·h) − ε·log σ(−β·h).

    Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO": DPO against a
    soft target, assuming each label is flipped with probability ε. Unlike DPO the optimum is
    finite: β·h* = log((1 − ε)/ε), so the margin stops growing once the model is that confident.

    ε must lie in [0, 0.5]. At ε = 0.5 the loss is NOT constant: it is
    ½·log(2 + e^{βh} + e^{−βh}) = log(2·cosh(βh/2)), symmetric in h with its minimum log 2 at
    h = 0 — the labels carry no information and training pulls every margin back to zero.
    Beyond 0.5 the labels would be believed wrong more often than right: swap them instead.

    Soft labels: `label_smoothing` may be a (B,) tensor, one ε_i per pair. With ε_i = 1 − p_i,
    where p_i ∈ [0.5, 1] is a labeller's probability that chosen ≻ rejected, the loss is the
    cross-entropy of σ(β·h_i) against p_i — the DPO form of training on the normalised
    feedback-model probabilities of Bai et al. 2022 ("Constitutional AI", §4.1).
    """
    _check_beta(beta)
    if isinstance(label_smoothing, torch.Tensor):
        _check_per_pair_smoothing(label_smoothing, policy_chosen_logps)
    else:
        _check_float(label_smoothing, "label_smoothing", low=0.0, low_inclusive=True,
                     high=0.5, high_inclusive=True)
    chosen, rejected = _log_ratios(policy_chosen_logps, policy_rejected_logps,
                                   ref_chosen_logps, ref_rejected_logps, reference_free)
    losses = _smoothed_logistic(beta * (chosen - rejected), label_smoothing)
    return PreferenceLossOutput(losses, beta * chosen.detach(), beta * rejected.detach())


def robust_loss(
    *,
    policy_chosen_logps: torch.Tensor,  # (B,)
    policy_rejected_logps: torch.Tensor,  # (B,)
    ref_chosen_logps: torch.Tensor | None = None,  # (B,)
    ref_rejected_logps: torch.Tensor | None = None,  # (B,)
    beta: float,
    label_smoothing: float,
    reference_free: bool = False,
) -> PreferenceLossOutput:
    """Robust DPO (rDPO): [(1 − ε)·(−log σ(β·h)) − ε·(−log σ(−β·h))] / (1 − 2ε).

    Chowdhury, Kini & Natarajan 2024, "Provably Robust DPO: Aligning Language Models with Noisy
    Feedback" (ICML 2024, arXiv:2403.00409), Sec. 3: the de-biased loss whose expectation under
    labels flipped with probability ε equals the clean DPO loss. Note the MINUS on the flipped
    term (cDPO has a plus): the loss can go negative, and its gradient always raises h.

    ε must lie in [0, 0.5): at 0.5 the denominator is zero (the noisy labels are independent of
    the truth, so no unbiased estimator exists) — a ValueError, where TRL only logs a warning.
    As β → 0 the loss tends to log 2, as for DPO.
    """
    _check_beta(beta)
    _check_float(label_smoothing, "label_smoothing", low=0.0, low_inclusive=True,
                 high=0.5, high_inclusive=False)
    chosen, rejected = _log_ratios(policy_chosen_logps, policy_rejected_logps,
                                   ref_chosen_logps, ref_rejected_logps, reference_free)
    z = beta * (chosen - rejected)
    eps = label_smoothing
    losses = ((1 - eps) * -F.logsigmoid(z) - eps * -F.logsigmoid(-z)) / (1 - 2 * eps)
    return PreferenceLossOutput(losses, beta * chosen.detach(), beta * rejected.detach())


def hinge_loss(
    *,
    policy_chosen_logps: torch.Tensor,  # (B,)
    policy_rejected_logps: torch.Tensor,  # (B,)
    ref_chosen_logps: torch.Tensor | None = None,  # (B,)
    ref_rejected_logps: torch.Tensor | None = None,  # (B,)
    beta: float,
    reference_free: bool = False,
) -> PreferenceLossOutput:
    """Hinge on the reference-normalised margin: max(0, 1 − β·h).

    The "hinge-norm" loss of RSO (Liu et al. 2023, "Statistical Rejection Sampling Improves
    Preference Optimization", arXiv:2309.06657), i.e. SLiC's calibration hinge (Zhao et al. 2023)
    applied to log-ratios against the reference; β plays RSO's γ. Pairs with β·h ≥ 1 contribute
    zero loss and zero gradient. As β → 0 the loss tends to 1.
    """
    _check_beta(beta)
    chosen, rejected = _log_ratios(policy_chosen_logps, policy_rejected_logps,
                                   ref_chosen_logps, ref_rejected_logps, reference_free)
    losses = torch.relu(1 - beta * (chosen - rejected))
    return PreferenceLossOutput(losses, beta * chosen.detach(), beta * rejected.detach())


def ipo_loss(
    *,
    policy_chosen_logps: torch.Tensor,  # (B,)
    policy_rejected_logps: torch.Tensor,  # (B,)
    ref_chosen_logps: torch.Tensor | None = None,  # (B,)
    ref_rejected_logps: torch.Tensor | None = None,  # (B,)
    beta: float,
    length_normalize: bool = True,
    chosen_lengths: torch.Tensor | None = None,  # (B,)
    rejected_lengths: torch.Tensor | None = None,  # (B,)
    reference_free: bool = False,
) -> PreferenceLossOutput:
    """IPO: (h − 1/(2β))², β being the paper's regulariser τ.

    Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences" (arXiv:2310.12036), Eq. 17.

    Length normalisation (deliberate, explicit): with `length_normalize=True` (the default) each
    log-ratio is divided by its response's token count before taking h, so h is a per-token
    quantity and the squared target 1/(2β) does not depend on response length. This is TRL's
    choice, which TRL reports was confirmed with the IPO authors as the form behind the paper's
    results; the paper's Eq. 17 itself is written with sequence log-probs. `chosen_lengths` and
    `rejected_lengths` are then required. `length_normalize=False` is Eq. 17 read literally on
    summed log-probs (the lengths are then ignored).

    Rewards are β·(summed log-ratio) in both modes, as TRL logs them, so rewards/* are comparable
    across the DPO-family variants. β must be > 0; small β means a large target margin 1/(2β)
    and a correspondingly large loss (at β = 1e-8 it is about 2.5e15): that is the objective, not
    an overflow.
    """
    _check_beta(beta)
    chosen, rejected = _log_ratios(policy_chosen_logps, policy_rejected_logps,
                                   ref_chosen_logps, ref_rejected_logps, reference_free)
    if length_normalize:
        h = _per_token(chosen, chosen_lengths, "chosen_lengths") - _per_token(
            rejected, rejected_lengths, "rejected_lengths")
    else:
        h = chosen - rejected
    losses = (h - 1 / (2 * beta)) ** 2
    return PreferenceLossOutput(losses, beta * chosen.detach(), beta * rejected.detach())


# ---------------------------------------------------------------------------------------------
# paired, reference-free


def simpo_loss(
    *,
    policy_chosen_logps: torch.Tensor,  # (B,) summed over tokens
    policy_rejected_logps: torch.Tensor,  # (B,)
    chosen_lengths: torch.Tensor,  # (B,)
    rejected_lengths: torch.Tensor,  # (B,)
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """SimPO: −log σ(β·(ā_w − ā_l) − γ), ā = log π_θ(y|x) / |y| (per-token average log-prob).

    Meng, Xia & Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward"
    (arXiv:2405.14734), Eq. 6. No reference model. Inputs are SUMMED log-probs plus token counts,
    like every other `*_logps` here; the average is taken inside so the caller cannot forget it.
    γ is the paper's target reward margin, used as-is (TRL's `simpo_gamma` is the same γ: it
    divides by β and multiplies back). With ε = `label_smoothing` > 0 the loss is the smoothed
    form −(1 − ε)·log σ(z) − ε·log σ(−z), as in TRL's CPO trainer (not in the SimPO paper).

    Rewards are the paper's implicit reward β·ā (Eq. 4), the same numbers TRL logs.
    """
    _check_beta(beta)
    _check_float(gamma, "gamma", low=0.0, low_inclusive=True)
    _check_float(label_smoothing, "label_smoothing", low=0.0, low_inclusive=True,
                 high=0.5, high_inclusive=True)
    _check_vector(policy_chosen_logps, "policy_chosen_logps")
    _check_vector(policy_rejected_logps, "policy_rejected_logps", like=policy_chosen_logps)
    avg_chosen = _per_token(policy_chosen_logps, chosen_lengths, "chosen_lengths")
    avg_rejected = _per_token(policy_rejected_logps, rejected_lengths, "rejected_lengths")
    losses = _smoothed_logistic(beta * (avg_chosen - avg_rejected) - gamma, label_smoothing)
    return PreferenceLossOutput(losses, beta * avg_chosen.detach(), beta * avg_rejected.detach())


# Largest per-token average log-prob ORPO uses: p = exp(avg) ≤ 1 − 1e-6 keeps log(1 − p) finite.
_ORPO_MAX_AVG_LOGP = -1e-6


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, without cancellation (Mächler 2012, "Accurately Computing
    log(1 − exp(−|a|))"): log(−expm1(x)) near 0, log1p(−eˣ) below −log 2."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(
    *,
    policy_chosen_logps: torch.Tensor,  # (B,) summed over tokens
    policy_rejected_logps: torch.Tensor,  # (B,)
    chosen_lengths: torch.Tensor,  # (B,)
    rejected_lengths: torch.Tensor,  # (B,)
    beta: float,
) -> PreferenceLossOutput:
    """ORPO: NLL(y_w) + λ·(−log σ(log odds(y_w) − log odds(y_l))), λ = `beta`.

    Hong, Lee & Thorne 2024, "ORPO: Monolithic Preference Optimization without Reference Model"
    (arXiv:2403.07691), Eqs. 6–7, with odds(y) = P(y|x)/(1 − P(y|x)) and log P(y|x) the per-token
    AVERAGE log-prob ā = log π_θ(y|x)/|y| (the paper's length-normalised likelihood). λ is named
    `beta` as in TRL so one config key serves every variant; λ = 0 (plain SFT) is allowed.

    log(1 − P) is computed with a stable log1mexp. Deliberate deviations, both documented:

    - ā is clamped at −1e-6 (P ≤ 1 − 1e-6): at ā = 0 the odds are infinite and the loss or its
      gradient becomes inf/NaN (TRL does not clamp). The clamp only bites when the model already
      assigns the whole response probability ≈ 1, where its gradient is zero.
    - NLL is the per-SEQUENCE token average −ā_w (the paper's L_SFT, averaged over the batch by
      the caller). TRL's ORPO trainer instead averages over all chosen tokens of the batch, which
      weights long responses more; the two agree when chosen lengths are equal.

    Computed in float32 whatever the input dtype (log1mexp is precision-sensitive). Rewards are
    β·ā as TRL logs them. `extras` holds detached (B,) tensors: "nll" (−ā_w), "or_loss"
    (−log σ(log odds ratio)) and "log_odds" (log odds(y_w) − log odds(y_l)).
    """
    _check_float(beta, "beta", low=0.0, low_inclusive=True)
    _check_vector(policy_chosen_logps, "policy_chosen_logps")
    _check_vector(policy_rejected_logps, "policy_rejected_logps", like=policy_chosen_logps)
    avg_chosen = _per_token(policy_chosen_logps.float(), chosen_lengths, "chosen_lengths")
    avg_rejected = _per_token(policy_rejected_logps.float(), rejected_lengths, "rejected_lengths")
    a_w = avg_chosen.clamp(max=_ORPO_MAX_AVG_LOGP)
    a_l = avg_rejected.clamp(max=_ORPO_MAX_AVG_LOGP)
    # log odds(y) = log P − log(1 − P)
    log_odds = (a_w - _log1mexp(a_w)) - (a_l - _log1mexp(a_l))
    or_loss = -F.logsigmoid(log_odds)
    nll = -avg_chosen
    losses = nll + beta * or_loss
    extras = {"nll": nll.detach(), "or_loss": or_loss.detach(), "log_odds": log_odds.detach()}
    return PreferenceLossOutput(losses, beta * avg_chosen.detach(), beta * avg_rejected.detach(),
                                extras)


# ---------------------------------------------------------------------------------------------
# unpaired: KTO


def kto_reference_kl(
    policy_kl_logps: torch.Tensor,  # (M,) log π_θ(y_j | x_i) on MISMATCHED pairs, i ≠ j
    ref_kl_logps: torch.Tensor,  # (M,) log π_ref(y_j | x_i) on the same pairs
) -> torch.Tensor:  # () detached, ≥ 0
    """KTO's reference point z₀ = max(0, mean(log π_θ − log π_ref)) over mismatched pairs, detached.

    Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization"
    (arXiv:2402.01306), Sec. 4.1: a biased but cheap estimate of KL(π_θ ‖ π_ref) from completions
    paired with OTHER prompts of the batch (prompt_i with completion_j), clamped at 0 because a KL
    is non-negative and not back-propagated through. Under data parallelism TRL averages this
    mean across processes before clamping: gather the (M,) tensors (or all-reduce the mean)
    first if you need the same number.

    >>> kto_reference_kl(torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -5.0])).item()
    0.5
    """
    _check_vector(policy_kl_logps, "policy_kl_logps")
    _check_vector(ref_kl_logps, "ref_kl_logps", like=policy_kl_logps)
    if policy_kl_logps.numel() == 0:
        raise ValueError("policy_kl_logps: need at least one mismatched pair to estimate the KL")
    return (policy_kl_logps - ref_kl_logps).mean().clamp(min=0).detach()


def kto_loss(
    *,
    policy_logps: torch.Tensor,  # (B,) summed over tokens
    ref_logps: torch.Tensor,  # (B,)
    labels: torch.Tensor,  # (B,) bool, True = desirable
    kl: torch.Tensor | float,  # () reference point z₀, see kto_reference_kl
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> PreferenceLossOutput:
    """KTO, with r = log π_θ(y|x) − log π_ref(y|x) and z₀ = `kl`:

        desirable    λ_D·(1 − σ(β·(r − z₀)))
        undesirable  λ_U·(1 − σ(β·(z₀ − r)))

    Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization"
    (arXiv:2402.01306), Sec. 4.1: L_KTO = E[λ_y − v(x, y)] with the value function v above.
    `kl` is detached here whatever the caller passes (the paper does not back-propagate through
    z₀); clamping it is `kto_reference_kl`'s job. λ_D, λ_U ≥ 0 trade off desirable against
    undesirable examples (the paper suggests λ_D·n_D / (λ_U·n_U) in [1, 4/3]).

    Outputs, compared with TRL's KTOTrainer (1.16):
    - `losses` (B,) are in BATCH order; TRL concatenates [desirable..., undesirable...]. The mean,
      which is what either trains on, is the same.
    - `chosen_rewards` is β·r on the desirable examples only, shape (N_desirable,), and
      `rejected_rewards` on the undesirable ones, (N_undesirable,): the same tensors as TRL. They
      are NOT pairs; use `preference_metrics(..., paired=False)`.
    - `extras["kl"]` is the detached z₀ used (TRL logs it as "kl").
    """
    _check_beta(beta)
    _check_float(desirable_weight, "desirable_weight", low=0.0, low_inclusive=True)
    _check_float(undesirable_weight, "undesirable_weight", low=0.0, low_inclusive=True)
    _check_vector(policy_logps, "policy_logps")
    _check_vector(ref_logps, "ref_logps", like=policy_logps)
    _check_vector(labels, "labels", like=policy_logps)
    if labels.dtype != torch.bool:
        # 0/1 floats or ints would work arithmetically, but a float "score" passed by mistake
        # would be silently thresholded; ask for the unambiguous form.
        raise ValueError(f"labels: expected a bool tensor (True = desirable), got {labels.dtype}")
    z0 = torch.as_tensor(kl, dtype=policy_logps.dtype, device=policy_logps.device).detach()
    if z0.numel() != 1:
        raise ValueError(f"kl: expected a scalar reference point, got shape {tuple(z0.shape)}")
    z0 = z0.reshape(())
    r = policy_logps - ref_logps
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (r - z0)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - r)))
    losses = torch.where(labels, desirable, undesirable)
    rewards = beta * r.detach()
    return PreferenceLossOutput(losses, rewards[labels], rewards[~labels], {"kl": z0})


# ---------------------------------------------------------------------------------------------
# registry and metrics

PREFERENCE_LOSSES: dict[str, Callable[..., PreferenceLossOutput]] = {
    "sigmoid": sigmoid_loss,
    "ipo": ipo_loss,
    "cdpo": cdpo_loss,
    "robust": robust_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
    "orpo": orpo_loss,
    "kto": kto_loss,
}

# Variants that need no reference model (a stage can skip the reference forward for them).
REFERENCE_FREE_LOSSES: frozenset[str] = frozenset({"simpo", "orpo"})
# Variants whose chosen/rejected rewards are not pairs (metrics with paired=False).
UNPAIRED_LOSSES: frozenset[str] = frozenset({"kto"})


def preference_metrics(
    chosen_rewards: torch.Tensor,  # (B,) paired, or (N_c,) when paired=False
    rejected_rewards: torch.Tensor,  # (B,) paired, or (N_r,) when paired=False
    *,
    paired: bool = True,
) -> dict[str, float]:
    """Batch means of the implicit rewards, named as TRL logs them.

    Paired (DPO family, SimPO, ORPO): rewards/chosen, rewards/rejected, rewards/margins
    (mean of c − r) and rewards/accuracies (fraction with c > r, strictly: ties count as wrong).

    Unpaired (KTO): the two sides are different examples, so there is no accuracy; the margin is
    the difference of the two means, and a side with no examples in the batch is left out (as
    TRL does) rather than reported as NaN.

    >>> m = preference_metrics(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.0]))
    >>> m["rewards/margins"], m["rewards/accuracies"]
    (0.25, 0.5)
    """
    _check_vector(chosen_rewards, "chosen_rewards")
    _check_vector(rejected_rewards, "rejected_rewards")
    c, r = chosen_rewards.detach().double(), rejected_rewards.detach().double()
    if paired:
        if c.shape != r.shape:
            raise ValueError(f"rejected_rewards: shape {tuple(r.shape)} does not match "
                             f"chosen_rewards {tuple(c.shape)} (unpaired? pass paired=False)")
        if c.numel() == 0:
            raise ValueError("chosen_rewards: empty batch")
        return {
            "rewards/chosen": c.mean().item(),
            "rewards/rejected": r.mean().item(),
            "rewards/margins": (c - r).mean().item(),
            "rewards/accuracies": (c > r).double().mean().item(),
        }
    out: dict[str, float] = {}
    if c.numel():
        out["rewards/chosen"] = c.mean().item()
    if r.numel():
        out["rewards/rejected"] = r.mean().item()
    if c.numel() and r.numel():
        out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
    return out
