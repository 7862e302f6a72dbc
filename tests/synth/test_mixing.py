"""Examples-proportional mixing with a cap, explicit weights and whole-row counts, by hand."""
import pytest

from alignkit.errors import ConfigError
from alignkit.synth.mixing import allocate_counts, mixture_masses, mixture_rates


def test_capped_rates_worked_by_hand():
    """Tasks of 10, 100, 1200 and 5000 rows, cap K = 1000.

    masses min(n, K) = 10, 100, 1000, 1000; sum = 2110
    rates = 10/2110, 100/2110, 1000/2110, 1000/2110
    """
    sizes = {"a": 10, "b": 100, "c": 1200, "d": 5000}
    rates = mixture_rates(sizes, cap=1000)
    assert rates == pytest.approx({"a": 10 / 2110, "b": 100 / 2110, "c": 1000 / 2110,
                                   "d": 1000 / 2110})
    assert sum(rates.values()) == pytest.approx(1.0)


def test_no_cap_is_plain_examples_proportional():
    """cap=None: masses 10, 100, 5000; sum 5110."""
    rates = mixture_rates({"a": 10, "b": 100, "c": 5000}, cap=None)
    assert rates == pytest.approx({"a": 10 / 5110, "b": 100 / 5110, "c": 5000 / 5110})


def test_explicit_weights_replace_the_capped_mass():
    """Cap 1000; b weighted 500 (in examples), c weighted 0 (left out).

    masses: a = min(10, 1000) = 10, b = 500, c = 0, d = min(5000, 1000) = 1000; sum 1510
    """
    sizes = {"a": 10, "b": 100, "c": 1200, "d": 5000}
    assert mixture_masses(sizes, 1000, {"b": 500, "c": 0}) == {"a": 10, "b": 500, "c": 0,
                                                               "d": 1000}
    rates = mixture_rates(sizes, 1000, {"b": 500, "c": 0})
    assert rates == pytest.approx({"a": 10 / 1510, "b": 500 / 1510, "c": 0.0, "d": 1000 / 1510})


def test_largest_remainder_counts_by_hand():
    """Rates 10/2110, 100/2110, 1000/2110, 1000/2110 and N = 1000.

    quotas: 4.739, 47.393, 473.934, 473.934 -> floors 4, 47, 473, 473 = 997;
    3 rows missing go to the largest remainders: c (.934), d (.934), then a (.739).
    """
    rates = mixture_rates({"a": 10, "b": 100, "c": 1200, "d": 5000}, cap=1000)
    assert allocate_counts(rates, 1000) == {"a": 5, "b": 47, "c": 474, "d": 474}


def test_counts_sum_to_total_and_stay_within_one_of_the_quota():
    rates = mixture_rates({"a": 3, "b": 7, "c": 11}, cap=None)  # 3/21, 7/21, 11/21
    for total in (1, 2, 5, 20, 21, 1000):
        counts = allocate_counts(rates, total)
        assert sum(counts.values()) == total
        assert all(abs(counts[k] - rates[k] * total) < 1 for k in rates)


def test_exact_quota_is_not_lost_to_float_error():
    """10/1110 * 111 = 1 exactly on paper (0.9999999999999999 in floats): must give 1."""
    rates = mixture_rates({"a": 10, "b": 100, "c": 5000}, cap=1000)
    assert allocate_counts(rates, 111) == {"a": 1, "b": 10, "c": 100}


@pytest.mark.parametrize("sizes, cap, weights, words", [
    ({"a": 1}, 1000, {"z": 1.0}, "weights: unknown task(s) ['z']"),
    ({"a": 1}, 0, None, "cap must be >= 1"),
    ({"a": 1, "b": 2}, 10, {"a": -1.0}, "weights.a: must be a finite number >= 0"),
    ({"a": 1}, 10, {"a": 0.0}, "every task has mass 0"),
])
def test_bad_mixture_settings(sizes, cap, weights, words):
    with pytest.raises(ConfigError) as e:
        mixture_rates(sizes, cap, weights)
    assert words in str(e.value)
