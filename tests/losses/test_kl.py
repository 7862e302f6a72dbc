import doctest
import math

import pytest
import torch
from torch.testing import assert_close

import alignkit.losses.kl as kl_mod
from alignkit.losses.kl import (KL_ESTIMATORS, kl_estimate, kl_k1, kl_k2, kl_k3, kl_loss_term,
                                kl_penalty_rewards)

N_DRAWS = 200_000


def _exact(p, q):
    """True KL(p || q) and the exact mean / variance of each estimator under y ~ p."""
    p, q = torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64)
    true_kl = float((p * (p / q).log()).sum())
    moments = {}
    for name, fn in KL_ESTIMATORS.items():
        k = fn(p.log(), q.log())
        mean = float((p * k).sum())
        moments[name] = (mean, float((p * (k - mean) ** 2).sum()))
    return true_kl, moments


def _sample(p, q, seed):
    """Per-draw k1, k2, k3 for N_DRAWS tokens y ~ p (float32, like real log-probs)."""
    g = torch.Generator().manual_seed(seed)
    p_t, q_t = torch.tensor(p), torch.tensor(q)
    y = torch.multinomial(p_t, N_DRAWS, replacement=True, generator=g)
    logp, ref = p_t.log()[y], q_t.log()[y]
    return {name: fn(logp, ref).double() for name, fn in KL_ESTIMATORS.items()}


def test_estimators_by_hand():
    """d = logp - ref = (ln 2, -ln 2, 0) (r = ref/p = 1/2, 2, 1):
    k1 = d = (0.693147, -0.693147, 0)
    k2 = d^2 / 2 = (0.240227, 0.240227, 0)
    k3 = (r - 1) - ln r = (-0.5 + 0.693147, 1 - 0.693147, 0) = (0.193147, 0.306853, 0)."""
    logp = torch.log(torch.tensor([0.5, 0.25, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.5, 0.3]))
    assert_close(kl_k1(logp, ref), torch.tensor([0.693147, -0.693147, 0.0]))
    assert_close(kl_k2(logp, ref), torch.tensor([0.240227, 0.240227, 0.0]))
    assert_close(kl_k3(logp, ref), torch.tensor([0.193147, 0.306853, 0.0]))
    assert_close(kl_estimate(logp, ref, "k3"), kl_k3(logp, ref))


def test_k3_keeps_precision_for_tiny_log_ratio():
    """d = 1e-4: k3 = d^2/2 - d^3/6 + ... = 5.0e-9 (1.7e-13 smaller). The naive
    exp(-d) - 1 + d in float32 returns 0 or noise of order 1e-8; expm1 keeps the value."""
    out = kl_k3(torch.tensor([1e-4]), torch.tensor([0.0]))
    assert_close(out, torch.tensor([5.0e-9]), rtol=1e-3, atol=0)


def test_unbiasedness_and_variance_near_pair():
    """p = (0.5, 0.3, 0.2) sampled, q = (0.45, 0.33, 0.22) reference, 200k draws, seed 0.
    True KL(p||q) = 0.5 ln(0.5/0.45) + 0.3 ln(0.3/0.33) + 0.2 ln(0.2/0.22) = 0.0050252.
    k1 values (0.105361, -0.095310, -0.095310): mean exactly KL, Var 1.0067e-2,
      standard error over 200k draws SE = 2.24e-4.
    k3 values (0.005361, 0.004690, 0.004690): mean exactly KL, Var 1.1246e-7, SE = 7.5e-7.
    Tolerance: 5 SE (a fixed seed, so no flakiness; 5 SE would be exceeded with prob. < 1e-6).
    k1 has negative draws (two of three outcomes); k3 >= 0 pointwise;
    var(k3) ~ 1.1e-7 << var(k1) ~ 1.0e-2 (both exactly and in the sample)."""
    p, q = [0.5, 0.3, 0.2], [0.45, 0.33, 0.22]
    true_kl, moments = _exact(p, q)
    assert true_kl == pytest.approx(0.0050252, abs=1e-7)
    s = _sample(p, q, seed=0)
    for name in ("k1", "k3"):
        mean, var = moments[name]
        assert mean == pytest.approx(true_kl, rel=1e-9)           # unbiased, exactly
        se = math.sqrt(var / N_DRAWS)
        assert abs(float(s[name].mean()) - true_kl) < 5 * se, name
    assert (s["k1"] < 0).any()
    assert (s["k3"] >= 0).all()
    assert moments["k3"][1] < 1e-4 * moments["k1"][1]
    assert float(s["k3"].var()) < 1e-4 * float(s["k1"].var())


def test_k2_is_biased_for_a_far_pair():
    """p = (0.7, 0.2, 0.1) sampled, q = (0.1, 0.3, 0.6) reference.
    True KL(p||q) = 0.7 ln 7 + 0.2 ln(2/3) + 0.1 ln(1/6)
                  = 1.362137 - 0.081093 - 0.179176 = 1.101868.
    k2 values (1.893283, 0.082201, 1.605201):
      E[k2] = 0.7 * 1.893283 + 0.2 * 0.082201 + 0.1 * 1.605201 = 1.502259,
      a bias of +0.400390 (k2 overestimates by 36 %), 250 x its standard error (1.6e-3).
    The unbiased k1 and k3 stay within 5 SE of 1.101868 (SE 3.0e-3 and 1.8e-3)."""
    p, q = [0.7, 0.2, 0.1], [0.1, 0.3, 0.6]
    true_kl, moments = _exact(p, q)
    assert true_kl == pytest.approx(1.101868, abs=1e-6)
    assert moments["k2"][0] == pytest.approx(1.502259, abs=1e-6)
    s = _sample(p, q, seed=1)
    bias = float(s["k2"].mean()) - true_kl
    assert bias == pytest.approx(0.400390, abs=5 * math.sqrt(moments["k2"][1] / N_DRAWS))
    for name in ("k1", "k3"):
        se = math.sqrt(moments[name][1] / N_DRAWS)
        assert abs(float(s[name].mean()) - true_kl) < 5 * se, name


def test_loss_gradients_follow_the_documented_kl():
    """Exact expectations (no sampling) for pi = softmax(theta), theta = (0.3, -0.2, 0.5), and a
    fixed ref q = (0.2, 0.5, 0.3): sum_y pi(y) * grad_theta k(y), the mean gradient of an
    on-policy KL loss, equals
      k1: 0                          (sum_y pi grad log pi = grad sum_y pi = 0)
      k2: grad KL(pi || q)           (= sum_y pi log(pi/q) grad log pi)
      k3: grad KL(q || pi)           (grad k3 = (1 - q/pi) grad log pi; sum_y (pi - q) grad log pi
                                      = -sum_y q grad log pi = grad KL(q || pi))."""
    theta0 = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    log_q = torch.log(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))

    def grad_of(fn):
        theta = theta0.clone().requires_grad_(True)
        fn(theta).backward()
        return theta.grad

    def expected_loss_grad(name):
        def f(theta):
            logp = torch.log_softmax(theta, 0)
            return (logp.exp().detach() * KL_ESTIMATORS[name](logp, log_q)).sum()
        return grad_of(f)

    def forward_kl(theta):
        logp = torch.log_softmax(theta, 0)
        return (logp.exp() * (logp - log_q)).sum()

    def reverse_kl(theta):
        logp = torch.log_softmax(theta, 0)
        return (log_q.exp() * (log_q - logp)).sum()

    assert_close(expected_loss_grad("k1"), torch.zeros(3, dtype=torch.float64))
    assert_close(expected_loss_grad("k2"), grad_of(forward_kl))
    assert_close(expected_loss_grad("k3"), grad_of(reverse_kl))
    assert not torch.allclose(grad_of(forward_kl), grad_of(reverse_kl), atol=1e-3)


def test_kl_penalty_rewards_by_hand():
    """beta = 0.1, estimator k1 (kl = logp - ref).
    row 0: kl (0.5, -0.2, 0.1), 3 response tokens, score 2.0
      -> (-0.05, 0.02, -0.01 + 2.0) = (-0.05, 0.02, 1.99)
    row 1: kl (1.0, 0.3, pad), score -1.0  -> (-0.1, -0.03 - 1.0, 0) = (-0.1, -1.03, 0)
    row 2: left padding (pad, 0.4, -0.4), score 0.5 -> (0, -0.04, 0.04 + 0.5) = (0, -0.04, 0.54)
    Padding holds NaN / inf log-probs, which must not leak."""
    ref = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, -3.0], [-1.0, -1.0, -1.0]])
    k1 = torch.tensor([[0.5, -0.2, 0.1], [1.0, 0.3, 0.0], [0.0, 0.4, -0.4]])
    logps = ref + k1
    logps[1, 2] = float("nan")
    logps[2, 0] = -float("inf")
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 1, 1]])
    scores = torch.tensor([2.0, -1.0, 0.5])
    rewards = kl_penalty_rewards(scores, logps, ref, mask, beta=0.1)
    assert_close(rewards, torch.tensor([[-0.05, 0.02, 1.99], [-0.1, -1.03, 0.0],
                                        [0.0, -0.04, 0.54]]))


def test_kl_penalty_rewards_k3_and_detached():
    """estimator k3, beta = 0.5, d = logp - ref = (ln 2, -ln 2):
    k3 = (0.193147, 0.306853) -> rewards (-0.096574, -0.153426 + 1.0 = 0.846574). Detached."""
    logps = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_(True)
    ref = torch.log(torch.tensor([[0.25, 0.5]]))
    out = kl_penalty_rewards(torch.tensor([1.0]), logps, ref, torch.ones(1, 2), beta=0.5,
                             estimator="k3")
    assert_close(out, torch.tensor([[-0.096574, 0.846574]]))
    assert not out.requires_grad


def test_kl_penalty_rewards_rejects_bad_input():
    x = torch.zeros(2, 3)
    ok_mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="row 1 has no response token"):
        kl_penalty_rewards(torch.zeros(2), x, x, torch.tensor([[1, 0, 0], [0, 0, 0]]), beta=0.1)
    with pytest.raises(ValueError, match="'scores' has shape"):
        kl_penalty_rewards(torch.zeros(3), x, x, ok_mask, beta=0.1)
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_penalty_rewards(torch.zeros(2), x, x, ok_mask, beta=0.1, estimator="k4")
    with pytest.raises(ValueError, match="'ref_logps' has shape"):
        kl_penalty_rewards(torch.zeros(2), x, torch.zeros(2, 2), ok_mask, beta=0.1)
    with pytest.raises(ValueError, match="beta"):
        kl_penalty_rewards(torch.zeros(2), x, x, ok_mask, beta=-1.0)


def test_kl_loss_term_values_and_gradient():
    """k3 with x = ref - logp: value e^x - 1 - x, gradient d/dlogp = 1 - e^x.
    token 0: x = ln 2  -> value 2 - 1 - 0.693147 = 0.306853, grad 1 - 2   = -1.0
    token 1: x = -ln 2 -> value 0.5 - 1 + 0.693147 = 0.193147, grad 1 - 0.5 = 0.5
    token 2: masked, logp = +inf -> value 0, grad 0 (not NaN).
    With k2: value (x^2)/2 = (0.240227, 0.240227, 0)."""
    logps = torch.tensor([[0.0, 0.0, float("inf")]], requires_grad=True)
    ref = torch.log(torch.tensor([[2.0, 0.5, 1.0]]))
    mask = torch.tensor([[True, True, False]])
    out = kl_loss_term(logps, ref, mask)
    assert_close(out, torch.tensor([[0.306853, 0.193147, 0.0]]))
    out.sum().backward()
    assert_close(logps.grad, torch.tensor([[-1.0, 0.5, 0.0]]))
    assert_close(kl_loss_term(logps.detach(), ref, mask, estimator="k2"),
                 torch.tensor([[0.240227, 0.240227, 0.0]]))


def test_docstring_examples_run():
    result = doctest.testmod(kl_mod, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
