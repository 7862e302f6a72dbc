"""The least-squares fits of Gao et al. (2022) recover known parameters from synthetic points."""
import math

import pytest

from alignkit.studies.fits import FORM_BON, FORM_RL, fit_bon, fit_rl, predict


def test_bon_fit_recovers_known_parameters():
    """Points on R(d) = d(0.8 − 0.3 d) at d = 0, 0.5, ..., 3: R(2) = 2·(0.8 − 0.6) = 0.4, so the
    fit must return α = 0.8, β = 0.3, rmse 0 and the peak d* = α/(2β) = 0.8/0.6 = 4/3."""
    d = [0.5 * i for i in range(7)]
    r = [x * (0.8 - 0.3 * x) for x in d]
    assert r[4] == pytest.approx(0.4)
    f = fit_bon(d, r)
    assert f["form"] == FORM_BON
    assert f["alpha"] == pytest.approx(0.8, abs=1e-9) and f["beta"] == pytest.approx(0.3, abs=1e-9)
    assert f["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert f["d_peak"] == pytest.approx(4 / 3)


def test_rl_fit_recovers_known_parameters():
    """Points on R(d) = d(1.0 − 0.5 log d): R(e) = e·(1 − 0.5) = e/2; the peak solves
    α − β(log d + 1) = 0 -> d* = exp(α/β − 1) = exp(1) = e."""
    d = [0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0]
    r = [x * (1.0 - 0.5 * math.log(x)) if x > 0 else 0.0 for x in d]
    assert r[3] == pytest.approx(1.0)  # log 1 = 0: R(1) = α
    f = fit_rl(d, r)
    assert f["form"] == FORM_RL
    assert f["alpha"] == pytest.approx(1.0, abs=1e-9) and f["beta"] == pytest.approx(0.5, abs=1e-9)
    assert f["d_peak"] == pytest.approx(math.e)
    assert predict(f, [math.e]) == pytest.approx([math.e / 2])


def test_fit_with_noise_is_close_and_wrong_form_fits_worse():
    """Noisy RL-shaped points (±0.01, alternating): the RL form recovers (α, β) to ~0.01 and has
    a smaller residual than the best-of-n form on the same points."""
    d = [0.2 * i for i in range(1, 26)]
    r = [x * (0.6 - 0.4 * math.log(x)) + (0.01 if i % 2 else -0.01) for i, x in enumerate(d)]
    rl, bon = fit_rl(d, r), fit_bon(d, r)
    assert rl["alpha"] == pytest.approx(0.6, abs=0.02) and rl["beta"] == pytest.approx(0.4, abs=0.02)
    assert rl["rmse"] < bon["rmse"]


def test_no_interior_peak_and_too_few_points():
    """β <= 0 (reward still rising) has no peak; one d > 0 cannot fix two parameters."""
    rising = fit_bon([0.0, 1.0, 2.0], [0.0, 1.0, 3.0])  # = 0.5 d + 0.5 d²: α = 0.5, β = −0.5
    assert rising["beta"] == pytest.approx(-0.5) and rising["d_peak"] is None
    few = fit_rl([0.0, 1.0], [0.0, 0.3])
    assert few["alpha"] is None and "nothing to fit" in few["note"] and predict(few, [1.0]) is None
    with pytest.raises(ValueError, match="negative"):
        fit_bon([-1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="2 d values but 3"):
        fit_rl([1.0, 2.0], [0.0, 0.0, 0.0])
