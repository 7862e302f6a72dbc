import doctest
import math

import pytest
import torch
from torch.testing import assert_close

import alignkit.losses.reward as reward_module
from alignkit.losses.reward import bradley_terry, reward_centering, soft_bradley_terry


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_bradley_terry_by_hand():
    """r_c = (2, 0, 1), r_r = (1, 0, 3) -> d = r_c - r_r = (1, 0, -2).

    loss = -log σ(d) = log(1 + e^{-d}):
      d =  1: log(1 + e^-1) = log(1.367879) = 0.313262
      d =  0: log 2                          = 0.693147
      d = -2: log(1 + e^2)  = log(8.389056) = 2.126928
    """
    assert_close(bradley_terry(t(2, 0, 1), t(1, 0, 3)), t(0.313262, 0.693147, 2.126928))


def test_bradley_terry_margin_by_hand():
    """Llama 2 margin: loss = -log σ(d - m), d = (1, 0, -2).

    Per-pair m = (1, 0, 0): d - m = (0, 0, -2) -> (log 2, log 2, log(1 + e^2)) = (0.693147, 0.693147, 2.126928).
    Scalar m = 0.5: d - m = (0.5, -0.5, -2.5) -> log(1 + e^-0.5) = 0.474077,
      log(1 + e^0.5) = 0.974077, log(1 + e^2.5) = 2.578890.
    A margin makes every loss larger: the chosen answer must win by m, not just win.
    """
    r_c, r_r = t(2, 0, 1), t(1, 0, 3)
    assert_close(bradley_terry(r_c, r_r, margin=t(1, 0, 0)), t(0.693147, 0.693147, 2.126928))
    assert_close(bradley_terry(r_c, r_r, margin=0.5), t(0.474077, 0.974077, 2.578890))
    assert_close(bradley_terry(r_c, r_r, margin=None), bradley_terry(r_c, r_r, margin=0.0))


def test_bradley_terry_is_finite_for_huge_gaps():
    """d = -200: naive -log(sigmoid(-200)) = -log(0) = inf in float32; logsigmoid gives 200."""
    assert_close(bradley_terry(t(-100.0), t(100.0)), t(200.0))


def test_bradley_terry_gradient_direction():
    """d loss / d r_c = -σ(-d) < 0 and d loss / d r_r = +σ(-d) > 0; at d = 0 both are ∓0.5."""
    r_c, r_r = t(0.0).requires_grad_(), t(0.0).requires_grad_()
    bradley_terry(r_c, r_r).sum().backward()
    assert_close(r_c.grad, t(-0.5))
    assert_close(r_r.grad, t(0.5))


def test_soft_bradley_terry_by_hand():
    """d = r_c - r_r = ln 3, so σ(d) = 3/4.

    p = 0.75: loss = -0.75·ln(0.75) - 0.25·ln(0.25) = 0.215762 + 0.346574 = 0.562335 = H(0.75),
      the minimum over d (the model already matches the label).
    p = 1: loss = -ln(0.75) = 0.287682, the hard Bradley–Terry loss.
    d = 0 (r_c = r_r = 0), p = 0.9: loss = -(0.9 + 0.1)·ln(1/2) = ln 2 whatever p.
    """
    ln3 = math.log(3)
    assert_close(soft_bradley_terry(t(ln3, ln3), t(0, 0), t(0.75, 1.0)), t(0.562335, 0.287682))
    assert_close(soft_bradley_terry(t(0.0), t(0.0), 0.9), t(math.log(2)))
    assert_close(soft_bradley_terry(t(ln3), t(0.0), 1.0), bradley_terry(t(ln3), t(0.0)))


def test_soft_bradley_terry_minimum_is_at_the_label():
    """With p = 0.75 the gradient w.r.t. d is σ(d) - p, zero at d = ln 3 and negative below it."""
    r_c = t(math.log(3), 0.0).requires_grad_()
    soft_bradley_terry(r_c, t(0, 0), 0.75).sum().backward()
    assert_close(r_c.grad, t(0.0, 0.5 - 0.75))


def test_reward_centering_by_hand():
    """coef·(r_c + r_r)^2 with coef = 0.01: (1 + 2)^2 = 9 -> 0.09;  (-2 + 2)^2 = 0 -> 0.

    Its batch mean, 0.045, equals TRL's center_rewards_coefficient * mean((r_c + r_r)**2).
    """
    out = reward_centering(t(1, -2), t(2, 2), coef=0.01)
    assert_close(out, t(0.09, 0.0))
    assert_close(out.mean(), t(0.045)[0])


def test_reward_centering_gradient_pulls_sum_to_zero():
    """d/dr_c of coef·(r_c + r_r)^2 = 2·coef·(r_c + r_r) = 2·0.5·3 = 3 > 0: pushes r_c down."""
    r_c = t(1.0).requires_grad_()
    reward_centering(r_c, t(2.0), coef=0.5).sum().backward()
    assert_close(r_c.grad, t(3.0))


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: bradley_terry(t(1, 2), t(1)), "r_rejected"),
        (lambda: bradley_terry(t(1, 2).reshape(2, 1), t(1, 2).reshape(2, 1)), "r_chosen"),
        (lambda: bradley_terry(t(1, 2), t(1, 2), margin=t(1, 2, 3)), "margin"),
        (lambda: soft_bradley_terry(t(1, 2), t(1, 2), t(0.5, 1.5)), "p"),
        (lambda: soft_bradley_terry(t(1), t(1), -0.1), "p"),
        (lambda: reward_centering(t(1), t(1), coef=-1.0), "coef"),
    ],
)
def test_bad_arguments_name_the_argument(call, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        call()


def test_docstring_examples_run():
    result = doctest.testmod(reward_module)
    assert result.attempted >= 4
    assert result.failed == 0
