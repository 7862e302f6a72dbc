"""alignkit.evals.calibration: ECE (Guo et al. 2017 Eq. 3) and temperature scaling, by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from alignkit.evals.calibration import (T_MAX, T_MIN, apply_temperature,
                                        expected_calibration_error, fit_temperature)


def test_ece_four_samples_two_bins():
    """probs (0.1, 0.4, 0.6, 0.9), labels (0, 1, 1, 1), bins (0, .5], (.5, 1]:
    bin 1: conf (0.1+0.4)/2 = 0.25, acc 1/2 -> |0.5-0.25|·2/4 = 0.125
    bin 2: conf (0.6+0.9)/2 = 0.75, acc 2/2 -> |1-0.75|·2/4 = 0.125
    ECE = 0.25"""
    assert expected_calibration_error([0.1, 0.4, 0.6, 0.9], [0, 1, 1, 1], n_bins=2) == \
        pytest.approx(0.25)


def test_ece_four_samples_fifteen_bins():
    """Same data, 15 bins of width 1/15: each sample in its own bin, so
    ECE = (|0-0.1| + |1-0.4| + |1-0.6| + |1-0.9|)/4 = (0.1+0.6+0.4+0.1)/4 = 0.3"""
    assert expected_calibration_error([0.1, 0.4, 0.6, 0.9], [0, 1, 1, 1]) == pytest.approx(0.3)


def test_ece_edge_goes_to_lower_bin():
    """n_bins=2, probs (0.5, 0.5, 1.0, 0.0), labels (1, 1, 1, 0).
    0.5 sits on the edge -> bin (0, .5] together with 0.0 (0 goes to the first bin):
    bin 1: conf (0.5+0.5+0)/3 = 1/3, acc 2/3 -> |2/3-1/3|·3/4 = 0.25; bin 2: conf 1, acc 1 -> 0.
    ECE = 0.25. (If 0.5 went to the upper bin: bin 1 = {0.0}: 0; bin 2: conf 2/3, acc 1 ->
    1/3·3/4 = 0.25 as well, so a second case separates the conventions:)
    probs (0.5, 0.7), labels (0, 1): lower-bin rule: bin 1 |0-0.5|·1/2 + bin 2 |1-0.7|·1/2 = 0.4;
    upper-bin rule would give |0.5-0.6|·1 = 0.1."""
    assert expected_calibration_error([0.5, 0.5, 1.0, 0.0], [1, 1, 1, 0], n_bins=2) == \
        pytest.approx(0.25)
    assert expected_calibration_error([0.5, 0.7], [0, 1], n_bins=2) == pytest.approx(0.4)


def test_ece_top_label_multiclass():
    """probs [[.7,.3],[.2,.8],[.9,.1]], labels (0, 0, 0), n_bins=2:
    conf = (0.7, 0.8, 0.9), correct = (1, 0, 1), all in bin (.5, 1]:
    ECE = |2/3 - 0.8| = 0.133333"""
    p = [[0.7, 0.3], [0.2, 0.8], [0.9, 0.1]]
    assert expected_calibration_error(p, [0, 0, 0], n_bins=2) == pytest.approx(0.4 / 3)


def test_ece_rejects_bad_input():
    with pytest.raises(ValueError, match="within"):
        expected_calibration_error([0.2, 1.2], [0, 1])
    with pytest.raises(ValueError, match=r"labels\[1\]"):
        expected_calibration_error([0.2, 0.3], [0, 2])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.2], [0], n_bins=0)


def test_temperature_constant_margin():
    """Margins all 2, labels (1, 1, 1, 0): the NLL-optimal σ(2/T) is the frequency 3/4, so
    2/T = logit(3/4) = ln 3 and T = 2/ln 3 = 1.820478. σ(2) = 0.881 is over-confident; T > 1."""
    t = fit_temperature([2.0, 2.0, 2.0, 2.0], [1, 1, 1, 0])
    assert t == pytest.approx(2 / math.log(3), rel=1e-6)


def test_temperature_makes_overconfident_scores_calibrated():
    """Margins ±2 with 3 of 4 correct on each side. Before: p = σ(±2) = 0.880797 / 0.119203,
    acc 0.75 / 0.25: ECE = 0.5·|0.75-0.880797| + 0.5·|0.25-0.119203| = 0.130797.
    T = 2/ln 3 gives p = 0.75 / 0.25 exactly, so ECE = 0."""
    x = [2.0, 2.0, 2.0, 2.0, -2.0, -2.0, -2.0, -2.0]
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    before = expected_calibration_error(apply_temperature(x, 1.0), y)
    assert before == pytest.approx(0.130797, abs=1e-6)
    t = fit_temperature(x, y)
    assert t == pytest.approx(2 / math.log(3), rel=1e-6)
    assert apply_temperature(x, t)[:2] == pytest.approx([0.75, 0.75])
    assert expected_calibration_error(apply_temperature(x, t), y) == pytest.approx(0, abs=1e-7)


def test_temperature_multiclass_matches_binary_case():
    """Logits [2, 0] with labels (0, 0, 0, 1): softmax(z/T)[0] = σ(2/T), same optimum 2/ln 3."""
    z = [[2.0, 0.0]] * 4
    assert fit_temperature(z, [0, 0, 0, 1]) == pytest.approx(2 / math.log(3), rel=1e-6)


def test_temperature_recovers_synthetic_scale():
    """Labels drawn from σ(x/2.5): the fitted T is 2.5 up to sampling noise (20k samples)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, 20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-x / 2.5))).astype(int)
    assert fit_temperature(x, y) == pytest.approx(2.5, abs=0.15)


def test_temperature_bounds():
    """Separable -> smallest T in range; anti-correlated -> largest T in range."""
    assert fit_temperature([1.0, -1.0], [1, 0]) == pytest.approx(T_MIN, rel=1e-4)
    assert fit_temperature([1.0, -1.0], [0, 1]) == pytest.approx(T_MAX, rel=1e-4)
