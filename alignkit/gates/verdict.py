"""Gate arithmetic: one rule against a run's (and maybe a baseline's) metrics -> pass/fail/skip.

Notation: x is the run's number for the metric — its point estimate, or one end of its 95%
interval when the rule says `use: lower_bound | upper_bound | pessimistic` — and b is the
baseline run's point estimate of the same metric. s = +1 if greater is better, else -1.

| rule                    | observed quantity      | passes iff                               |
|-------------------------|------------------------|------------------------------------------|
| `min: t`                | x                      | x >= t                                   |
| `max: t`                | x                      | x <= t                                   |
| `min_change: t`         | d = x - b              | s·d >= t  (d >= t, or d <= -t)           |
| `max_increase: t`       | d = x - b              | d <= t    (lower-is-better metrics only) |
| `max_decrease: t`       | d = x - b              | d >= -t   (greater-is-better only)       |
| `min_relative_change: t`| r = (x - b) / abs(b)   | s·r >= t  (r >= t, or r <= -t)           |

Equality at the boundary passes. Two floats closer than 1e-9 relative (1e-12 absolute) count
as equal, so 0.3 - 0.2 (= 0.09999999999999998 in binary floating point) meets `min_change: 0.1`.

Why the baseline enters as its point estimate even when the run uses a bound: a pessimistic
comparison of two runs needs an interval of their *difference* measured on the same examples
(`alignkit.evals.stats.paired_bootstrap_diff`), which eval.json does not carry per pair of
runs. Where a suite reports such a difference (e.g. `tax/exact_match_delta`), gate it with an
absolute rule on its lower bound instead.

Outcomes: a metric absent from the run (or, for a change rule, from the baseline) fails the
rule with the reason, unless the rule is `optional: true`, which skips it. A metric present but
null (NaN when measured) always fails. A relative change from a baseline of 0 is undefined and
fails. The gate passes iff no rule failed and at least one rule was evaluated (a gate that
checked nothing must not release anything).
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Literal

from alignkit.errors import ConfigError
from alignkit.gates.metrics import MetricValue, RunMetrics, require_interval
from alignkit.gates.spec import ABSOLUTE_KINDS, GateRule, GateSpec

Verdict = Literal["pass", "fail", "skip"]
REL_TOL = 1e-9  # float rounding below this counts as equality at the boundary
ABS_TOL = 1e-12

BOUND_WORDS = {"value": "value", "lower_bound": "95% lower bound",
               "upper_bound": "95% upper bound"}


def fmt(x: float | None, signed: bool = False) -> str:
    """Six significant digits: enough that two numbers shown differently really differ."""
    if x is None:
        return "n/a"
    return f"{x:+.6g}" if signed else f"{x:.6g}"


def pct(x: float) -> str:
    """A relative change as a signed percentage, six significant digits: -0.02 -> '-2%'."""
    return f"{100 * x:+.6g}%"


def comparison(rule: GateRule) -> tuple[str, float]:
    """(operator, bound) that the rule's observed quantity must satisfy (module table)."""
    t = rule.threshold
    kind = rule.kind
    if kind == "min":
        return ">=", t
    if kind == "max":
        return "<=", t
    if kind == "max_increase":
        return "<=", t
    if kind == "max_decrease":
        return ">=", -t
    # min_change, min_relative_change: an improvement of at least t in the good direction.
    return (">=", t) if rule.greater_is_better else ("<=", -t)


def satisfies(observed: float, op: str, bound: float) -> bool:
    """observed `op` bound, with equality up to float rounding counted as passing."""
    if math.isclose(observed, bound, rel_tol=REL_TOL, abs_tol=ABS_TOL):
        return True
    return observed >= bound if op == ">=" else observed <= bound


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule, with every number that went into it."""

    index: int  # position in the spec's `gates` list, from 0
    rule: GateRule
    verdict: Verdict
    reason: str  # one sentence a release reviewer can act on
    observed: float | None = None  # the quantity compared: x, x - b or (x - b)/|b|
    op: str | None = None  # ">=" or "<="
    bound: float | None = None  # what `observed` is compared with (sign resolved)
    run_number: float | None = None  # x
    baseline_number: float | None = None  # b
    run_metric: MetricValue | None = None
    baseline_metric: MetricValue | None = None

    @property
    def passed(self) -> bool | None:
        """True / False, or None for a skipped rule."""
        return None if self.verdict == "skip" else self.verdict == "pass"

    @property
    def threshold_text(self) -> str:
        """How the table shows the threshold, e.g. '<= 0.1' or 'change <= +0.05'."""
        op, bound = comparison(self.rule)
        kind = self.rule.kind
        if kind in ABSOLUTE_KINDS:
            return f"{op} {fmt(bound)}"
        if kind == "min_relative_change":
            return f"relative change {op} {pct(bound)}"
        return f"change {op} {fmt(bound, signed=True)}"

    @property
    def observed_text(self) -> str:
        if self.observed is None:
            return "n/a"
        if self.rule.kind in ABSOLUTE_KINDS:
            return fmt(self.observed)
        what = f"{fmt(self.run_number)} vs base {fmt(self.baseline_number)}"
        if self.rule.kind == "min_relative_change":
            return f"{pct(self.observed)} ({what})"
        return f"{fmt(self.observed, signed=True)} ({what})"

    def to_json(self) -> dict[str, Any]:
        def metric_json(m: MetricValue | None) -> dict | None:
            return None if m is None else {"value": m.value, "lo": m.lo, "hi": m.hi, "n": m.n,
                                           "source": m.source}

        r = self.rule
        return {"index": self.index, "name": r.label, "metric": r.metric, "kind": r.kind,
                "greater_is_better": r.greater_is_better, "use": r.use, "bound_used": r.bound,
                "optional": r.optional, "threshold": r.threshold,
                "comparison": {"op": self.op, "bound": self.bound},
                "threshold_text": self.threshold_text, "observed": self.observed,
                "observed_text": self.observed_text,
                "run_number": self.run_number, "baseline_number": self.baseline_number,
                "run_metric": metric_json(self.run_metric),
                "baseline_metric": metric_json(self.baseline_metric),
                "verdict": self.verdict, "passed": self.passed, "reason": self.reason}


def _missing(metric: str, where: RunMetrics, role: str) -> str:
    known = sorted(where.metrics)
    near = difflib.get_close_matches(metric, known, n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    looked = [str(p) for p in where.eval_files] + (
        [str(where.run_dir / "manifest.json")] if where.manifest is not None else [])
    ignored = "".join(f"; ignored {p} ({why})" for p, why in where.ignored)
    return (f"metric {metric!r} not found in the {role} run {where.run_dir} "
            f"(read: {', '.join(looked) or 'nothing'}{ignored}){hint}")


def evaluate_rule(index: int, rule: GateRule, run: RunMetrics,
                  baseline: RunMetrics | None = None) -> RuleResult:
    """Apply one rule. ConfigError when the rule cannot be applied as written (an interval
    bound of a metric without interval; a change rule with no baseline)."""
    who = f"gates[{index}] ({rule.kind} on {rule.metric!r})"
    absent = "skip" if rule.optional else "fail"
    m = run.metrics.get(rule.metric)
    if m is None:
        return RuleResult(index, rule, absent, _missing(rule.metric, run, "evaluated")
                          + (" — optional rule skipped" if rule.optional else ""))
    if rule.bound != "value":
        require_interval(m, rule.metric, who)
    x = m.pick(rule.bound)
    if x is None:
        return RuleResult(index, rule, "fail", f"metric {rule.metric!r} is null in {m.source} "
                          "(it was NaN when measured)", run_metric=m)
    op, bound = comparison(rule)
    what = BOUND_WORDS[rule.bound]

    if not rule.needs_baseline:
        ok = satisfies(x, op, bound)
        if ok:
            reason = f"{what} {fmt(x)} is {'at least' if op == '>=' else 'at most'} {fmt(bound)}"
        else:
            reason = (f"{what} {fmt(x)} is {'below the minimum' if op == '>=' else 'above the maximum'}"
                      f" {fmt(bound)}")
        return RuleResult(index, rule, "pass" if ok else "fail", reason, x, op, bound, x,
                          run_metric=m)

    if baseline is None:
        raise ConfigError(f"{who} compares with a baseline run; pass --baseline BASE_DIR")
    bm = baseline.metrics.get(rule.metric)
    if bm is None:
        return RuleResult(index, rule, absent, _missing(rule.metric, baseline, "baseline")
                          + (" — optional rule skipped" if rule.optional else ""),
                          run_number=x, run_metric=m)
    b = bm.value
    if b is None:
        return RuleResult(index, rule, "fail", f"baseline metric {rule.metric!r} is null in "
                          f"{bm.source} (it was NaN when measured)", run_number=x,
                          run_metric=m, baseline_metric=bm)
    d = x - b
    if rule.kind == "min_relative_change":
        if b == 0:
            return RuleResult(index, rule, "fail", f"relative change from a baseline of 0 is "
                              "undefined; gate this metric with min_change instead",
                              None, op, bound, x, b, m, bm)
        observed = d / abs(b)
        change_words = f"relative change {pct(observed)}"
        bound_words = pct(bound)
    else:
        observed = d
        change_words = f"change {fmt(d, signed=True)}"
        bound_words = fmt(bound, signed=True)
    ok = satisfies(observed, op, bound)
    limit = "at least" if op == ">=" else "at most"
    reason = (f"{change_words} ({what} {fmt(x)} vs baseline {fmt(b)}) "
              f"{'meets' if ok else 'breaks'} the limit: {limit} {bound_words}")
    return RuleResult(index, rule, "pass" if ok else "fail", reason, observed, op, bound, x, b,
                      m, bm)


@dataclass
class GateResult:
    """Every rule's outcome plus what was read; `verdict` is the release decision."""

    spec: GateSpec
    rules: list[RuleResult]
    run: RunMetrics
    baseline: RunMetrics | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {v: sum(r.verdict == v for r in self.rules) for v in ("pass", "fail", "skip")}

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        c = self.counts
        return "pass" if c["fail"] == 0 and c["pass"] > 0 else "fail"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def summary(self) -> str:
        c = self.counts
        text = f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped"
        if c["pass"] == 0 and c["fail"] == 0:
            text += " (no rule was evaluated, so the gate fails)"
        return text


def evaluate_gates(spec: GateSpec, run: RunMetrics,
                   baseline: RunMetrics | None = None) -> GateResult:
    """Apply every rule of `spec`. All rules needing a baseline are named at once when
    `baseline` is None (ConfigError), before anything is evaluated."""
    if baseline is None:
        need = [f"gates[{i}] ({r.kind} on {r.metric!r})"
                for i, r in enumerate(spec.gates) if r.needs_baseline]
        if need:
            raise ConfigError(f"{'; '.join(need)} compare(s) with a baseline run; "
                              "pass --baseline BASE_DIR")
    return GateResult(spec, [evaluate_rule(i, r, run, baseline) for i, r in enumerate(spec.gates)],
                      run, baseline)
