"""Gate arithmetic, every rule kind, worked out by hand.

Notation as in alignkit/gates/verdict.py: x = the run's number (value or interval end),
b = the baseline's point value, d = x - b, r = d / |b|.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.errors import ConfigError
from alignkit.gates.metrics import MetricValue, RunMetrics
from alignkit.gates.spec import GateRule, GateSpec
from alignkit.gates.verdict import evaluate_gates, evaluate_rule, satisfies


def runm(name="run", **metrics) -> RunMetrics:
    """An in-memory run: keyword m=(value, lo, hi) or m=value (no interval)."""
    out = {}
    for key, v in metrics.items():
        key = key.replace("__", "/")
        if isinstance(v, tuple):
            out[key] = MetricValue(*v, n=100, source=f"{name}/eval.json")
        else:
            out[key] = MetricValue(v, source=f"{name}/manifest.json")
    return RunMetrics(Path(name), out, None, [Path(f"{name}/eval.json")])


def verdict(rule: dict, run: RunMetrics, base: RunMetrics | None = None) -> str:
    return evaluate_rule(0, GateRule(metric="s/m", **rule), run, base).verdict


# --------------------------------------------------------------------------- absolute min / max

@pytest.mark.parametrize("x, expected", [(0.6, "pass"), (0.4, "fail"), (0.5, "pass")])
def test_min_on_value_including_boundary(x, expected):
    # min 0.5: 0.6 >= 0.5 pass; 0.4 < 0.5 fail; 0.5 == 0.5 passes (equality allowed).
    assert verdict({"min": 0.5}, runm(s__m=(x, None, None))) == expected


@pytest.mark.parametrize("x, expected", [(0.05, "pass"), (0.12, "fail"), (0.10, "pass")])
def test_max_on_value_including_boundary(x, expected):
    # max 0.10: 0.05 <= 0.10 pass; 0.12 > 0.10 fail; 0.10 == 0.10 pass.
    assert verdict({"max": 0.10, "greater_is_better": False}, runm(s__m=(x, None, None))) == expected


def test_min_on_interval_bounds():
    """value 0.6, 95% interval [0.45, 0.70], min 0.5:
    value 0.60 >= 0.5 pass; lower bound 0.45 < 0.5 fail; upper bound 0.70 >= 0.5 pass."""
    run = runm(s__m=(0.6, 0.45, 0.70))
    assert verdict({"min": 0.5}, run) == "pass"
    assert verdict({"min": 0.5, "use": "lower_bound"}, run) == "fail"
    assert verdict({"min": 0.5, "use": "upper_bound"}, run) == "pass"


def test_max_on_interval_bounds_with_boundary_equality():
    """value 0.05, interval [0.02, 0.12], max 0.10: upper bound 0.12 > 0.10 fails; with the
    upper bound exactly 0.10 it passes; the lower bound 0.02 <= 0.10 passes."""
    rule = {"max": 0.10, "greater_is_better": False, "use": "upper_bound"}
    assert verdict(rule, runm(s__m=(0.05, 0.02, 0.12))) == "fail"
    assert verdict(rule, runm(s__m=(0.05, 0.02, 0.10))) == "pass"
    assert verdict({**rule, "use": "lower_bound"}, runm(s__m=(0.05, 0.02, 0.12))) == "pass"


@pytest.mark.parametrize("greater_is_better, expected_bound, expected", [
    (True, 0.45, "fail"),   # pessimistic = lower bound 0.45 < min 0.5
    (False, 0.70, "pass"),  # pessimistic = upper bound 0.70 >= min 0.5
])
def test_min_pessimistic_follows_greater_is_better(greater_is_better, expected_bound, expected):
    res = evaluate_rule(0, GateRule(metric="s/m", min=0.5, use="pessimistic",
                                    greater_is_better=greater_is_better),
                        runm(s__m=(0.6, 0.45, 0.70)))
    assert res.observed == expected_bound and res.verdict == expected


@pytest.mark.parametrize("greater_is_better, expected_bound, expected", [
    (False, 0.12, "fail"),  # pessimistic = upper bound 0.12 > max 0.10
    (True, 0.02, "pass"),   # pessimistic = lower bound 0.02 <= max 0.10
])
def test_max_pessimistic_follows_greater_is_better(greater_is_better, expected_bound, expected):
    res = evaluate_rule(0, GateRule(metric="s/m", max=0.10, use="pessimistic",
                                    greater_is_better=greater_is_better),
                        runm(s__m=(0.05, 0.02, 0.12)))
    assert res.observed == expected_bound and res.verdict == expected


def test_absolute_thresholds_do_not_flip_with_greater_is_better_on_the_value():
    """min/max mean what they say whatever the direction: x=0.3 passes max 0.5 and fails min 0.5
    for either greater_is_better."""
    run = runm(s__m=(0.3, 0.2, 0.4))
    for gib in (True, False):
        assert verdict({"max": 0.5, "greater_is_better": gib}, run) == "pass"
        assert verdict({"min": 0.5, "greater_is_better": gib}, run) == "fail"


# --------------------------------------------------------------------------- absolute change

@pytest.mark.parametrize("x, expected", [
    (0.49, "pass"),  # d = 0.49 - 0.50 = -0.01 >= -0.02
    (0.47, "fail"),  # d = -0.03 < -0.02
    (0.48, "pass"),  # d = -0.02 (float: -0.020000000000000018) == bound: boundary passes
])
def test_min_change_greater_is_better(x, expected):
    base = runm("base", s__m=(0.50, 0.40, 0.60))
    assert verdict({"min_change": -0.02}, runm(s__m=(x, None, None)), base) == expected


@pytest.mark.parametrize("x, expected", [
    (0.51, "pass"),  # lower is better: improvement = b - x = -0.01 >= -0.02, i.e. d = +0.01 <= +0.02
    (0.53, "fail"),  # d = +0.03 > +0.02
    (0.52, "pass"),  # d = +0.02 boundary
    (0.40, "pass"),  # d = -0.10: an improvement
])
def test_min_change_lower_is_better(x, expected):
    base = runm("base", s__m=(0.50, 0.40, 0.60))
    rule = {"min_change": -0.02, "greater_is_better": False}
    assert verdict(rule, runm(s__m=(x, None, None)), base) == expected


def test_min_change_boundary_survives_float_rounding():
    """0.3 - 0.2 = 0.09999999999999998 in binary floating point, which is < 0.1 exactly; the
    gate counts it as equal to the bound, so `min_change: 0.1` passes."""
    assert 0.3 - 0.2 < 0.1
    assert verdict({"min_change": 0.1}, runm(s__m=(0.3, None, None)),
                   runm("base", s__m=(0.2, None, None))) == "pass"
    # A real shortfall of 1e-6 is not rounding: fails.
    assert verdict({"min_change": 0.1}, runm(s__m=(0.299999, None, None)),
                   runm("base", s__m=(0.2, None, None))) == "fail"


def test_min_change_on_the_run_lower_bound():
    """Run value 0.49, interval [0.44, 0.54]; baseline 0.50 (its point value, not its bound).
    use value: d = -0.01 >= -0.05 pass; use lower_bound: d = 0.44 - 0.50 = -0.06 < -0.05 fail."""
    run = runm(s__m=(0.49, 0.44, 0.54))
    base = runm("base", s__m=(0.50, 0.30, 0.70))
    assert verdict({"min_change": -0.05}, run, base) == "pass"
    res = evaluate_rule(0, GateRule(metric="s/m", min_change=-0.05, use="lower_bound"), run, base)
    assert res.verdict == "fail"
    assert res.run_number == 0.44 and res.baseline_number == 0.50
    assert res.observed == pytest.approx(-0.06)


@pytest.mark.parametrize("x, expected", [
    (0.13, "pass"),  # d = 0.13 - 0.10 = +0.03 <= +0.05
    (0.16, "fail"),  # d = +0.06 > +0.05
    (0.15, "pass"),  # d = +0.05 (float 0.04999999999999999) boundary
    (0.02, "pass"),  # d = -0.08: fewer refusals is fine
])
def test_max_increase(x, expected):
    base = runm("base", s__m=(0.10, 0.05, 0.17))
    rule = {"max_increase": 0.05, "greater_is_better": False}
    assert verdict(rule, runm(s__m=(x, None, None)), base) == expected


def test_max_increase_on_upper_bound():
    """Run 0.13 with interval [0.08, 0.20], baseline 0.10: value d = +0.03 pass;
    upper bound d = 0.20 - 0.10 = +0.10 > +0.05 fail."""
    run, base = runm(s__m=(0.13, 0.08, 0.20)), runm("base", s__m=(0.10, 0.05, 0.17))
    rule = {"max_increase": 0.05, "greater_is_better": False}
    assert verdict(rule, run, base) == "pass"
    assert verdict({**rule, "use": "upper_bound"}, run, base) == "fail"
    assert verdict({**rule, "use": "pessimistic"}, run, base) == "fail"  # = upper bound here


@pytest.mark.parametrize("x, expected", [
    (0.46, "pass"),  # d = -0.04 >= -0.05
    (0.44, "fail"),  # d = -0.06 < -0.05
    (0.45, "pass"),  # d = -0.05 boundary
])
def test_max_decrease(x, expected):
    base = runm("base", s__m=(0.50, 0.40, 0.60))
    assert verdict({"max_decrease": 0.05}, runm(s__m=(x, None, None)), base) == expected


# --------------------------------------------------------------------------- relative change

@pytest.mark.parametrize("x, expected", [
    (0.50, "pass"),   # r = 0
    (0.49, "pass"),   # r = -0.01 / 0.50 = -0.02 == bound -0.02: boundary passes
    (0.485, "fail"),  # r = -0.015 / 0.50 = -0.03 < -0.02
])
def test_min_relative_change_greater_is_better(x, expected):
    base = runm("base", s__m=(0.50, 0.40, 0.60))
    assert verdict({"min_relative_change": -0.02}, runm(s__m=(x, None, None)), base) == expected


@pytest.mark.parametrize("x, expected", [
    (10.4, "pass"),  # perplexity, lower is better: r = 0.4 / 10 = +0.04 <= +0.05
    (10.6, "fail"),  # r = +0.06 > +0.05
    (10.5, "pass"),  # r = +0.05 boundary
    (9.0, "pass"),   # r = -0.10: better
])
def test_min_relative_change_lower_is_better(x, expected):
    base = runm("base", s__m=(10.0, None, None))
    rule = {"min_relative_change": -0.05, "greater_is_better": False}
    assert verdict(rule, runm(s__m=(x, None, None)), base) == expected


def test_relative_change_divides_by_the_absolute_baseline():
    """A greater-is-better log-likelihood: b = -2.0, x = -1.9: d = +0.1, r = 0.1 / |-2.0| = +0.05,
    an improvement; dividing by b itself would give -0.05 and wrongly fail min 0.04."""
    res = evaluate_rule(0, GateRule(metric="s/m", min_relative_change=0.04),
                        runm(s__m=(-1.9, None, None)), runm("base", s__m=(-2.0, None, None)))
    assert res.observed == pytest.approx(0.05) and res.verdict == "pass"


def test_relative_change_on_upper_bound():
    """Lower-is-better, run 0.11 in [0.09, 0.13], baseline 0.10, min_relative_change -0.15
    (may rise by 15%): value r = 0.01/0.10 = +0.10 pass; upper bound r = 0.03/0.10 = +0.30 fail."""
    run, base = runm(s__m=(0.11, 0.09, 0.13)), runm("base", s__m=(0.10, None, None))
    rule = {"min_relative_change": -0.15, "greater_is_better": False}
    assert verdict(rule, run, base) == "pass"
    assert verdict({**rule, "use": "upper_bound"}, run, base) == "fail"


def test_relative_change_from_zero_baseline_fails_with_reason():
    res = evaluate_rule(0, GateRule(metric="s/m", min_relative_change=-0.1),
                        runm(s__m=(0.0, None, None)), runm("base", s__m=(0.0, None, None)))
    assert res.verdict == "fail" and "baseline of 0" in res.reason and "min_change" in res.reason


# --------------------------------------------------------------------------- missing / null / errors

def test_missing_metric_fails_with_a_reason_and_a_suggestion():
    res = evaluate_rule(0, GateRule(metric="safety/attack_sucess", max=0.1,
                                    greater_is_better=False),
                        runm(safety__attack_success=(0.05, 0.02, 0.12)))
    assert res.verdict == "fail" and res.passed is False
    assert "not found" in res.reason and "did you mean safety/attack_success" in res.reason


def test_optional_missing_metric_is_skipped():
    res = evaluate_rule(0, GateRule(metric="honesty/abstention", min=0.5, optional=True),
                        runm(s__m=(0.5, None, None)))
    assert res.verdict == "skip" and res.passed is None and "optional" in res.reason


def test_metric_missing_from_the_baseline():
    run, base = runm(s__m=(0.5, None, None)), runm("base", other=(0.5, None, None))
    assert verdict({"min_change": 0.0}, run, base) == "fail"
    res = evaluate_rule(0, GateRule(metric="s/m", min_change=0.0), run, base)
    assert "baseline run" in res.reason
    assert verdict({"min_change": 0.0, "optional": True}, run, base) == "skip"


def test_null_value_fails_even_when_optional():
    """Present but null (NaN when measured) is a broken measurement, not an absent one."""
    run = runm(s__m=(None, None, None))
    assert verdict({"min": 0.0, "optional": True}, run) == "fail"
    assert verdict({"min_change": 0.0}, runm(s__m=(0.5, None, None)),
                   runm("base", s__m=(None, None, None))) == "fail"


def test_interval_bound_of_a_metric_without_interval_is_a_config_error():
    with pytest.raises(ConfigError, match=r"gates\[3\].*'s/m'.*no interval"):
        evaluate_rule(3, GateRule(metric="s/m", max=0.1, greater_is_better=False,
                                  use="upper_bound"), runm(s__m=0.05))


def test_change_rules_without_baseline_are_named_in_one_config_error():
    spec = GateSpec(gates=(GateRule(metric="a/x", min=0.1),
                           GateRule(metric="a/y", min_change=0.0),
                           GateRule(metric="a/z", max_increase=0.1, greater_is_better=False)))
    with pytest.raises(ConfigError) as e:
        evaluate_gates(spec, runm(a__x=(0.2, None, None)))
    assert "gates[1]" in str(e.value) and "gates[2]" in str(e.value) and "--baseline" in str(e.value)
    assert "gates[0]" not in str(e.value)


def test_overall_verdict():
    run = runm(a__x=(0.2, None, None))
    ok, bad = GateRule(metric="a/x", min=0.1), GateRule(metric="a/x", min=0.3)
    skip = GateRule(metric="a/missing", min=0.0, optional=True)
    assert evaluate_gates(GateSpec(gates=(ok, skip)), run).verdict == "pass"
    res = evaluate_gates(GateSpec(gates=(ok, bad, skip)), run)
    assert res.verdict == "fail" and res.counts == {"pass": 1, "fail": 1, "skip": 1}
    # Nothing evaluated: a gate that checked nothing must not pass.
    only_skips = evaluate_gates(GateSpec(gates=(skip,)), run)
    assert only_skips.verdict == "fail" and "no rule was evaluated" in only_skips.summary


def test_satisfies_tolerance_is_tight():
    assert satisfies(0.1 + 1e-13, "<=", 0.1)      # rounding-sized excess passes
    assert not satisfies(0.1 + 1e-6, "<=", 0.1)   # a real excess fails
    assert satisfies(-0.020000000000000018, ">=", -0.02)
