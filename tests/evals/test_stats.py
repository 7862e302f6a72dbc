"""alignkit.evals.stats: Wilson intervals, bootstrap intervals and slice rates, computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from alignkit.errors import DataError
from alignkit.evals.stats import (Z95, RateEstimate, mean_interval, paired_bootstrap_diff, rate,
                                  slice_rates, wilson_interval)


def test_wilson_z1_half():
    """k=1, n=2, z=1: p = 1/2, 1 + z²/n = 3/2.

    centre = (1/2 + 1/4) / (3/2) = 1/2
    half   = (2/3)·sqrt(1/8 + 1/16) = (2/3)·(√3/4) = √3/6 = 0.288675
    -> (0.211325, 0.788675)
    """
    lo, hi = wilson_interval(1, 2, z=1.0)
    assert lo == pytest.approx(0.5 - math.sqrt(3) / 6, abs=1e-12)
    assert hi == pytest.approx(0.5 + math.sqrt(3) / 6, abs=1e-12)


def test_wilson_8_of_10():
    """k=8, n=10, z=1.959964: z² = 3.841459, 1 + z²/n = 1.3841459.

    centre = (0.8 + 0.1920729) / 1.3841459 = 0.716740
    half   = (1.959964/1.3841459)·sqrt(0.016 + 0.00960365) = 1.416010·0.160011 = 0.226578
    -> (0.490162, 0.943318)
    """
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((0.490162, 0.943318), abs=2e-6)


def test_wilson_zero_and_all_successes():
    """k=0, n=10: centre = (z²/20)/(1+z²/10) = 0.1920729/1.3841459 = 0.138766 and
    half = 1.416010·sqrt(z²/400) = 1.416010·0.0979982 = 0.138766 (equal: p = 0), so
    (0, 0.277533); k=n is the mirror image (0.722467, 1). The normal interval would give
    (0, 0), which is why Wilson is used."""
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=2e-6)
    assert wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=2e-6)


def test_wilson_n0_is_whole_range_and_rate_value_nan():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    est = rate(0, 0)
    assert math.isnan(est.value) and (est.lo, est.hi, est.n, est.k) == (0.0, 1.0, 0, 0)


@pytest.mark.parametrize("k,n", [(-1, 5), (6, 5), (1, -1), (1, 2.5), (float("nan"), 3)])
def test_wilson_rejects_bad_counts(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


def test_rate_fields():
    """rate(3, 4): value 3/4, interval = wilson_interval(3, 4)."""
    est = rate(3, 4)
    assert isinstance(est, RateEstimate)
    assert est.value == 0.75 and (est.lo, est.hi) == wilson_interval(3, 4, Z95)
    assert est.as_dict()["n"] == 4


def test_paired_bootstrap_constant_difference():
    """a - b = 0.5 on every example, so every resample mean is 0.5: (0.5, 0.5, 0.5)."""
    diff, lo, hi = paired_bootstrap_diff([1.0, 0.5, 0.75], [0.5, 0.0, 0.25], n_boot=300)
    assert (diff, lo, hi) == pytest.approx((0.5, 0.5, 0.5))


def test_paired_bootstrap_two_examples():
    """d = a - b = (0, 1): diff = 1/2. A resample of 2 indices has mean 0 (prob 1/4),
    1/2 (prob 1/2) or 1 (prob 1/4); with 2000 resamples ~500 are 0 and ~500 are 1, so the 2.5%
    and 97.5% quantiles are exactly 0 and 1."""
    assert paired_bootstrap_diff([1, 1], [1, 0], n_boot=2000, seed=3) == (0.5, 0.0, 1.0)


def test_paired_bootstrap_follows_stated_procedure():
    """The documented procedure, re-done here: one Generator(PCG64(seed)), indices of shape
    (n_boot, N), mean of d[idx] per row, numpy linear quantiles at 2.5% / 97.5%."""
    a = [0.9, 0.2, 0.4, 0.8, 0.7]
    b = [0.5, 0.3, 0.1, 0.8, 0.2]
    d = np.subtract(a, b)
    idx = np.random.Generator(np.random.PCG64(7)).integers(0, 5, size=(100, 5))
    boot = d[idx].mean(axis=1)
    got = paired_bootstrap_diff(a, b, n_boot=100, seed=7)
    assert got == pytest.approx((d.mean(), np.quantile(boot, 0.025), np.quantile(boot, 0.975)))
    assert got == paired_bootstrap_diff(a, b, n_boot=100, seed=7)  # deterministic
    assert got[1:] != paired_bootstrap_diff(a, b, n_boot=100, seed=8)[1:]


def test_paired_bootstrap_pairing_matters():
    """Two systems with a large shared per-example effect: b = a - 0.1 plus nothing else, so
    the paired interval is the single point 0.1 even though a itself varies a lot."""
    a = [0.0, 1.0, 0.2, 0.9, 0.5, 0.3]
    b = [x - 0.1 for x in a]
    diff, lo, hi = paired_bootstrap_diff(a, b)
    assert (diff, lo, hi) == pytest.approx((0.1, 0.1, 0.1))


def test_paired_bootstrap_rejects_unpaired_and_bad_ci():
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap_diff([1, 2], [1])
    with pytest.raises(ValueError, match="ci"):
        paired_bootstrap_diff([1, 2], [1, 2], ci=1.5)
    with pytest.raises(ValueError, match=r"a\[1\]"):
        paired_bootstrap_diff([1, float("nan")], [1, 2])


def test_mean_interval_normal_by_hand():
    """values (1, 2, 3): mean 2, sample sd s = sqrt(((-1)² + 0 + 1²)/2) = 1,
    half = 1.959964·1/√3 = 1.131585 -> (0.868415, 3.131585)."""
    mean, lo, hi = mean_interval([1.0, 2.0, 3.0], method="normal")
    assert (mean, lo, hi) == pytest.approx((2.0, 0.868415, 3.131585), abs=2e-6)


def test_mean_interval_bootstrap_two_values():
    """values (0, 1): resample means are 0, 1/2, 1 with probs 1/4, 1/2, 1/4 -> (0.5, 0, 1)."""
    assert mean_interval([0.0, 1.0], n_boot=2000) == (0.5, 0.0, 1.0)


def test_mean_interval_single_value_and_bad_method():
    assert mean_interval([4.0]) == (4.0, 4.0, 4.0)
    with pytest.raises(ValueError, match="method"):
        mean_interval([1.0, 2.0], method="t")


def test_slice_rates_by_hand():
    """Slice x: 2 of 3 true; slice y: 0 of 1. Rates 2/3 and 0 with Wilson intervals."""
    rows = [{"cat": "x", "ok": True}, {"cat": "y", "ok": 0}, {"cat": "x", "ok": 1},
            {"cat": "x", "ok": False}]
    out = slice_rates(rows, "cat", "ok")
    assert list(out) == ["x", "y"]
    assert (out["x"].k, out["x"].n, out["x"].value) == (2, 3, pytest.approx(2 / 3))
    assert (out["x"].lo, out["x"].hi) == wilson_interval(2, 3)
    assert (out["y"].k, out["y"].n, out["y"].value) == (0, 1, 0.0)


def test_slice_rates_errors_name_line_and_field():
    rows = [{"cat": "x", "ok": True}, {"cat": "x"}]
    with pytest.raises(DataError) as e:
        slice_rates(rows, "cat", "ok", file="evals.jsonl")
    assert (e.value.file, e.value.line, e.value.field) == ("evals.jsonl", 2, "ok")
    with pytest.raises(DataError) as e:
        slice_rates([{"cat": "x", "ok": 0.3}], "cat", "ok")
    assert (e.value.line, e.value.field) == (1, "ok")
    with pytest.raises(DataError) as e:
        slice_rates([{"cat": ["x"], "ok": 1}], "cat", "ok")
    assert e.value.field == "cat"
