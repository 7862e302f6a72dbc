import doctest
import math

import pytest
import torch
from torch.testing import assert_close

import alignkit.losses.rl as rl
from alignkit.losses.rl import (entropy_from_logits, masked_mean, masked_whiten, ppo_clip_loss,
                                value_loss)

NAN = float("nan")


def _ppo_batch():
    """Two rows of three tokens; the last token of row 1 is padding holding NaN."""
    ratios = torch.tensor([[1.5, 0.5, 1.1], [0.5, 1.5, 1.0]])
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, -3.0]])
    logps = (old + ratios.log()).clone()
    logps[1, 2] = NAN
    logps.requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -2.0], [-1.0, -1.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return logps, old, adv, mask


def test_ppo_clip_loss_by_hand():
    """eps = 0.2, so clip(rho) lies in [0.8, 1.2]. loss = max(-rho A, -clip(rho) A).

    row 0: rho 1.5, A +1: max(-1.5, -1.2) = -1.2  clipped branch active
           rho 0.5, A +1: max(-0.5, -0.8) = -0.5  unclipped
           rho 1.1, A -2: max( 2.2,  2.2) =  2.2  tie -> not counted as clipped
    row 1: rho 0.5, A -1: max( 0.5,  0.8) =  0.8  clipped branch active
           rho 1.5, A -1: max( 1.5,  1.2) =  1.5  unclipped
           padding (logp = NaN, A = 7) -> 0
    clipfrac = 2 / 5 = 0.4.
    approxkl = mean of k3 = (rho - 1) - ln rho over the 5 tokens:
      1.5 -> 0.5 - 0.405465 = 0.094535;  0.5 -> -0.5 + 0.693147 = 0.193147;
      1.1 -> 0.1 - 0.095310 = 0.004690
      (2 * 0.094535 + 2 * 0.193147 + 0.004690) / 5 = 0.580054 / 5 = 0.116011.
    Gradient d loss / d logp = -A rho on the unclipped branch, 0 on the clipped one:
      row 0: (0, -0.5, -(-2)(1.1) = 2.2);  row 1: (0, -(-1)(1.5) = 1.5, 0 padding).
    """
    logps, old, adv, mask = _ppo_batch()
    loss, stats = ppo_clip_loss(logps, old, adv, mask, clip_eps=0.2)
    assert_close(loss, torch.tensor([[-1.2, -0.5, 2.2], [0.8, 1.5, 0.0]]))
    assert_close(stats["clipfrac"], torch.tensor(0.4))
    assert_close(stats["approxkl"], torch.tensor(0.116011), atol=1e-6, rtol=0)
    loss.sum().backward()
    assert_close(logps.grad, torch.tensor([[0.0, -0.5, 2.2], [0.0, 1.5, 0.0]]))
    assert not stats["clipfrac"].requires_grad


def test_ppo_clip_loss_sequence_advantages_broadcast():
    """advantages (B,) = (1, -1) equals (B, T) with each row's value repeated.
    row 0 ratios (1.5, 1.0), A = +1: (-1.2, -1.0); row 1 ratios (1.0, 0.5), A = -1: (1.0, 0.8)."""
    logps = torch.log(torch.tensor([[1.5, 1.0], [1.0, 0.5]]))
    old = torch.zeros(2, 2)
    mask = torch.ones(2, 2)
    loss, _ = ppo_clip_loss(logps, old, torch.tensor([1.0, -1.0]), mask)
    assert_close(loss, torch.tensor([[-1.2, -1.0], [1.0, 0.8]]))
    with pytest.raises(ValueError, match="advantages"):
        ppo_clip_loss(logps, old, torch.tensor([1.0, -1.0, 0.0]), mask)


def test_ppo_clip_loss_on_policy_is_vanilla_policy_gradient():
    """rho = 1 everywhere (first epoch): loss = -A, gradient = -A, clipfrac 0, approxkl 0."""
    logps = torch.tensor([[-0.3, -2.0]], requires_grad=True)
    adv = torch.tensor([[0.7, -1.3]])
    loss, stats = ppo_clip_loss(logps, logps.detach(), adv, torch.ones(1, 2))
    assert_close(loss, -adv)
    loss.sum().backward()
    assert_close(logps.grad, -adv)
    assert stats["clipfrac"].item() == 0.0 and stats["approxkl"].item() == 0.0


def test_ppo_clip_loss_rejects_bad_input():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="'old_logps' has shape"):
        ppo_clip_loss(x, torch.zeros(2, 2), x, x)
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_clip_loss(x, x, x, torch.ones(2, 3), clip_eps=0.0)
    with pytest.raises(ValueError, match="zero tokens"):
        ppo_clip_loss(x, x, x, torch.zeros(2, 3))


def test_value_loss_by_hand():
    """old_v = 1, eps = 0.2 -> v_clip = clip(v, 0.8, 1.2). loss = 1/2 max((v-R)^2, (v_clip-R)^2).

    v 1.5, R 2.0: (0.5)^2 = 0.25 vs (1.2-2)^2 = 0.64 -> 0.32    (clipped term larger)
    v 1.5, R 1.0: 0.25 vs (1.2-1)^2 = 0.04           -> 0.125
    v 0.9, R 0.0: 0.81 vs 0.81 (inside the band)      -> 0.405
    v 0.5, R 0.8: 0.09 vs (0.8-0.8)^2 = 0             -> 0.045
    padding: v = NaN -> 0.
    Gradient d/dv: 0 where the clipped term wins (v outside band), else (v - R):
      (0, 0.5, 0.9, -0.3, 0).
    """
    values = torch.tensor([[1.5, 1.5, 0.9, 0.5, NAN]], requires_grad=True)
    old = torch.ones(1, 5)
    ret = torch.tensor([[2.0, 1.0, 0.0, 0.8, 5.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    loss = value_loss(values, old, ret, mask, clip_eps=0.2)
    assert_close(loss, torch.tensor([[0.32, 0.125, 0.405, 0.045, 0.0]]))
    loss.sum().backward()
    assert_close(values.grad, torch.tensor([[0.0, 0.5, 0.9, -0.3, 0.0]]))


def test_value_loss_rejects_bad_input():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="'returns' has shape"):
        value_loss(x, x, torch.zeros(1, 3), x)
    with pytest.raises(ValueError, match="clip_eps"):
        value_loss(x, x, x, x, clip_eps=-1.0)


def test_masked_mean_by_hand():
    """x = [[1, 2, 3], [4, 5, 6]], mask = [[1, 1, 0], [1, 0, 0]] (3 NaN-free tokens counted).
    dim=None: (1 + 2 + 4) / 3 = 7/3 = 2.333333; dim=1: (1.5, 4.0).
    A NaN under the mask is ignored (selected away, not multiplied by 0)."""
    x = torch.tensor([[1.0, 2.0, NAN], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert_close(masked_mean(x, mask), torch.tensor(7 / 3))
    assert_close(masked_mean(x, mask.bool(), dim=1), torch.tensor([1.5, 4.0]))


def test_masked_mean_errors():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="zero tokens"):
        masked_mean(x, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="along dim 0"):
        masked_mean(x, torch.tensor([[1, 0, 0], [1, 0, 0]]), dim=0)  # columns 1, 2 empty
    with pytest.raises(ValueError, match="'mask' has shape"):
        masked_mean(x, torch.ones(3, 2))


def test_masked_whiten_by_hand():
    """x = (1, 2, 3, 100) with the 100 masked out.
    mean = 2; biased var = ((1-2)^2 + 0 + (3-2)^2) / 3 = 2/3; std = 0.816497.
    whitened = (-1/0.816497, 0, 1/0.816497) = (-1.224745, 0, 1.224745), masked -> 0.
    shift_mean=False adds the mean back: (0.775255, 2, 3.224745), masked -> 0.
    (Unbiased variance would give std 1 and (-1, 0, 1): the test tells them apart.)"""
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1, 1, 1, 0])
    assert_close(masked_whiten(x, mask, eps=0.0), torch.tensor([-1.224745, 0.0, 1.224745, 0.0]))
    assert_close(masked_whiten(x, mask, shift_mean=False, eps=0.0),
                 torch.tensor([0.775255, 2.0, 3.224745, 0.0]))


def test_masked_whiten_result_is_standardised():
    """Property: over the masked tokens the result has mean 0 and biased variance 1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 7, generator=g) * 3 + 5
    mask = torch.rand(4, 7, generator=g) > 0.3
    w = masked_whiten(x, mask)
    assert_close(masked_mean(w, mask), torch.tensor(0.0), atol=1e-5, rtol=0)
    assert_close(masked_mean(w ** 2, mask), torch.tensor(1.0), atol=1e-5, rtol=0)
    assert (w[~mask] == 0).all()


def test_entropy_from_logits_by_hand():
    """Row 0: uniform over 4 -> ln 4 = 1.386294.
    Row 1: logits (ln 3, 0, -inf, -inf) -> p = (3/4, 1/4, 0, 0);
      H = -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.75 * 0.287682 + 0.25 * 1.386294 = 0.562335
      (the -inf entries contribute 0, not NaN).
    bfloat16 input still gives a float32 result."""
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3), 0.0, -math.inf, -math.inf]])
    h = entropy_from_logits(logits)
    assert_close(h, torch.tensor([1.386294, 0.562335]))
    h16 = entropy_from_logits(torch.zeros(2, 3, 4, dtype=torch.bfloat16))
    assert h16.shape == (2, 3) and h16.dtype == torch.float32
    assert_close(h16, torch.full((2, 3), math.log(4)))


def test_docstring_examples_run():
    result = doctest.testmod(rl, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
