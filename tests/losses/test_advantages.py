import doctest

import pytest
import torch
from torch.testing import assert_close

import alignkit.losses.advantages as advantages
from alignkit.losses.advantages import gae, grpo_advantages, rloo_advantages

# The hand-unrolled 4-step example shared by the GAE tests.
REWARDS = [0.1, 0.0, -0.2, 1.0]
VALUES = [0.5, 0.4, 0.6, 0.7]
ADV = [0.0846464, 0.17312, 0.046, 0.3]
RET = [0.5846464, 0.57312, 0.646, 1.0]


def test_gae_hand_unrolled_four_steps():
    """gamma = 0.9, lam = 0.8 (gamma * lam = 0.72). Row: 4 response tokens, then 1 padding
    token whose value (9.0) must never be read.
    r = (0.1, 0, -0.2, 1.0), V = (0.5, 0.4, 0.6, 0.7), V after the last token = 0 (terminal).

    delta_t = r_t + 0.9 V_{t+1} - V_t:
      delta_3 = 1.0  + 0.9 * 0   - 0.7 =  0.30
      delta_2 = -0.2 + 0.9 * 0.7 - 0.6 = -0.17
      delta_1 = 0.0  + 0.9 * 0.6 - 0.4 =  0.14
      delta_0 = 0.1  + 0.9 * 0.4 - 0.5 = -0.04
    A_t = delta_t + 0.72 A_{t+1}:
      A_3 = 0.30
      A_2 = -0.17 + 0.72 * 0.30    = -0.17 + 0.216     = 0.046
      A_1 =  0.14 + 0.72 * 0.046   =  0.14 + 0.03312   = 0.17312
      A_0 = -0.04 + 0.72 * 0.17312 = -0.04 + 0.1246464 = 0.0846464
    returns R_t = A_t + V_t = (0.5846464, 0.57312, 0.646, 1.0); padding -> A = R = 0.
    """
    rewards = torch.tensor([REWARDS + [0.0]])
    values = torch.tensor([VALUES + [9.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert_close(adv, torch.tensor([ADV + [0.0]]))
    assert_close(ret, torch.tensor([RET + [0.0]]))
    assert adv.dtype == torch.float32 and not adv.requires_grad


def test_gae_left_padding_and_hole_give_the_same_numbers():
    """Row 0: one padding token in front (a prompt position) -> the same four numbers, shifted.
    Row 1: an unmasked token in the middle (e.g. tool output) -> skipped: the valid positions
    hold exactly the contiguous example's numbers (V_{t'} jumps over the hole)."""
    rewards = torch.tensor([[0.0] + REWARDS, [0.1, 0.0, 0.0, -0.2, 1.0]])
    values = torch.tensor([[-5.0] + VALUES, [0.5, 0.4, 7.0, 0.6, 0.7]])
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 0, 1, 1]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert_close(adv[0], torch.tensor([0.0] + ADV))
    assert_close(adv[1], torch.tensor([ADV[0], ADV[1], 0.0, ADV[2], ADV[3]]))
    assert_close(ret[1], torch.tensor([RET[0], RET[1], 0.0, RET[2], RET[3]]))


def test_gae_limits_lambda_one_and_zero():
    """lam = 1, gamma = 1: A_t = sum_{s >= t} r_s - V_t (Monte Carlo).
      sums of future rewards for r = (0.1, 0, -0.2, 1.0): (0.9, 0.8, 0.8, 1.0)
      A = (0.9 - 0.5, 0.8 - 0.4, 0.8 - 0.6, 1.0 - 0.7) = (0.4, 0.4, 0.2, 0.3);
      R = (0.9, 0.8, 0.8, 1.0).
    lam = 0, gamma = 0.9: A_t = delta_t = (-0.04, 0.14, -0.17, 0.30) (one-step TD)."""
    r, v, m = torch.tensor([REWARDS]), torch.tensor([VALUES]), torch.ones(1, 4)
    adv, ret = gae(r, v, m, gamma=1.0, lam=1.0)
    assert_close(adv, torch.tensor([[0.4, 0.4, 0.2, 0.3]]))
    assert_close(ret, torch.tensor([[0.9, 0.8, 0.8, 1.0]]))
    adv0, _ = gae(r, v, m, gamma=0.9, lam=0.0)
    assert_close(adv0, torch.tensor([[-0.04, 0.14, -0.17, 0.30]]))


def test_gae_rejects_bad_input():
    r = torch.zeros(1, 3)
    with pytest.raises(ValueError, match=r"row 0, token 2"):
        gae(torch.tensor([[0.0, 1.0, 2.0]]), r, torch.tensor([[1, 1, 0]]), 1.0, 1.0)
    with pytest.raises(ValueError, match="'values' has shape"):
        gae(r, torch.zeros(1, 4), torch.ones(1, 3), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        gae(torch.zeros(3), torch.zeros(3), torch.ones(3), 1.0, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        gae(r, r, torch.ones(1, 3), 1.5, 0.9)


def test_grpo_advantages_by_hand():
    """group_size 4, rewards (1, 0, 0, 1 | 2, 2, 2, 2).
    Group 0: mean 0.5; unbiased var = 4 * 0.25 / 3 = 1/3, std = 0.577350;
      A = +-0.5 / (0.577350 + 1e-4) = +-0.865875.
      (A biased std would give 0.5 and +-0.9998: the test tells them apart.)
    Group 1: all equal -> std 0 -> 0 / (0 + 1e-4) = 0.
    scale_by_std=False: (0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0)."""
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    a = 0.865875
    assert_close(grpo_advantages(r, 4), torch.tensor([a, -a, -a, a, 0.0, 0.0, 0.0, 0.0]))
    assert_close(grpo_advantages(r, group_size=4, scale_by_std=False),
                 torch.tensor([0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0, 0.0]))


def test_grpo_advantages_with_uneven_group_ids():
    """ids (7, 3, 7, 7, 3), rewards (1, 2, 3, 5, 4), eps = 0.
    Group 7 = (1, 3, 5): mean 3, centred (-2, 0, 2), unbiased var 8/2 = 4, std 2 -> (-1, 0, 1).
    Group 3 = (2, 4): mean 3, centred (-1, 1), unbiased var 2/1 = 2, std 1.414214
      -> (-0.707107, 0.707107).
    In input order: (-1, -0.707107, 0, 1, 0.707107)."""
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 4.0])
    ids = torch.tensor([7, 3, 7, 7, 3])
    assert_close(grpo_advantages(r, group_ids=ids, eps=0.0),
                 torch.tensor([-1.0, -0.707107, 0.0, 1.0, 0.707107]))


def test_rloo_advantages_by_hand():
    """group_size 4, rewards (1, 0, 0, 1): A_i = r_i - mean of the other three.
      A_0 = 1 - (0 + 0 + 1)/3 = 2/3;  A_1 = 0 - (1 + 0 + 1)/3 = -2/3; A_2 = -2/3; A_3 = 2/3.
    ids (7, 3, 7, 7, 3), rewards (1, 2, 3, 5, 4):
      group 7 = (1, 3, 5): 1 - (3+5)/2 = -3;  3 - (1+5)/2 = 0;  5 - (1+3)/2 = 3
      group 3 = (2, 4):    2 - 4 = -2;  4 - 2 = 2          -> (-3, -2, 0, 3, 2)."""
    assert_close(rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), group_size=4),
                 torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3]))
    assert_close(rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 5.0, 4.0]),
                                 group_ids=torch.tensor([7, 3, 7, 7, 3])),
                 torch.tensor([-3.0, -2.0, 0.0, 3.0, 2.0]))


def test_rloo_is_rescaled_grpo_without_std():
    """Identity: r_i - mean_{j != i} r_j = k/(k-1) * (r_i - mean_group)."""
    g = torch.Generator().manual_seed(1)
    r = torch.randn(12, generator=g)
    assert_close(rloo_advantages(r, 3), 1.5 * grpo_advantages(r, 3, scale_by_std=False))


def test_group_errors():
    r = torch.tensor([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 2 completions"):
        rloo_advantages(r, group_size=1)
    with pytest.raises(ValueError, match="at least 2 completions"):
        rloo_advantages(r, group_ids=torch.tensor([0, 0, 1]))   # group 1 has one member
    with pytest.raises(ValueError, match="at least 2 completions"):
        grpo_advantages(r, 1)
    with pytest.raises(ValueError, match="multiple of group_size"):
        grpo_advantages(r, 2)
    with pytest.raises(ValueError, match="exactly one"):
        grpo_advantages(r)
    with pytest.raises(ValueError, match="exactly one"):
        rloo_advantages(r, 3, group_ids=torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(N,\)"):
        rloo_advantages(torch.zeros(2, 2), 2)
    with pytest.raises(ValueError, match="empty"):
        grpo_advantages(torch.zeros(0), 2)


def test_docstring_examples_run():
    result = doctest.testmod(advantages, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
