import doctest
import math

import pytest
import torch
from torch.testing import assert_close

import alignkit.losses.preference as preference_module
from alignkit.losses import (
    PREFERENCE_LOSSES,
    REFERENCE_FREE_LOSSES,
    UNPAIRED_LOSSES,
    PreferenceLossOutput,
    cdpo_loss,
    hinge_loss,
    ipo_loss,
    kto_loss,
    kto_reference_kl,
    orpo_loss,
    preference_metrics,
    robust_loss,
    sigmoid_loss,
    simpo_loss,
)
from alignkit.losses.preference import _log1mexp

LN2 = math.log(2)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# One paired batch shared by the DPO-family tests.
#   policy chosen (-10, -20, -15) vs reference (-11, -19, -15): chosen log-ratios  c = ( 1, -1, 0)
#   policy rejected (-12, -18, -16) vs reference (-11, -19, -16): rejected log-ratios r = (-1,  1, 0)
#   h = c - r = (2, -2, 0)
def paired_batch(**extra) -> dict:
    return dict(
        policy_chosen_logps=t(-10, -20, -15),
        policy_rejected_logps=t(-12, -18, -16),
        ref_chosen_logps=t(-11, -19, -15),
        ref_rejected_logps=t(-11, -19, -16),
        **extra,
    )


# --------------------------------------------------------------------------------------------
# hand-computed values


def test_sigmoid_by_hand():
    """DPO, β = 0.1, h = (2, -2, 0) -> z = βh = (0.2, -0.2, 0).

    loss = -log σ(z) = log(1 + e^{-z}):
      z =  0.2: log(1 + 0.818731) = 0.598139
      z = -0.2: log(1 + 1.221403) = 0.798139   (= 0.598139 + 0.2, since softplus(z) - softplus(-z) = z)
      z =  0  : log 2 = 0.693147
    rewards = β·log-ratio: chosen 0.1·(1, -1, 0) = (0.1, -0.1, 0); rejected 0.1·(-1, 1, 0) = (-0.1, 0.1, 0).
    """
    out = sigmoid_loss(**paired_batch(beta=0.1))
    assert isinstance(out, PreferenceLossOutput)
    losses, chosen, rejected = out
    assert_close(losses, t(0.598139, 0.798139, 0.693147))
    assert_close(chosen, t(0.1, -0.1, 0.0))
    assert_close(rejected, t(-0.1, 0.1, 0.0))
    assert out.extras == {}
    assert not chosen.requires_grad and not rejected.requires_grad


def test_cdpo_by_hand():
    """cDPO, β = 0.1, ε = 0.1, z = (0.2, -0.2, 0).

    loss = 0.9·softplus(-z) + 0.1·softplus(z) = softplus(-z) + ε·z   (softplus(z) = softplus(-z) + z):
      z =  0.2: 0.598139 + 0.02 = 0.618139
      z = -0.2: 0.798139 - 0.02 = 0.778139
      z =  0  : log 2 = 0.693147
    """
    losses, chosen, _ = cdpo_loss(**paired_batch(beta=0.1, label_smoothing=0.1))
    assert_close(losses, t(0.618139, 0.778139, 0.693147))
    assert_close(chosen, t(0.1, -0.1, 0.0))


def test_cdpo_with_zero_smoothing_is_dpo():
    a = cdpo_loss(**paired_batch(beta=0.3, label_smoothing=0.0)).losses
    b = sigmoid_loss(**paired_batch(beta=0.3)).losses
    assert_close(a, b)


def test_cdpo_at_one_half_is_symmetric_not_constant():
    """ε = 0.5: loss = ½(softplus(-z) + softplus(z)) = log(2·cosh(z/2)).

    β = 1, h = (2, -2, 0): z = ±2 -> log(2·cosh 1) = log(3.086161) = 1.126928; z = 0 -> log 2.
    Gradient d loss/dz = ½(σ(z) - σ(-z)) = ½·tanh(z/2): 0 at z = 0, so training pulls every
    margin back to 0 (the labels carry no information), rather than leaving the loss flat.
    """
    batch = paired_batch(beta=1.0, label_smoothing=0.5)
    batch["policy_chosen_logps"].requires_grad_()
    losses, _, _ = cdpo_loss(**batch)
    assert_close(losses, t(1.126928, 1.126928, LN2))
    losses.sum().backward()
    # z = +2: d/dpc = ½·tanh(1) = 0.380797 (> 0: shrink the margin); z = -2: -0.380797; z = 0: 0
    assert_close(batch["policy_chosen_logps"].grad, t(0.380797, -0.380797, 0.0))


def test_robust_by_hand():
    """rDPO, β = 0.1, ε = 0.1, z = (0.2, -0.2, 0).

    loss = [(1-ε)·softplus(-z) - ε·softplus(z)] / (1-2ε) = softplus(-z) - ε·z/(1-2ε)
         = softplus(-z) - 0.125·z:
      z =  0.2: 0.598139 - 0.025 = 0.573139
      z = -0.2: 0.798139 + 0.025 = 0.823139
      z =  0  : log 2 = 0.693147
    """
    losses, chosen, rejected = robust_loss(**paired_batch(beta=0.1, label_smoothing=0.1))
    assert_close(losses, t(0.573139, 0.823139, 0.693147))
    assert_close(chosen, t(0.1, -0.1, 0.0))
    assert_close(rejected, t(-0.1, 0.1, 0.0))


def test_robust_with_zero_smoothing_is_dpo():
    a = robust_loss(**paired_batch(beta=0.3, label_smoothing=0.0)).losses
    b = sigmoid_loss(**paired_batch(beta=0.3)).losses
    assert_close(a, b)


def test_robust_can_be_negative():
    """β = 1, h = 20, ε = 0.4: softplus(-20) - 0.4·20/0.2 = 2.06e-9 - 40 = -40.0 (unbiased, not bounded)."""
    out = robust_loss(policy_chosen_logps=t(0.0), policy_rejected_logps=t(-20.0),
                      reference_free=True, beta=1.0, label_smoothing=0.4)
    assert_close(out.losses, t(-40.0))


def test_hinge_by_hand():
    """Hinge, β = 1, h = (2, -2, 0): max(0, 1 - h) = (max(0, -1), 3, 1) = (0, 3, 1).

    β = 0.1: 1 - 0.1·h = (0.8, 1.2, 1.0).
    """
    assert_close(hinge_loss(**paired_batch(beta=1.0)).losses, t(0.0, 3.0, 1.0))
    assert_close(hinge_loss(**paired_batch(beta=0.1)).losses, t(0.8, 1.2, 1.0))


def test_ipo_length_normalised_by_hand():
    """IPO, β = 0.5 -> target 1/(2β) = 1. Log-ratios c = (1, -1, 0), r = (-1, 1, 0).

    chosen lengths (2, 4, 1):   c/|y_w| = (0.5, -0.25, 0)
    rejected lengths (1, 2, 5): r/|y_l| = (-1, 0.5, 0)
    h = (1.5, -0.75, 0); loss = (h - 1)^2 = (0.25, 3.0625, 1.0)
    rewards are NOT normalised: β·c = (0.5, -0.5, 0), β·r = (-0.5, 0.5, 0).
    """
    losses, chosen, rejected = ipo_loss(**paired_batch(
        beta=0.5, chosen_lengths=torch.tensor([2, 4, 1]), rejected_lengths=torch.tensor([1, 2, 5])))
    assert_close(losses, t(0.25, 3.0625, 1.0))
    assert_close(chosen, t(0.5, -0.5, 0.0))
    assert_close(rejected, t(-0.5, 0.5, 0.0))


def test_ipo_unnormalised_by_hand():
    """IPO on summed log-probs (length_normalize=False), β = 0.5: h = (2, -2, 0),
    loss = (h - 1)^2 = (1, 9, 1)."""
    out = ipo_loss(**paired_batch(beta=0.5, length_normalize=False))
    assert_close(out.losses, t(1.0, 9.0, 1.0))


def test_simpo_by_hand():
    """SimPO, β = 2, γ = 0.5 (no reference).

    chosen  summed (-4, -6) over (2, 3) tokens -> averages (-2, -2)
    rejected summed (-9, -2) over (3, 1) tokens -> averages (-3, -2)
    z = β·(ā_w - ā_l) - γ = 2·(1, 0) - 0.5 = (1.5, -0.5)
    loss = softplus(-z): log(1 + e^{-1.5}) = 0.201413;  log(1 + e^{0.5}) = 0.974077
    with ε = 0.2: softplus(-z) + ε·z = (0.201413 + 0.3, 0.974077 - 0.1) = (0.501413, 0.874077)
    rewards β·ā: chosen (-4, -4), rejected (-6, -4)
    """
    batch = dict(policy_chosen_logps=t(-4, -6), policy_rejected_logps=t(-9, -2),
                 chosen_lengths=torch.tensor([2, 3]), rejected_lengths=torch.tensor([3, 1]),
                 beta=2.0, gamma=0.5)
    losses, chosen, rejected = simpo_loss(**batch)
    assert_close(losses, t(0.201413, 0.974077))
    assert_close(chosen, t(-4.0, -4.0))
    assert_close(rejected, t(-6.0, -4.0))
    assert_close(simpo_loss(**batch, label_smoothing=0.2).losses, t(0.501413, 0.874077))


def test_orpo_by_hand():
    """ORPO, λ = β = 0.1. Per-token probabilities chosen (0.5, 0.2), rejected (0.2, 0.5), given as
    summed log-probs over lengths chosen (2, 3), rejected (4, 1): e.g. 2·ln 0.5, 4·ln 0.2.

    odds p/(1-p): 0.5 -> 1;  0.2 -> 0.25.
    pair 1: log odds ratio = ln(1/0.25) = ln 4 = 1.386294; OR loss = -log σ(ln 4) = -ln(4/5) = 0.223144
            NLL = -ln 0.5 = 0.693147; loss = 0.693147 + 0.1·0.223144 = 0.715462
    pair 2: log odds ratio = -ln 4; OR loss = -ln(1/5) = ln 5 = 1.609438
            NLL = -ln 0.2 = 1.609438; loss = 1.609438 + 0.160944 = 1.770382
    rewards β·ā: chosen (0.1 ln 0.5, 0.1 ln 0.2) = (-0.069315, -0.160944); rejected swapped.
    """
    lp_half, lp_fifth = math.log(0.5), math.log(0.2)
    out = orpo_loss(policy_chosen_logps=t(2 * lp_half, 3 * lp_fifth),
                    policy_rejected_logps=t(4 * lp_fifth, 1 * lp_half),
                    chosen_lengths=torch.tensor([2, 3]), rejected_lengths=torch.tensor([4, 1]),
                    beta=0.1)
    losses, chosen, rejected = out
    assert_close(losses, t(0.715462, 1.770382))
    assert_close(chosen, t(-0.069315, -0.160944))
    assert_close(rejected, t(-0.160944, -0.069315))
    assert_close(out.extras["nll"], t(0.693147, 1.609438))
    assert_close(out.extras["or_loss"], t(0.223144, 1.609438))
    assert_close(out.extras["log_odds"], t(1.386294, -1.386294))
    assert_close(out.extras["nll"] + 0.1 * out.extras["or_loss"], losses.detach())


def test_log1mexp_is_accurate_where_the_naive_form_cancels():
    """log(1 - e^x) at x = -1e-5 is log(9.99995e-6) = -11.512930. In float32, 1 - exp(-1e-5)
    cancels (spacing of floats near 1 is 6e-8, a 0.6% error); expm1 keeps full precision.
    At x = -50: log1p(-e^-50) = -1.928750e-22, where log(-expm1(-50)) rounds to log(1) = 0 even in
    float64. At x = -1: log(1 - 0.367879) = -0.458675."""
    x = t(-1e-5, -50.0, -1.0)
    expected = [math.log(-math.expm1(-1e-5)), math.log1p(-math.exp(-50.0)), math.log1p(-math.exp(-1.0))]
    assert_close(t(*expected), t(-11.512930, -1.928750e-22, -0.458675), rtol=1e-6, atol=0)
    assert_close(_log1mexp(x), t(*expected), rtol=1e-6, atol=0)
    naive = torch.log(1 - torch.exp(x[:1]))
    assert abs(naive.item() - expected[0]) > 1e-4  # the naive form really is worse here


def test_orpo_is_finite_when_the_response_is_certain():
    """ā = 0 (P = 1): infinite odds; the clamp at -1e-6 keeps loss and gradient finite.
    With ā_w clamped to -1e-6: log odds(y_w) = -1e-6 - log(1e-6) ≈ 13.815510."""
    chosen = t(0.0, -1e-9).requires_grad_()
    out = orpo_loss(policy_chosen_logps=chosen, policy_rejected_logps=t(-3.0, -3.0),
                    chosen_lengths=torch.tensor([3, 3]), rejected_lengths=torch.tensor([3, 3]),
                    beta=1.0)
    assert torch.isfinite(out.losses).all()
    out.losses.sum().backward()
    assert torch.isfinite(chosen.grad).all()
    # rejected ā = -1: log odds = -1 - log(1 - e^-1) = -1 + 0.458675 = -0.541325
    assert_close(out.extras["log_odds"], t(13.815510 + 0.541325, 13.815510 + 0.541325))


def test_kto_by_hand():
    """KTO, β = 0.5, z0 = 0.5, λ_D = 1, λ_U = 2.

    policy (-3, -4, -6, -5), reference (-4, -3, -6, -5) -> r = (1, -1, 0, 0)
    labels (desirable, undesirable, undesirable, desirable)
      row 0 desirable,   r = 1:  1·(1 - σ(0.5·(1 - 0.5)))  = 1 - σ(0.25)   = 1 - 0.562177 = 0.437823
      row 1 undesirable, r = -1: 2·(1 - σ(0.5·(0.5 + 1))) = 2·σ(-0.75)     = 2·0.320821   = 0.641643
      row 2 undesirable, r = 0:  2·(1 - σ(0.5·0.5))       = 2·0.437823                    = 0.875647
      row 3 desirable,   r = 0:  1 - σ(0.5·(0 - 0.5))     = σ(0.25)                        = 0.562177
    losses stay in batch order; rewards β·r split by label: chosen (0.5, 0), rejected (-0.5, 0).
    """
    out = kto_loss(policy_logps=t(-3, -4, -6, -5), ref_logps=t(-4, -3, -6, -5),
                   labels=torch.tensor([True, False, False, True]), kl=0.5, beta=0.5,
                   desirable_weight=1.0, undesirable_weight=2.0)
    losses, chosen, rejected = out
    assert_close(losses, t(0.437823, 0.641643, 0.875647, 0.562177))
    assert_close(chosen, t(0.5, 0.0))
    assert_close(rejected, t(-0.5, 0.0))
    assert_close(out.extras["kl"], torch.tensor(0.5))


def test_kto_reference_kl_by_hand():
    """mean of (policy - ref) over mismatched pairs, clamped at 0, detached.

    (-3, -5, -2) - (-4, -5, -4) = (1, 0, 2): mean 1.
    (-5, -6) - (-4, -4) = (-1, -2): mean -1.5 -> clamped to 0.
    """
    policy = t(-3, -5, -2).requires_grad_()
    kl = kto_reference_kl(policy, t(-4, -5, -4))
    assert_close(kl, torch.tensor(1.0))
    assert not kl.requires_grad
    assert_close(kto_reference_kl(t(-5, -6), t(-4, -4)), torch.tensor(0.0))


def test_kto_does_not_backpropagate_through_kl():
    kl = torch.tensor(0.3, requires_grad=True)
    policy = t(-1.0, -2.0).requires_grad_()
    out = kto_loss(policy_logps=policy, ref_logps=t(-1.0, -2.0), labels=torch.tensor([True, False]),
                   kl=kl, beta=0.1)
    out.losses.sum().backward()
    assert kl.grad is None
    assert policy.grad is not None


def test_kto_all_desirable_batch():
    """No undesirable example: rejected_rewards is empty, and the metrics leave it out."""
    out = kto_loss(policy_logps=t(-1.0, -2.0), ref_logps=t(-2.0, -2.0),
                   labels=torch.tensor([True, True]), kl=0.0, beta=1.0)
    assert out.rejected_rewards.shape == (0,)
    # r = (1, 0): 1 - σ(1) = 0.268941, 1 - σ(0) = 0.5
    assert_close(out.losses, t(0.268941, 0.5))
    assert preference_metrics(out.chosen_rewards, out.rejected_rewards, paired=False) == {
        "rewards/chosen": pytest.approx(0.5)}


# --------------------------------------------------------------------------------------------
# limits and modes


def test_beta_to_zero():
    """β = 1e-8 and h = (100, -100): |z| = |βh| = 1e-6, so
    DPO/cDPO/rDPO -> -log σ(±1e-6) = log 2 ∓ 5e-7 (within 1e-6 of log 2), hinge -> 1 ∓ 1e-6."""
    batch = dict(policy_chosen_logps=t(-1.0, -150.0), policy_rejected_logps=t(-101.0, -50.0),
                 ref_chosen_logps=t(0.0, 0.0), ref_rejected_logps=t(0.0, 0.0), beta=1e-8)
    for fn, extra in ((sigmoid_loss, {}), (cdpo_loss, {"label_smoothing": 0.2}),
                      (robust_loss, {"label_smoothing": 0.2})):
        assert_close(fn(**batch, **extra).losses, t(LN2, LN2), atol=1e-6, rtol=0)
    assert_close(hinge_loss(**batch).losses, t(1.0 - 1e-6, 1.0 + 1e-6), atol=1e-7, rtol=0)


def test_reference_free_dpo():
    """reference_free: ref log-probs are 0, h = log π(y_w) - log π(y_l) = -1 - (-3) = 2.
    β = 0.5: z = 1, loss = log(1 + e^-1) = 0.313262; rewards β·log π = (-0.5), (-1.5)."""
    losses, chosen, rejected = sigmoid_loss(policy_chosen_logps=t(-1.0), policy_rejected_logps=t(-3.0),
                                            beta=0.5, reference_free=True)
    assert_close(losses, t(0.313262))
    assert_close(chosen, t(-0.5))
    assert_close(rejected, t(-1.5))
    with_zero_ref = sigmoid_loss(policy_chosen_logps=t(-1.0), policy_rejected_logps=t(-3.0),
                                 ref_chosen_logps=t(0.0), ref_rejected_logps=t(0.0), beta=0.5)
    assert_close(with_zero_ref.losses, losses)


def test_reference_free_refuses_reference_logps():
    with pytest.raises(ValueError, match="^ref_chosen_logps: given with reference_free=True"):
        sigmoid_loss(**paired_batch(beta=0.1, reference_free=True))
    with pytest.raises(ValueError, match="^ref_rejected_logps: required"):
        sigmoid_loss(policy_chosen_logps=t(-1.0), policy_rejected_logps=t(-2.0),
                     ref_chosen_logps=t(-1.0), beta=0.1)


# --------------------------------------------------------------------------------------------
# gradients: raising the chosen log-prob lowers the loss; raising the rejected one raises it


def test_dpo_gradient_by_hand():
    """d/d log π(y_w) of -log σ(βh) = -β·σ(-βh); β = 0.1, h = 2: -0.1·σ(-0.2) = -0.1·0.450166 = -0.045017.
    The rejected side gets the opposite sign: +0.045017."""
    pc, pr = t(-10.0).requires_grad_(), t(-12.0).requires_grad_()
    sigmoid_loss(policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=t(-11.0),
                 ref_rejected_logps=t(-11.0), beta=0.1).losses.sum().backward()
    assert_close(pc.grad, t(-0.045017))
    assert_close(pr.grad, t(0.045017))


PAIRED_CALLS = {
    # every point is inside the region where the loss still pushes h up (hinge: βh < 1;
    # IPO: h below its target 1/(2β); cDPO: βh < log((1-ε)/ε)); h = (2, -2, 0) here.
    "sigmoid": dict(beta=0.1),
    "cdpo": dict(beta=0.1, label_smoothing=0.1),
    "robust": dict(beta=0.1, label_smoothing=0.1),
    "hinge": dict(beta=0.1),
    "ipo": dict(beta=0.1, chosen_lengths=torch.tensor([2, 4, 1]),
                rejected_lengths=torch.tensor([1, 2, 5])),
}


@pytest.mark.parametrize("name", sorted(PAIRED_CALLS))
def test_gradient_direction_reference_based(name):
    batch = paired_batch(**PAIRED_CALLS[name])
    pc = batch["policy_chosen_logps"].requires_grad_()
    pr = batch["policy_rejected_logps"].requires_grad_()
    PREFERENCE_LOSSES[name](**batch).losses.sum().backward()
    assert (pc.grad < 0).all(), pc.grad
    assert (pr.grad > 0).all(), pr.grad


@pytest.mark.parametrize("name", ["simpo", "orpo"])
def test_gradient_direction_reference_free(name):
    pc = t(-4.0, -6.0).requires_grad_()
    pr = t(-9.0, -2.0).requires_grad_()
    kwargs = dict(policy_chosen_logps=pc, policy_rejected_logps=pr,
                  chosen_lengths=torch.tensor([2, 3]), rejected_lengths=torch.tensor([3, 1]), beta=2.0)
    if name == "simpo":
        kwargs["gamma"] = 0.5
    PREFERENCE_LOSSES[name](**kwargs).losses.sum().backward()
    assert (pc.grad < 0).all(), pc.grad
    assert (pr.grad > 0).all(), pr.grad


def test_gradient_direction_kto():
    """Desirable rows: d loss / d log π < 0 (raise them); undesirable rows: > 0 (lower them)."""
    policy = t(-3, -4, -6, -5).requires_grad_()
    labels = torch.tensor([True, False, False, True])
    kto_loss(policy_logps=policy, ref_logps=t(-4, -3, -6, -5), labels=labels, kl=0.5,
             beta=0.5).losses.sum().backward()
    assert (policy.grad[labels] < 0).all() and (policy.grad[~labels] > 0).all(), policy.grad


def test_hinge_has_no_gradient_past_the_margin():
    """β = 1, h = 2 ≥ 1: loss 0 and gradient 0."""
    pc = t(-10.0).requires_grad_()
    out = hinge_loss(policy_chosen_logps=pc, policy_rejected_logps=t(-12.0),
                     ref_chosen_logps=t(-11.0), ref_rejected_logps=t(-11.0), beta=1.0)
    out.losses.sum().backward()
    assert out.losses.item() == 0.0 and pc.grad.item() == 0.0


# --------------------------------------------------------------------------------------------
# metrics


def test_preference_metrics_paired_by_hand():
    """chosen (0.3, -0.1, 0.2), rejected (-0.1, 0.1, 0.2)
    rewards/chosen = 0.4/3 = 0.133333; rewards/rejected = 0.2/3 = 0.066667
    margins (0.4, -0.2, 0) -> mean 0.066667
    accuracies: 0.3 > -0.1 yes, -0.1 > 0.1 no, 0.2 > 0.2 no (strict) -> 1/3"""
    m = preference_metrics(t(0.3, -0.1, 0.2), t(-0.1, 0.1, 0.2))
    assert m == pytest.approx({"rewards/chosen": 0.133333, "rewards/rejected": 0.066667,
                               "rewards/margins": 0.066667, "rewards/accuracies": 1 / 3}, abs=1e-6)
    assert all(type(v) is float for v in m.values())


def test_preference_metrics_unpaired_by_hand():
    """KTO: chosen (0.5, 0.0) mean 0.25; rejected (-0.5) mean -0.5; margin 0.25 - (-0.5) = 0.75;
    no accuracy (the two sides are different examples)."""
    m = preference_metrics(t(0.5, 0.0), t(-0.5), paired=False)
    assert m == pytest.approx({"rewards/chosen": 0.25, "rewards/rejected": -0.5, "rewards/margins": 0.75})


def test_preference_metrics_refuses_unpaired_shapes_when_paired():
    with pytest.raises(ValueError, match="^rejected_rewards: .*paired=False"):
        preference_metrics(t(0.5, 0.0), t(-0.5))


# --------------------------------------------------------------------------------------------
# registry, call convention and bad input


def test_registry_names_and_shapes():
    assert set(PREFERENCE_LOSSES) == {"sigmoid", "ipo", "cdpo", "robust", "hinge", "simpo", "orpo", "kto"}
    assert REFERENCE_FREE_LOSSES <= set(PREFERENCE_LOSSES) and UNPAIRED_LOSSES == {"kto"}
    lengths = dict(chosen_lengths=torch.tensor([2, 4, 1]), rejected_lengths=torch.tensor([1, 2, 5]))
    policy = dict(policy_chosen_logps=t(-10, -20, -15), policy_rejected_logps=t(-12, -18, -16))
    calls = {
        "sigmoid": paired_batch(beta=0.1),
        "cdpo": paired_batch(beta=0.1, label_smoothing=0.1),
        "robust": paired_batch(beta=0.1, label_smoothing=0.1),
        "hinge": paired_batch(beta=0.1),
        "ipo": paired_batch(beta=0.1, **lengths),
        "simpo": dict(**policy, **lengths, beta=2.0, gamma=0.5),
        "orpo": dict(**policy, **lengths, beta=0.1),
    }
    for name, kwargs in calls.items():
        out = PREFERENCE_LOSSES[name](**kwargs)
        assert out.losses.shape == out.chosen_rewards.shape == out.rejected_rewards.shape == (3,), name
        assert torch.isfinite(out.losses).all(), name


def test_unused_arguments_are_type_errors():
    """An argument a variant does not use is refused, never silently ignored."""
    with pytest.raises(TypeError):
        simpo_loss(**paired_batch(beta=0.1, gamma=0.5, chosen_lengths=torch.tensor([1, 1, 1]),
                                  rejected_lengths=torch.tensor([1, 1, 1])))
    with pytest.raises(TypeError):
        sigmoid_loss(**paired_batch(beta=0.1, label_smoothing=0.1))
    with pytest.raises(TypeError):
        sigmoid_loss(t(-1.0), t(-2.0), t(-1.0), t(-2.0), 0.1)  # positional: keyword-only API


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: sigmoid_loss(**paired_batch(beta=0.0)), "beta"),
        (lambda: sigmoid_loss(**paired_batch(beta=-1.0)), "beta"),
        (lambda: sigmoid_loss(**paired_batch(beta=float("nan"))), "beta"),
        (lambda: robust_loss(**paired_batch(beta=0.1, label_smoothing=0.5)), "label_smoothing"),
        (lambda: robust_loss(**paired_batch(beta=0.1, label_smoothing=-0.1)), "label_smoothing"),
        (lambda: cdpo_loss(**paired_batch(beta=0.1, label_smoothing=0.6)), "label_smoothing"),
        (lambda: ipo_loss(**paired_batch(beta=0.1)), "chosen_lengths"),
        (lambda: ipo_loss(**paired_batch(beta=0.1, chosen_lengths=torch.tensor([1, 0, 1]),
                                         rejected_lengths=torch.tensor([1, 1, 1]))), "chosen_lengths"),
        (lambda: ipo_loss(**paired_batch(beta=0.1, chosen_lengths=torch.tensor([1, 1]),
                                         rejected_lengths=torch.tensor([1, 1, 1]))), "chosen_lengths"),
        (lambda: sigmoid_loss(policy_chosen_logps=t(-1, -2), policy_rejected_logps=t(-1),
                              beta=0.1, reference_free=True), "policy_rejected_logps"),
        (lambda: sigmoid_loss(policy_chosen_logps=t(-1, -2).reshape(2, 1),
                              policy_rejected_logps=t(-1, -2).reshape(2, 1),
                              beta=0.1, reference_free=True), "policy_chosen_logps"),
        (lambda: simpo_loss(policy_chosen_logps=t(-1.0), policy_rejected_logps=t(-2.0),
                            chosen_lengths=torch.tensor([1]), rejected_lengths=torch.tensor([1]),
                            beta=1.0, gamma=-1.0), "gamma"),
        (lambda: kto_loss(policy_logps=t(-1, -2), ref_logps=t(-1, -2), labels=torch.tensor([1, 0]),
                          kl=0.0, beta=0.1), "labels"),
        (lambda: kto_loss(policy_logps=t(-1, -2), ref_logps=t(-1, -2),
                          labels=torch.tensor([True, False]), kl=t(0.1, 0.2), beta=0.1), "kl"),
        (lambda: kto_loss(policy_logps=t(-1, -2), ref_logps=t(-1, -2),
                          labels=torch.tensor([True, False]), kl=0.0, beta=0.1,
                          undesirable_weight=-1.0), "undesirable_weight"),
        (lambda: kto_reference_kl(t(), t()), "policy_kl_logps"),
        (lambda: preference_metrics(t(), t()), "chosen_rewards"),
    ],
)
def test_bad_arguments_name_the_argument(call, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        call()


def test_docstring_examples_run():
    result = doctest.testmod(preference_module)
    assert result.attempted >= 6
    assert result.failed == 0
