"""Best-of-n: analytic KL by hand, the subset estimator and the plug-in KL on tiny pools."""
import math
import random

import pytest

from alignkit.studies.bon import (analytic_bon_kl, best_of_n_expectation, best_of_n_kl,
                                  max_rank_weights, powers_of_two)


def test_analytic_kl_by_hand():
    """log n − (n−1)/n: n = 1 -> 0 − 0 = 0; n = 2 -> log 2 − 1/2 = 0.693147 − 0.5 = 0.193147;
    n = 4 -> log 4 − 3/4 = 1.386294 − 0.75 = 0.636294; n = 64 -> 4.158883 − 0.984375 = 3.174508."""
    assert analytic_bon_kl(1) == 0.0
    assert analytic_bon_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert analytic_bon_kl(2) == pytest.approx(0.193147, abs=1e-6)
    assert analytic_bon_kl(4) == pytest.approx(0.636294, abs=1e-6)
    assert analytic_bon_kl(64) == pytest.approx(3.174508, abs=1e-6)
    with pytest.raises(ValueError):
        analytic_bon_kl(0)


def test_powers_of_two():
    assert powers_of_two(64) == [1, 2, 4, 8, 16, 32, 64]
    assert powers_of_two(1) == [1]
    with pytest.raises(ValueError, match="power of two"):
        powers_of_two(48)


def test_max_rank_weights_by_hand():
    """N = 4, n = 2: C(4,2) = 6 subsets; rank i is the max of C(i−1, 1) = i − 1 of them:
    weights (0, 1, 2, 3)/6. n = 1: uniform 1/4. n = N: only the top rank."""
    assert max_rank_weights(4, 2) == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6])
    assert max_rank_weights(4, 1) == pytest.approx([0.25] * 4)
    assert max_rank_weights(4, 4) == pytest.approx([0, 0, 0, 1])
    with pytest.raises(ValueError, match="1 <= n <= N"):
        max_rank_weights(4, 5)


def test_best_of_n_selects_by_proxy_not_by_gold():
    """Four draws; the proxy prefers the two *wrong* ones (gold 0). Ranks by proxy ascending:
    [a 0.1 gold 1, b 0.2 gold 1, c 0.7 gold 0, d 0.9 gold 0].
    n = 1: mean gold = 2/4 = 0.5.  n = 2: weights (0, 1, 2, 3)/6 -> gold = 1/6·1 + 0 + 0 = 1/6.
    n = 4: always d -> gold 0, proxy 0.9. Expected proxy at n = 2: (0.2 + 2·0.7 + 3·0.9)/6
    = (0.2 + 1.4 + 2.7)/6 = 4.3/6."""
    proxy = [0.7, 0.1, 0.9, 0.2]  # input order does not matter
    gold = [0.0, 1.0, 0.0, 1.0]
    assert best_of_n_expectation(proxy, gold, 1) == pytest.approx(0.5)
    assert best_of_n_expectation(proxy, gold, 2) == pytest.approx(1 / 6)
    assert best_of_n_expectation(proxy, gold, 4) == 0.0
    assert best_of_n_expectation(proxy, proxy, 2) == pytest.approx(4.3 / 6)
    assert best_of_n_expectation(proxy, proxy, 4) == pytest.approx(0.9)


def test_ties_share_their_rank_mass():
    """Draws (proxy, gold): (1, 1), (1, 0), (0, 0). n = 3 always picks the tied top group, where
    the choice is uniform: gold = (1 + 0)/2 = 0.5. n = 2: ranks 2 and 3 (the tie) carry weight
    1/3 + 2/3 = 1, so also 0.5 (the draw with proxy 0 can never win a pair)."""
    proxy, gold = [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]
    assert best_of_n_expectation(proxy, gold, 3) == pytest.approx(0.5)
    assert best_of_n_expectation(proxy, gold, 2) == pytest.approx(0.5)


def test_estimator_is_unbiased_against_brute_force_subsets():
    """The weights reproduce the average over all C(6, 3) = 20 subsets of the subset's argmax."""
    from itertools import combinations

    rng = random.Random(0)
    proxy = [rng.random() for _ in range(6)]
    gold = [rng.random() for _ in range(6)]
    brute = [gold[max(s, key=lambda i: proxy[i])] for s in combinations(range(6), 3)]
    assert best_of_n_expectation(proxy, gold, 3) == pytest.approx(sum(brute) / len(brute))


def test_plug_in_kl_by_hand_and_limits():
    """Two distinct draws, n = 2: p = (1/2, 1/2); F = (1/2, 1): q = (1/4, 3/4);
    KL = 1/4 log(1/2) + 3/4 log(3/2) = −0.173287 + 0.304099 = 0.130812.
    All draws identical (one level): q = p, KL = 0 for every n (the policy cannot move).
    Many distinct draws, n = 4: close to the analytic 0.636294 (within 1%)."""
    assert best_of_n_kl([0.0, 1.0], 2) == pytest.approx(0.130812, abs=1e-6)
    assert best_of_n_kl([0.3] * 8, 8) == 0.0
    assert best_of_n_kl([0.1, 0.5, 0.9], 1) == 0.0
    many = [i / 10000 for i in range(10000)]
    assert best_of_n_kl(many, 4) == pytest.approx(analytic_bon_kl(4), rel=0.01)
    # ties only lower it: two levels with masses 3/4 and 1/4, n = 2: q = (9/16, 7/16);
    # KL = 9/16 log(3/4) + 7/16 log(7/4) = −0.161821 + 0.244832 = 0.083011 < 0.193147
    tied = best_of_n_kl([0.0, 0.0, 0.0, 1.0], 2)
    assert tied == pytest.approx(0.083011, abs=1e-6) and tied < analytic_bon_kl(2)
