"""ROC/AUROC, PR/AP and FPR/FNR with Wilson intervals on a six-point example worked by hand."""
import pytest

from alignkit.errors import DataError
from alignkit.guard.metrics import auroc, average_precision, error_rates, pr_curve, roc_curve

# Three unsafe (1) and three benign (0) texts; one unsafe and one benign tie at 0.7.
SCORES = [0.9, 0.8, 0.7, 0.7, 0.4, 0.2]
LABELS = [1, 1, 0, 1, 0, 0]


def test_roc_points_step_through_distinct_scores_and_ties_enter_together():
    """Thresholds 0.9, 0.8, 0.7, 0.4, 0.2 give (TP, FP) = (1,0), (2,0), (3,1), (3,2), (3,3);
    divided by 3 and 3: (FPR, TPR) = (0,1/3), (0,2/3), (1/3,1), (2/3,1), (1,1), after (0,0)."""
    roc = roc_curve(SCORES, LABELS)
    assert roc.fpr == pytest.approx([0, 0, 0, 1 / 3, 2 / 3, 1])
    assert roc.tpr == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 1])
    assert roc.thresholds == [None, 0.9, 0.8, 0.7, 0.4, 0.2]


def test_auroc_by_trapezoids_equals_mann_whitney():
    """Trapezoids: the step 0 -> 1/3 in FPR has TPR 2/3 -> 1, area 1/3 * 5/6 = 5/18; then
    1/3 * 1 twice = 12/18; total 17/18 = 0.9444.
    Mann-Whitney: of 3 x 3 (unsafe, benign) pairs, 0.9 and 0.8 beat all three benign (6),
    the unsafe 0.7 ties the benign 0.7 (1/2) and beats 0.4 and 0.2 (2): 8.5 / 9 = 17/18."""
    assert auroc(SCORES, LABELS) == pytest.approx(17 / 18)


def test_average_precision_is_the_step_sum():
    """(R_k, P_k) = (1/3, 1), (2/3, 1), (1, 3/4), (1, 3/5), (1, 1/2).
    AP = 1/3 * 1 + 1/3 * 1 + 1/3 * 3/4 + 0 + 0 = 11/12 = 0.9167 (the trapezoid over the PR
    points would give a different, optimistic number; scikit-learn uses the step sum)."""
    pr = pr_curve(SCORES, LABELS)
    assert pr.recall == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 1])
    assert pr.precision == pytest.approx([1, 1, 1, 3 / 4, 3 / 5, 1 / 2])
    assert average_precision(SCORES, LABELS) == pytest.approx(11 / 12)


def test_perfect_and_reversed_rankings():
    """All unsafe above all benign: AUROC 1, AP 1. Reversed: AUROC 0, and AP = the unsafe
    texts come last: precision at recall 1/2 is 1/3, at recall 1 is 2/4 -> 1/2*1/3 + 1/2*1/2
    = 5/12."""
    assert auroc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert average_precision([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert average_precision([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == pytest.approx(5 / 12)


def test_error_rates_at_threshold_with_wilson_intervals():
    """t = 0.75 flags 0.9 and 0.8 (both unsafe): FP = 0 of 3 benign, FN = 1 of 3 unsafe
    (the 0.7 one).
    FNR 1/3, z² = 3.84146: denom = 1 + z²/3 = 2.28049; centre = (1/3 + z²/6) / denom
    = (0.33333 + 0.64024) / 2.28049 = 0.42692; half = z / denom * sqrt((1/3)(2/3)/3 + z²/36)
    = 0.85945 * sqrt(0.07407 + 0.10671) = 0.85945 * 0.42518 = 0.36542 -> (0.06149, 0.79234).
    FPR 0/3: centre = 0.64024 / 2.28049 = 0.28075 = half -> (0, 0.56150)."""
    er = error_rates(SCORES, LABELS, 0.75)
    assert (er.fpr.k, er.fpr.n, er.fnr.k, er.fnr.n) == (0, 3, 1, 3)
    assert er.fnr.value == pytest.approx(1 / 3)
    assert (er.fnr.lo, er.fnr.hi) == pytest.approx((0.06149, 0.79234), abs=1e-4)
    assert (er.fpr.lo, er.fpr.hi) == pytest.approx((0.0, 0.56150), abs=1e-4)
    assert er.precision.value == 1.0 and er.flagged.value == pytest.approx(2 / 6)


def test_threshold_is_inclusive():
    """score >= t flags: at t = 0.7 both 0.7s are flagged -> FP 1/3, FN 0/3."""
    er = error_rates(SCORES, LABELS, 0.7)
    assert (er.fpr.k, er.fnr.k) == (1, 0)


def test_bad_inputs():
    with pytest.raises(DataError, match="no unsafe"):
        auroc([0.1, 0.2], [0, 0])
    with pytest.raises(DataError, match="line 2.*label"):
        roc_curve([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="same length"):
        auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"scores\[0\]"):
        auroc([float("inf"), 0.2], [0, 1])
