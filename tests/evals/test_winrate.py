"""alignkit.evals.winrate: both-order judging, win rate with ties, length-controlled win rate."""
from __future__ import annotations

import math

import pytest

from alignkit.errors import DataError
from alignkit.evals.stats import wilson_interval
from alignkit.evals.winrate import length_controlled_win_rate, pairwise_verdicts, win_rate


def _judge(prompt: str, first: str, second: str) -> str:
    """Prompt 'fair': prefers the output containing 'good' wherever it is.
    Prompt 'biased': always says 'first' (position bias). Prompt 'same': always 'tie'.
    Prompt 'half': 'first' if first is good, else 'tie' (inconsistent)."""
    if prompt == "fair":
        return "first" if "good" in first else "second"
    if prompt == "biased":
        return "first"
    if prompt == "half":
        return "first" if "good" in first else "tie"
    return "tie"


def test_pairwise_verdicts_both_orders():
    """fair: AB says first (A), BA says second (A) -> 'a'; fair with B good -> 'b';
    biased: AB first (A), BA first (B) -> inconsistent -> 'tie'; same: tie/tie -> 'tie';
    half: AB first (A), BA tie -> inconsistent -> 'tie'. Inconsistent count 2."""
    res = pairwise_verdicts(_judge, ["fair", "fair", "biased", "same", "half"],
                            ["good", "bad", "x", "x", "good"], ["bad", "good", "y", "y", "bad"])
    assert res.verdicts == ["a", "b", "tie", "tie", "tie"]
    assert res.n_inconsistent == 2
    assert res.ab == ["first", "second", "first", "tie", "first"]
    assert res.ba == ["second", "first", "first", "tie", "tie"]


def test_pairwise_verdicts_rejects_bad_judge_answer_and_lengths():
    with pytest.raises(ValueError, match="prompt 0"):
        pairwise_verdicts(lambda p, a, b: "A", ["q"], ["x"], ["y"])
    with pytest.raises(ValueError, match="same length"):
        pairwise_verdicts(_judge, ["q"], ["x", "z"], ["y"])


def test_win_rate_ties_count_half():
    """(a, a, b, tie): k = 1 + 1 + 0 + 0.5 = 2.5 of n = 4 -> 0.625, Wilson on k = 2.5."""
    est = win_rate(["a", "a", "b", "tie"])
    assert (est.k, est.n, est.value) == (2.5, 4, 0.625)
    assert (est.lo, est.hi) == wilson_interval(2.5, 4)
    res = pairwise_verdicts(_judge, ["fair", "biased"], ["good", "x"], ["bad", "y"])
    assert win_rate(res).value == 0.75  # a + tie = 1.5 / 2
    with pytest.raises(ValueError, match=r"verdicts\[1\]"):
        win_rate(["a", "first"])


def _table(rows):
    """rows: (count, preference, len_a, len_b) -> records."""
    return [{"preference": p, "len_a": la, "len_b": lb} for c, p, la, lb in rows for _ in range(c)]


def test_lc_removes_pure_length_bias():
    """A is longer in 15 pairs (wins 12) and shorter in 5 (wins 1): raw = 13/20 = 0.65.
    Δ = +10 (15×), −10 (5×): mean 5, E[Δ²] = 100, sd = sqrt(100−25) = 8.660254,
    feature = tanh(±10/8.660254) = ±t, t = tanh(1.154701) = 0.819398.
    Two feature values, two parameters: the fit reproduces both group rates exactly,
      θ + φt = logit(12/15) = ln 4,   θ − φt = logit(1/5) = −ln 4
    -> θ = 0, φ = ln 4 / t = 1.691846, LC win rate = σ(0) = 0.5: the 0.65 was all length."""
    r = length_controlled_win_rate(_table([(12, 1, 30, 20), (3, 0, 30, 20),
                                           (1, 1, 20, 30), (4, 0, 20, 30)]))
    assert r.raw == pytest.approx(0.65)
    assert r.length_scale == pytest.approx(math.sqrt(75))
    assert r.theta == pytest.approx(0.0, abs=1e-9)
    assert r.phi == pytest.approx(math.log(4) / math.tanh(10 / math.sqrt(75)), rel=1e-9)
    assert r.value == pytest.approx(0.5, abs=1e-9)


def test_lc_quality_beyond_length():
    """A longer in 10 pairs (wins 8), shorter in 10 (wins 5): raw 13/20 = 0.65.
    Δ = ±5 equally often: mean 0, sd 5, feature ±tanh(1) = ±0.761594.
      θ + φ·0.761594 = logit(0.8) = ln 4,  θ − φ·0.761594 = logit(0.5) = 0
    -> θ = ln 2, φ = ln 2 / tanh(1) = 0.910127, LC = σ(ln 2) = 2/3."""
    r = length_controlled_win_rate(_table([(8, 1, 15, 10), (2, 0, 15, 10),
                                           (5, "a", 10, 15), (5, "b", 10, 15)]))
    assert r.raw == pytest.approx(0.65)
    assert r.theta == pytest.approx(math.log(2), rel=1e-9)
    assert r.phi == pytest.approx(math.log(2) / math.tanh(1.0), rel=1e-9)
    assert r.value == pytest.approx(2 / 3, rel=1e-9)


def test_lc_equal_lengths_and_soft_ties():
    """All Δ = 0: no length information, intercept only. Preferences a, tie, tie, b, a
    = (1, .5, .5, 0, 1): σ(θ) = mean = 0.6, θ = ln(0.6/0.4) = ln 1.5."""
    r = length_controlled_win_rate(_table([(1, "a", 5, 5), (2, "tie", 5, 5), (1, "b", 5, 5),
                                           (1, 1.0, 5, 5)]))
    assert (r.raw, r.phi, r.length_scale) == (pytest.approx(0.6), 0.0, 0.0)
    assert r.theta == pytest.approx(math.log(1.5), rel=1e-9)
    assert r.value == pytest.approx(0.6, rel=1e-9)


def test_lc_separable_cases():
    """All wins -> the limit value 1 (θ = +inf). Wins exactly when longer, losses exactly when
    shorter -> φ diverges: an error unless l2 > 0; with l2 the symmetric table gives θ = 0."""
    r = length_controlled_win_rate(_table([(3, 1, 10, 5), (2, 1, 5, 10)]))
    assert (r.value, r.theta) == (1.0, math.inf)
    sep = _table([(4, 1, 20, 10), (4, 0, 10, 20)])
    with pytest.raises(ValueError, match="l2"):
        length_controlled_win_rate(sep)
    r = length_controlled_win_rate(sep, l2=1e-3)
    assert r.value == pytest.approx(0.5, abs=1e-9) and r.phi > 3


def test_lc_errors_name_line_and_field():
    recs = _table([(2, 1, 5, 10)]) + [{"preference": 1, "len_a": 5}]
    with pytest.raises(DataError) as e:
        length_controlled_win_rate(recs, file="judged.jsonl")
    assert (e.value.file, e.value.line, e.value.field) == ("judged.jsonl", 3, "len_b")
    with pytest.raises(DataError) as e:
        length_controlled_win_rate([{"preference": 0.7, "len_a": 1, "len_b": 2}])
    assert (e.value.line, e.value.field) == (1, "preference")
    with pytest.raises(DataError) as e:
        length_controlled_win_rate([{"preference": 1, "len_a": -1, "len_b": 2}])
    assert e.value.field == "len_a"
