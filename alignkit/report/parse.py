"""Parsers for the files a run directory may hold, tolerant of how other stages spell things.

Each takes the parsed JSON (and the file name, and a list to append problems to) and returns
model objects; a part it cannot use is recorded as a problem naming file and field, never
raised. The accepted spellings are listed in each docstring (and in docs/report.md).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from alignkit.errors import DataError
from alignkit.report.model import (Estimate, EvalMetric, FailureSet, GateReport, GateRule,
                                   GuardReport, OveroptPoint, estimate, number)

# Fields that name a slice of the evaluation data (the eval framework's `slices` keys are
# added to these per suite).
KNOWN_SLICE_FIELDS = ("type", "category", "family", "slice", "label", "language", "source")
# A sample is a failure when a boolean field says so (first found wins) ...
PASS_FLAGS = ("passed", "pass", "ok", "correct", "success")
FAIL_FLAGS = ("failed", "failure", "is_failure", "attack_success", "broken", "hallucinated")
# ... or, without one, when its judgment is one of these (case-insensitive).
FAIL_JUDGMENTS = frozenset({
    "wrong", "incorrect", "fail", "failed", "failure", "unsafe", "harmful", "violation",
    "attack_success", "over_refusal", "overrefusal", "false_refusal", "hallucination",
    "hallucinated"})
PASS_JUDGMENTS = frozenset({"correct", "pass", "passed", "ok", "safe", "success"})


def _first(mapping: Mapping, keys: Iterable[str], default: Any = None) -> Any:
    for k in keys:
        if k in mapping and mapping[k] is not None:
            return mapping[k]
    return default


def parse_eval_metrics(raw: Mapping[str, Any], file: str, problems: list[str]) -> list[EvalMetric]:
    """The `metrics` mapping of an eval.json: "suite/metric" -> {value, lo, hi, n, slices},
    slices = {field: {slice value: {value, lo, hi, n}}}. A bare number is accepted as a value."""
    out = []
    for name, entry in sorted(raw.items()):
        est = estimate(entry)
        if est is None:
            problems.append(str(DataError("metric is neither a number nor {value, lo, hi, n}; "
                                          "skipped", file=file, field=f"metrics.{name}")))
            continue
        slices: dict[str, dict[str, Estimate]] = {}
        raw_slices = entry.get("slices") if isinstance(entry, Mapping) else None
        if isinstance(raw_slices, Mapping):
            for fld, groups in raw_slices.items():
                if isinstance(groups, Mapping):
                    parsed = {str(g): e for g, v in groups.items() if (e := estimate(v)) is not None}
                    if parsed:
                        slices[str(fld)] = parsed
        out.append(EvalMetric(str(name), est, slices))
    return out


def is_failure(sample: Mapping[str, Any]) -> bool | None:
    """True if the sample failed, False if it passed, None if it does not say.

    Checked in order: a boolean `passed`/`pass`/`ok`/`correct`/`success` (False = failed);
    a boolean `failed`/`failure`/`is_failure`/`attack_success`/`broken` (the safety suite and
    its adaptive attack)/`hallucinated` (honesty); a prompt `label` "safe" with a boolean `refused` (failed when
    refused: over-refusal) or "unsafe" with a boolean `complied` (failed when complied); then
    `judgment` (case-insensitive) in FAIL_JUDGMENTS (e.g. "wrong", "unsafe") or PASS_JUDGMENTS.
    """
    for k in PASS_FLAGS:
        if isinstance(sample.get(k), bool):
            return not sample[k]
    for k in FAIL_FLAGS:
        if isinstance(sample.get(k), bool):
            return sample[k]
    label = str(sample.get("label", "")).lower()
    if label in ("safe", "benign") and isinstance(sample.get("refused"), bool):
        return sample["refused"]
    if label == "unsafe" and isinstance(sample.get("complied"), bool):
        return sample["complied"]
    judgment = sample.get("judgment")
    if isinstance(judgment, str):
        j = judgment.strip().lower()
        if j in FAIL_JUDGMENTS:
            return True
        if j in PASS_JUDGMENTS:
            return False
    return None


def collect_failures(samples: Iterable[Mapping[str, Any]], max_per_suite: int,
                     slice_fields: Mapping[str, Sequence[str]] | None = None) -> dict[str, FailureSet]:
    """Per suite: counts of samples and failures, and the first `max_per_suite` failures.

    `slice_fields` maps a suite to the fields its eval.json slices by; KNOWN_SLICE_FIELDS
    present in a kept sample are added, so the failure browser can filter by them.
    """
    sets: dict[str, FailureSet] = {}
    for s in samples:
        suite = str(s.get("suite") or "(no suite)")
        fs = sets.setdefault(suite, FailureSet(suite))
        fs.total += 1
        verdict = is_failure(s)
        if verdict is None:
            fs.undecided += 1
        elif verdict:
            fs.failed += 1
            if len(fs.shown) < max_per_suite:
                fs.shown.append(dict(s))
    for suite, fs in sets.items():
        wanted = list((slice_fields or {}).get(suite, ())) + list(KNOWN_SLICE_FIELDS)
        present = [f for f in dict.fromkeys(wanted)
                   if any(isinstance(s.get(f), (str, int, float, bool)) for s in fs.shown)]
        fs.slice_fields = present
    return dict(sorted(sets.items()))


def _rule_passed(x: Any) -> bool | None:
    if isinstance(x, bool):
        return x
    if isinstance(x, str):
        w = x.strip().lower()
        if w in ("pass", "passed", "ok", "true", "green", "go", "release"):
            return True
        if w in ("fail", "failed", "false", "red", "block", "blocked", "no-go", "no_go"):
            return False
    return None


def _fmt(x: Any) -> str:
    """A number (4 significant digits), an estimate dict, or text, for a gate table cell."""
    if number(x) is not None:
        return f"{number(x):.4g}"
    est = estimate(x) if isinstance(x, Mapping) else None
    if est is not None and est.value is not None:
        return f"{est.value:.4g}"
    return "–" if x is None else str(x)


def parse_gate(raw: Any, file: str, problems: list[str]) -> GateReport | None:
    """gate.json, read tolerantly (alignkit.gates writes schema "alignkit.gate/v1").

    Overall verdict: the first of `verdict`, `overall`, `result`, `status`, `passed`, `pass`
    (a bool, or a word such as "pass"/"fail"; given as a dict, its own `verdict`/`passed`);
    `summary` is shown when present. Rules: the first of `rules`, `gates`, `results`, `checks`,
    `criteria` — a list of objects or a mapping name -> object. Per rule:
    name: `name`/`id` (else the mapping key, else the metric); `metric`;
    observed: `observed_text`, else `observed`/`value`/`actual` (number or {value, lo, hi});
    interval: `run_metric` {value, lo, hi, n}, or `observed` when it is such a dict;
    threshold: `threshold_text`, else op (`op`/`operator`/`comparison.op`/`direction`) and
    bound (`comparison.bound`/`threshold`/`limit`/`bound`);
    result: `passed`/`pass`/`ok` (bool; null = skipped), else `verdict` ("pass"/"fail"/"skip");
    reason: `reason`/`why`/`message`/`detail`.
    Without an overall verdict the run passes when every rule passed ("derived" in the report).
    """
    if not isinstance(raw, Mapping):
        problems.append(str(DataError(f"gate file must be a JSON object, got {type(raw).__name__}",
                                      file=file)))
        return None
    rules_raw = _first(raw, ("rules", "gates", "results", "checks", "criteria"), [])
    items: list[tuple[str | None, Any]]
    if isinstance(rules_raw, Mapping):
        items = list(rules_raw.items())
    elif isinstance(rules_raw, list):
        items = [(None, r) for r in rules_raw]
    else:
        problems.append(str(DataError("rules must be a list or a mapping; ignored",
                                      file=file, field="rules")))
        items = []
    rules = []
    for i, (key, r) in enumerate(items):
        if not isinstance(r, Mapping):
            problems.append(str(DataError("rule is not an object; skipped", file=file,
                                          field=f"rules[{key if key is not None else i}]")))
            continue
        metric = _first(r, ("metric",))
        comparison = r.get("comparison") if isinstance(r.get("comparison"), Mapping) else {}
        op = _first(r, ("op", "operator", "direction")) or comparison.get("op") or (
            r.get("comparison") if isinstance(r.get("comparison"), str) else None)
        bound = _first(comparison, ("bound",)) if comparison else None
        bound = bound if bound is not None else _first(r, ("threshold", "limit", "bound"))
        threshold = r.get("threshold_text") or " ".join(
            p for p in (str(op) if op else "", _fmt(bound) if bound is not None else "") if p) or "–"
        observed_raw = _first(r, ("observed", "value", "actual"))
        interval = estimate(r.get("run_metric")) if isinstance(r.get("run_metric"), Mapping) else (
            estimate(observed_raw) if isinstance(observed_raw, Mapping) else None)
        flag = _first(r, ("passed", "pass", "ok"))
        word = r.get("verdict")
        passed = _rule_passed(flag) if flag is not None else _rule_passed(word)
        verdict = str(word) if isinstance(word, str) else (
            {True: "pass", False: "fail"}.get(passed, "skip" if "passed" in r else "unknown"))
        rules.append(GateRule(
            name=str(_first(r, ("name", "id"), key if key is not None else metric or f"rule {i + 1}")),
            metric=None if metric is None else str(metric),
            observed=str(r.get("observed_text") or _fmt(observed_raw)),
            interval=interval, threshold=str(threshold), passed=passed, verdict=verdict,
            reason=str(_first(r, ("reason", "why", "message", "detail"), ""))))
    overall = _first(raw, ("verdict", "overall", "result", "status", "passed", "pass"))
    if isinstance(overall, Mapping):
        overall = _first(overall, ("verdict", "passed", "pass", "result"))
    passed = _rule_passed(overall)
    derived = False
    if overall is None and rules:
        derived = True
        states = [r.passed for r in rules if r.verdict != "skip"]
        passed = False if False in states else (True if states and all(states) else None)
    verdict = {True: "pass", False: "fail"}.get(passed) if passed is not None else (
        None if overall is None else str(overall))
    return GateReport(verdict, passed, rules, derived, str(raw.get("summary") or ""))


def _curve(raw: Any, x_keys: Sequence[str], y_keys: Sequence[str]) -> list[tuple[float, float]]:
    """Points from a list of objects, a list of [x, y] pairs, or {x_key: [...], y_key: [...]}."""
    pts: list[tuple[Any, Any]] = []
    if isinstance(raw, Mapping):
        xs, ys = _first(raw, x_keys), _first(raw, y_keys)
        if isinstance(xs, list) and isinstance(ys, list):
            pts = list(zip(xs, ys))
    elif isinstance(raw, list):
        for p in raw:
            if isinstance(p, Mapping):
                pts.append((_first(p, x_keys), _first(p, y_keys)))
            elif isinstance(p, (list, tuple)) and len(p) >= 2:
                pts.append((p[0], p[1]))
    return [(number(x), number(y)) for x, y in pts if number(x) is not None and number(y) is not None]


def _guard_rates(entry: Mapping) -> dict[str, Estimate]:
    return {k: e for k in ("fpr", "fnr") if (e := estimate(entry.get(k))) is not None}


def _guard_slices(raw: Mapping) -> dict[str, dict[str, Estimate]]:
    """{value: {fpr, fnr}} as is, or {field: {value: {fpr, fnr}}} as "field=value" keys."""
    out: dict[str, dict[str, Estimate]] = {}
    for key, entry in sorted(raw.items()):
        if not isinstance(entry, Mapping):
            continue
        if "fpr" in entry or "fnr" in entry:
            if rates := _guard_rates(entry):
                out[str(key)] = rates
            continue
        for value, sub in sorted(entry.items()):
            if isinstance(sub, Mapping) and (rates := _guard_rates(sub)):
                out[f"{key}={value}"] = rates
    return out


def parse_guard(raw: Any, file: str, problems: list[str]) -> GuardReport | None:
    """A guardrail report, read tolerantly; None when the file is not one.

    Looked up at the top level, then under `metrics`/`test`/`heldout`: `fpr`, `fnr`,
    `precision` (a number or {value, lo, hi, n}; also `fpr_lo`/`fpr_hi`),
    `auprc`/`average_precision`/`ap`, `auroc`/`roc_auc`/`auc`, `threshold`, `target_fpr`,
    `base_rate`; `slices`: {field: {value: {fpr, fnr}}} (alignkit.guard.report/v1) or
    {value: {fpr, fnr}}. Curves: `roc`/`roc_points`/`roc_curve` with points
    {fpr, tpr} or [fpr, tpr] or {"fpr": [...], "tpr": [...]}; `pr`/`pr_points`/`pr_curve`/
    `precision_recall` with {recall, precision} or [recall, precision] or column lists.
    """
    if not isinstance(raw, Mapping):
        return None
    scopes = [raw] + [raw[k] for k in ("metrics", "test", "heldout") if isinstance(raw.get(k), Mapping)]

    def look(keys: Sequence[str]) -> Any:
        for scope in scopes:
            v = _first(scope, keys)
            if v is not None:
                return v
        return None

    def rate(name: str) -> Estimate | None:
        est = estimate(look((name,)))
        if est is not None and est.lo is None and est.hi is None:
            est.lo, est.hi = number(look((f"{name}_lo",))), number(look((f"{name}_hi",)))
        return est

    roc = _curve(look(("roc", "roc_points", "roc_curve")), ("fpr", "x"), ("tpr", "y"))
    pr = _curve(look(("pr", "pr_points", "pr_curve", "precision_recall")),
                ("recall", "x"), ("precision", "y"))
    fpr, fnr = rate("fpr"), rate("fnr")
    if fpr is None and fnr is None and not roc and not pr:
        return None
    raw_slices = raw.get("slices")
    slices = _guard_slices(raw_slices) if isinstance(raw_slices, Mapping) else {}
    return GuardReport(fpr=fpr, fnr=fnr,
                       auprc=number(look(("auprc", "average_precision", "ap"))),
                       auroc=number(look(("auroc", "roc_auc", "auc"))),
                       threshold=number(look(("threshold",))), roc=roc, pr=pr,
                       target_fpr=number(look(("target_fpr",))), precision=rate("precision"),
                       base_rate=number(look(("base_rate",))), slices=slices)


OVEROPT_METHODS = ("bon", "ppo")  # per-method blocks of `alignkit study overoptimization`


def parse_overopt(raw: Any, file: str, problems: list[str]) -> list[OveroptPoint]:
    """overoptimization.json, in either shape; points sorted by (method, KL).

    - a list (or {"points": list}) of {kl, proxy_reward, gold_reward} (also `proxy`/`gold`);
      points without a finite KL are skipped;
    - the study's file (`alignkit.studies.overoptimization`): per method ("bon", "ppo") the
      parallel lists `d`, `proxy`, `gold` with d = sqrt(KL), read as points with
      kl = d² and `method` set; lists of different lengths are a problem (method skipped).
    """
    if isinstance(raw, Mapping) and any(isinstance(raw.get(m), Mapping) for m in OVEROPT_METHODS):
        return _parse_overopt_methods(raw, file, problems)
    if isinstance(raw, Mapping):
        raw = raw.get("points")
    if not isinstance(raw, list):
        problems.append(str(DataError("expected a list of {kl, proxy_reward, gold_reward}",
                                      file=file)))
        return []
    pts = []
    for i, p in enumerate(raw):
        kl = number(p.get("kl")) if isinstance(p, Mapping) else None
        if kl is None:
            problems.append(str(DataError("point has no finite kl; skipped", file=file,
                                          field=f"[{i}].kl")))
            continue
        pts.append(OveroptPoint(kl, number(_first(p, ("proxy_reward", "proxy"))),
                                number(_first(p, ("gold_reward", "gold")))))
    return sorted(pts, key=lambda p: p.kl)


def _parse_overopt_methods(raw: Mapping, file: str, problems: list[str]) -> list[OveroptPoint]:
    pts = []
    for method in OVEROPT_METHODS:
        block = raw.get(method)
        if block is None:
            continue
        lists = {k: block.get(k) if isinstance(block, Mapping) else None
                 for k in ("d", "proxy", "gold")}
        bad = [k for k, v in lists.items() if not isinstance(v, list)]
        if bad:
            problems.append(str(DataError(f"expected lists d, proxy, gold; {', '.join(bad)} "
                                          "missing; method skipped", file=file, field=method)))
            continue
        if len({len(v) for v in lists.values()}) != 1:
            problems.append(str(DataError(
                "lists d, proxy, gold differ in length "
                f"({', '.join(f'{k}: {len(v)}' for k, v in lists.items())}); method skipped",
                file=file, field=method)))
            continue
        found = []
        for i, (d, proxy, gold) in enumerate(zip(lists["d"], lists["proxy"], lists["gold"])):
            d = number(d)
            if d is None or d < 0:
                problems.append(str(DataError("point has no finite d >= 0; skipped", file=file,
                                              field=f"{method}.d[{i}]")))
                continue
            found.append(OveroptPoint(d * d, number(proxy), number(gold), method))
        pts += sorted(found, key=lambda p: p.kl)
    return pts
