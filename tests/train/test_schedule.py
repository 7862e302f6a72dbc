"""Learning-rate schedule: hand-computed values of lr_at and the LambdaLR built on it."""
from __future__ import annotations

import math

import pytest
import torch

from alignkit.errors import ConfigError
from alignkit.train.schedule import lr_at, make_scheduler

# base_lr 1.0, total 10 steps, warmup 2 -> decay over D = 8 steps, p = (s - 2) / 8.
KW = dict(base_lr=1.0, total_steps=10, warmup_steps=2)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_warmup_is_linear_from_lr_over_w_to_lr(schedule):
    """Warmup W=2: step 0 -> 1 * (0+1)/2 = 0.5, step 1 -> 1 * 2/2 = 1.0, step 2 (p=0) -> 1.0."""
    got = [lr_at(s, schedule=schedule, **KW) for s in range(3)]
    assert got == pytest.approx([0.5, 1.0, 1.0], abs=1e-12)


def test_cosine_values_by_hand():
    """p = (s-2)/8; f = 0.5 * (1 + cos(pi p)).

    s=4: p=0.25, cos(pi/4)=0.7071068 -> 0.8535534
    s=6: p=0.5,  cos(pi/2)=0         -> 0.5
    s=9: p=0.875, cos(7pi/8)=-0.9238795 -> 0.0380602
    """
    got = [lr_at(s, schedule="cosine", **KW) for s in (4, 6, 9)]
    assert got == pytest.approx([0.8535534, 0.5, 0.0380602], abs=1e-7)


def test_cosine_with_floor_and_base_lr():
    """min_lr_ratio m=0.1: lr = base * (0.1 + 0.9 f).

    base 1.0, s=6: 0.1 + 0.9*0.5 = 0.55;  s=9: 0.1 + 0.9*0.0380602 = 0.1342542.
    base 3e-4, s=6: 3e-4 * 0.55 = 1.65e-4.
    """
    assert lr_at(6, schedule="cosine", min_lr_ratio=0.1, **KW) == pytest.approx(0.55, abs=1e-12)
    assert lr_at(9, schedule="cosine", min_lr_ratio=0.1, **KW) == pytest.approx(0.1342542, abs=1e-7)
    assert lr_at(6, base_lr=3e-4, total_steps=10, warmup_steps=2, min_lr_ratio=0.1) == \
        pytest.approx(1.65e-4, rel=1e-12)


def test_linear_values_by_hand():
    """f = 1 - p. s=2: 1.0; s=4: 1-0.25 = 0.75; s=9: 1-0.875 = 0.125;
    with m=0.2 at s=6: 0.2 + 0.8*0.5 = 0.6."""
    got = [lr_at(s, schedule="linear", **KW) for s in (2, 4, 9)]
    assert got == pytest.approx([1.0, 0.75, 0.125], abs=1e-12)
    assert lr_at(6, schedule="linear", min_lr_ratio=0.2, **KW) == pytest.approx(0.6, abs=1e-12)


def test_constant_after_warmup_and_no_warmup_starts_at_base():
    assert [lr_at(s, schedule="constant", **KW) for s in (2, 5, 9)] == [1.0, 1.0, 1.0]
    # No warmup: step 0 is the top of the cosine (p = 0 -> f = 1).
    assert lr_at(0, base_lr=2.0, total_steps=5) == 2.0


def test_steps_past_the_end_sit_at_the_floor():
    """p is clamped to 1: cosine f = 0.5 * (1 + cos(pi)) = 0 -> lr = m * base = 0.1."""
    assert lr_at(50, schedule="cosine", min_lr_ratio=0.1, **KW) == pytest.approx(0.1, abs=1e-12)


def test_schedule_is_monotone_after_warmup():
    lrs = [lr_at(s, base_lr=1.0, total_steps=100, warmup_steps=10) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] > 0  # the last step still trains


def test_bad_inputs():
    with pytest.raises(ConfigError, match="unknown schedule 'step'.*cosine"):
        lr_at(0, base_lr=1.0, total_steps=10, schedule="step")
    with pytest.raises(ValueError, match="step must be >= 0"):
        lr_at(-1, base_lr=1.0, total_steps=10)
    with pytest.raises(ConfigError, match="unknown schedule"):
        make_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]), total_steps=3,
                       schedule="exp")


def _optimizer():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.AdamW([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])


def test_make_scheduler_follows_lr_at_for_every_group():
    """Group lr = group base * lr_at(step, base 1); step k's rate is set after k scheduler steps."""
    opt = _optimizer()
    sched = make_scheduler(opt, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    for step in range(10):
        expected = lr_at(step, base_lr=1.0, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)
        assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * expected, rel=1e-12)
        opt.step()
        sched.step()


def test_scheduler_state_round_trip_continues_the_same_curve():
    """A fresh scheduler loaded from step 4's state yields the same rates for steps 4..9."""
    opt = _optimizer()
    sched = make_scheduler(opt, total_steps=10, warmup_steps=2)
    for _ in range(4):
        opt.step()
        sched.step()
    state, opt_state = sched.state_dict(), opt.state_dict()
    ref = []
    for _ in range(6):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    opt2 = _optimizer()
    sched2 = make_scheduler(opt2, total_steps=10, warmup_steps=2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    got = []
    for _ in range(6):
        got.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert got == ref
    assert not math.isclose(ref[0], ref[-1])  # the range actually decays
