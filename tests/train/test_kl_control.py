import doctest
import json

import pytest
import torch

import alignkit.train.kl_control as kl_control
from alignkit.train.kl_control import AdaptiveKLController, FixedKLController


def test_adaptive_single_steps_by_hand():
    """beta0 = 0.1, target 6, horizon 10000, n_steps 256 -> K = 256 / 10000 = 0.0256.
    KL 7:  e = 7/6 - 1 = 0.166667 (inside the clip) -> beta = 0.1 * (1 + 0.0256 * 0.166667)
           = 0.1 * 1.004266667 = 0.1004266667
    KL 12: e = 1.0 -> clipped to 0.2   -> beta = 0.1 * (1 + 0.00512) = 0.100512
    KL 0:  e = -1.0 -> clipped to -0.2 -> beta = 0.1 * (1 - 0.00512) = 0.099488
    KL 6:  e = 0                       -> beta = 0.1 (unchanged)
    KL -3 (a negative k1 estimate): e = -1.5 -> -0.2 -> 0.099488.
    A 0-dim tensor KL is accepted."""
    cases = [(7.0, 0.1004266667), (12.0, 0.100512), (0.0, 0.099488), (6.0, 0.1), (-3.0, 0.099488),
             (torch.tensor(12.0), 0.100512)]
    for kl, expected in cases:
        ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10_000)
        ctl.update(kl, n_steps=256)
        assert ctl.value == pytest.approx(expected, rel=1e-9), kl


def test_adaptive_steps_compound():
    """Two steps of KL 12 with K = 0.0256: beta = 0.1 * 1.00512^2 = 0.1010266214...
    then n_steps = 0 leaves it unchanged (K = 0)."""
    ctl = AdaptiveKLController(0.1, 6.0, 10_000)
    ctl.update(12.0, 256)
    ctl.update(12.0, 256)
    assert ctl.value == pytest.approx(0.1 * 1.00512 ** 2, rel=1e-12)
    ctl.update(100.0, 0)
    assert ctl.value == pytest.approx(0.1 * 1.00512 ** 2, rel=1e-12)


def _simulate(ctl, c, steps, n_steps=100):
    """Toy plant: the KL the policy reaches is c / beta (more penalty, less drift)."""
    history = []
    for _ in range(steps):
        kl = c / ctl.value
        history.append(kl)
        ctl.update(kl, n_steps)
    return history


@pytest.mark.parametrize("init_beta", [0.02, 0.5])
def test_adaptive_step_response_reaches_target(init_beta):
    """KL = c / beta with c = 0.6, target 6 -> equilibrium beta* = c / target = 0.1.
    K = n_steps / horizon = 100 / 1000 = 0.1.
    From beta0 = 0.02 (KL 30, 5x target) the error is clipped at +0.2, beta grows x1.02 per
    step until KL < 7.2 (beta > 0.0833): ln(0.0833/0.02) / ln 1.02 = 72 steps. Then
    e = beta*/beta - 1 and beta <- beta + K (beta* - beta): the gap shrinks x0.9 per step.
    From beta0 = 0.5 (KL 1.2): x0.98 per step for ln(0.5/0.125)/-ln 0.98 = 69 steps, then the
    same x0.9 contraction. After 150 steps KL is within +-10 % of the target (in fact within
    0.1 %); after 20 steps it is still far off (> 2x or < 0.5x), so the test can fail."""
    ctl = AdaptiveKLController(init_beta=init_beta, target=6.0, horizon=1000)
    history = _simulate(ctl, c=0.6, steps=150)
    assert not 3.0 < history[19] < 12.0
    assert history[-1] == pytest.approx(6.0, rel=0.10)
    assert all(abs(k / 6.0 - 1) < 0.10 for k in history[-20:])
    assert ctl.value == pytest.approx(0.1, rel=0.10)


def test_fixed_controller_never_changes():
    """Fixed beta 0.05 under the same plant: beta stays 0.05, so KL stays 0.6 / 0.05 = 12."""
    ctl = FixedKLController(0.05)
    history = _simulate(ctl, c=0.6, steps=50)
    assert ctl.value == 0.05
    assert history == [pytest.approx(12.0)] * 50
    ctl.update(1e6, 10**9)
    assert ctl.value == 0.05


def test_state_dict_round_trip_resumes_exactly():
    """Run 5 updates, checkpoint (through JSON), restore into a fresh controller: the next
    update gives bit-identical beta to the uninterrupted controller."""
    a = AdaptiveKLController(0.1, 6.0, 1000)
    for kl in (9.0, 8.0, 3.0, 7.5, 6.1):
        a.update(kl, 64)
    state = json.loads(json.dumps(a.state_dict()))
    b = AdaptiveKLController(0.1, 6.0, 1000)
    b.load_state_dict(state)
    assert b.value == a.value != 0.1
    a.update(7.0, 64)
    b.update(7.0, 64)
    assert b.value == a.value

    f = FixedKLController(0.2)
    g = FixedKLController(0.2)
    g.load_state_dict(json.loads(json.dumps(f.state_dict())))
    assert g.value == 0.2


def test_load_state_dict_refuses_mismatches():
    a = AdaptiveKLController(0.1, 6.0, 1000)
    with pytest.raises(ValueError, match="kind 'fixed', expected 'adaptive'"):
        a.load_state_dict(FixedKLController(0.1).state_dict())
    with pytest.raises(ValueError, match="target=3.0"):
        a.load_state_dict(AdaptiveKLController(0.1, 3.0, 1000).state_dict())
    with pytest.raises(ValueError, match="'value' must be > 0"):
        a.load_state_dict({"kind": "adaptive", "value": -1.0, "target": 6.0, "horizon": 1000})
    with pytest.raises(ValueError, match="beta=0.3"):
        FixedKLController(0.2).load_state_dict(FixedKLController(0.3).state_dict())


def test_bad_arguments():
    with pytest.raises(ValueError, match="'init_beta' must be > 0"):
        AdaptiveKLController(0.0, 6.0, 1000)
    with pytest.raises(ValueError, match="'horizon' must be > 0"):
        AdaptiveKLController(0.1, 6.0, 0)
    with pytest.raises(ValueError, match="'beta' must be >= 0"):
        FixedKLController(-0.1)
    ctl = AdaptiveKLController(0.1, 6.0, 1000)
    with pytest.raises(ValueError, match="'current_kl' must be finite"):
        ctl.update(float("nan"), 10)
    with pytest.raises(ValueError, match="'n_steps' must be an int"):
        ctl.update(6.0, 1.5)
    with pytest.raises(ValueError, match="too large"):
        ctl.update(0.0, 6000)        # factor 1 - 0.2 * 6 < 0
    assert ctl.value == 0.1          # a refused update changes nothing


def test_docstring_examples_run():
    result = doctest.testmod(kl_control)
    assert result.attempted > 0 and result.failed == 0
