"""Threshold selection for a target FPR: hand-worked thresholds, ties, boundaries, errors."""
import numpy as np
import pytest

from alignkit.errors import ConfigError, DataError
from alignkit.guard.calibrate import allowed_false_positives, calibrate

# Ten benign calibration scores, shuffled so the function has to sort them.
BENIGN = [0.30, 0.90, 0.05, 0.70, 0.10, 0.50, 0.80, 0.20, 0.60, 0.40]


def up(x):
    return float(np.nextafter(x, np.inf))


def test_target_met_exactly_at_the_boundary():
    """n = 10, target 0.2: m = floor(0.2 * 10) = 2 false positives allowed. Sorted
    descending 0.9, 0.8, 0.7, ...: v = 3rd largest = 0.7, so t = next float above 0.7.
    Flagged benign: 0.8, 0.9 -> FPR = 2/10 = 0.2, equal to the target (allowed: <=)."""
    c = calibrate(BENIGN, 0.2)
    assert c.allowed_false_positives == 2
    assert c.threshold == up(0.7)
    assert c.false_positives == 2 and c.fpr.value == 0.2
    # Smallest: one float lower is 0.7 itself, which flags 0.7 too -> 3/10 > 0.2.
    lower = float(np.nextafter(c.threshold, -np.inf))
    assert sum(s >= lower for s in BENIGN) == 3


def test_target_just_under_a_step_rounds_down():
    """target 0.19: m = floor(1.9) = 1, v = 2nd largest = 0.8 -> FPR 1/10 = 0.1."""
    c = calibrate(BENIGN, 0.19)
    assert (c.allowed_false_positives, c.threshold, c.false_positives) == (1, up(0.8), 1)


def test_target_below_resolution_flags_no_benign_text():
    """target 0.05 < 1/n = 0.1: m = floor(0.5) = 0, t lies above the largest score 0.9."""
    c = calibrate(BENIGN, 0.05)
    assert (c.allowed_false_positives, c.threshold, c.false_positives) == (0, up(0.9), 0)
    assert c.resolution == 0.1
    # With n benign texts the expected FPR on new ones is (m+1)/(n+1) = 1/11, above 0.05.
    assert c.expected_fpr_new == pytest.approx(1 / 11)


def test_ties_leave_the_whole_tie_unflagged():
    """Benign 0.1, 0.2, 0.5, 0.5, 0.5, 0.9 (n = 6), target 0.5: m = 3, sorted descending
    0.9, 0.5, 0.5, 0.5, 0.2, 0.1 -> v = 4th largest = 0.5, t just above 0.5. Only 0.9 is
    flagged: FPR 1/6, far under 0.5, because no threshold separates the three 0.5s.
    target 0.67: m = floor(4.02) = 4, v = 0.2 -> flags 0.9 and the three 0.5s = 4/6."""
    tied = [0.5, 0.1, 0.5, 0.9, 0.2, 0.5]
    c = calibrate(tied, 0.5)
    assert (c.threshold, c.false_positives) == (up(0.5), 1)
    assert c.fpr.value == pytest.approx(1 / 6)
    c = calibrate(tied, 0.67)
    assert (c.threshold, c.false_positives) == (up(0.2), 4)


def test_float_product_just_below_an_integer_counts_as_the_integer():
    """0.29 * 100 = 28.999999999999996 in floats; m must be 29, not 28."""
    assert allowed_false_positives(100, 0.29) == 29


def test_conformal_rule_is_stricter_and_needs_enough_benign_texts():
    """Conformal: m = floor(target (n+1)) - 1. n = 10, target 0.2: floor(2.2) - 1 = 1, so
    v = 0.8 and E[FPR new] = (m+1)/(n+1) = 2/11 = 0.18 <= 0.2 (the empirical rule's is
    3/11 = 0.27). target 0.05 needs n >= 1/0.05 - 1 = 19: n = 19 gives m = floor(1.0) - 1 = 0,
    n = 18 gives floor(0.95) - 1 = -1, impossible."""
    c = calibrate(BENIGN, 0.2, method="conformal")
    assert (c.allowed_false_positives, c.threshold) == (1, up(0.8))
    assert c.expected_fpr_new == pytest.approx(2 / 11)
    assert calibrate(BENIGN, 0.2).expected_fpr_new == pytest.approx(3 / 11)
    assert allowed_false_positives(19, 0.05, "conformal") == 0
    with pytest.raises(ConfigError, match="at least 19"):
        allowed_false_positives(18, 0.05, "conformal")


def test_calibration_fpr_carries_a_wilson_interval():
    """k = 2 of n = 10, z = 1.95996 (z² = 3.84146): denom = 1 + z²/n = 1.38415,
    centre = (0.2 + z²/20) / denom = (0.2 + 0.19207) / 1.38415 = 0.28326,
    half = z / denom * sqrt(0.2 * 0.8 / 10 + z²/400) = 1.41600 * sqrt(0.016 + 0.0096037)
         = 1.41600 * 0.16001 = 0.22658  ->  (0.05668, 0.50984)."""
    c = calibrate(BENIGN, 0.2)
    assert (c.fpr.k, c.fpr.n) == (2, 10)
    assert c.fpr.lo == pytest.approx(0.05668, abs=1e-4)
    assert c.fpr.hi == pytest.approx(0.50984, abs=1e-4)


@pytest.mark.parametrize("target", [1.0, -0.01, float("nan"), "0.05", True])
def test_bad_target_is_a_config_error(target):
    with pytest.raises(ConfigError, match="target_fpr"):
        calibrate(BENIGN, target)


def test_bad_scores_are_clear_errors():
    with pytest.raises(DataError, match="no benign calibration texts"):
        calibrate([], 0.05)
    with pytest.raises(ValueError, match=r"scores_benign\[1\]"):
        calibrate([0.1, float("nan")], 0.05)
    with pytest.raises(ConfigError, match="unknown calibration method"):
        calibrate(BENIGN, 0.1, method="magic")
