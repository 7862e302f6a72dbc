"""Read run directories into one data model for the report.

A run directory may hold any of the files below; each is read if present and skipped if not.
A file that exists but cannot be read (bad JSON, wrong shape) never stops the report: the run's
`problems` list records what and where (file, line, field), and the report shows that list.

| file (in RUN or RUN/eval/, first found)  | what is taken from it |
|---|---|
| manifest.json                | stage, status, run_id, metrics, base_model, inputs, outputs, parents (lineage) |
| metrics.jsonl                | one record per logged step (`step`, `loss`, `val/loss`, `rewards/margins`, `kl`, ...) |
| eval.json                    | `metrics`: "suite/metric" -> {value, lo, hi, n, slices} (alignkit.eval/v1) |
| samples.jsonl                | per example: suite, prompt, slice fields, response, judgment, why |
| gate.json                    | overall verdict and per-rule results (key spellings: see `parse_gate`) |
| report.json / guard_report.json / guard/report.json | guardrail FPR/FNR with intervals, ROC, PR, AUPRC (`parse_guard`) |
| overoptimization.json        | [{kl, proxy_reward, gold_reward}, ...] |

Files written by other stages are read tolerantly: the spellings accepted are listed in each
parser's docstring, so a new writer can check it will be read.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\\n{"step": 2, "loss": 1.5}\\n')
    >>> run = collect_run(d)
    >>> [r["loss"] for r in run.history], run.manifest is None
    ([2.0, 1.5], True)
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from alignkit.errors import ConfigError, DataError

EVAL_SCHEMA = "alignkit.eval/v1"  # the schema alignkit.evals.suite writes (not imported: no torch here)
SEARCH_DIRS = (".", "eval")  # where eval.json / samples.jsonl may sit, in order of preference
GUARD_FILES = ("guard_report.json", "guard/report.json", "report.json")
MAX_PROBLEMS_PER_FILE = 5  # a torn 10,000-line file should not flood the report
DEFAULT_MAX_FAILURES = 20  # failed samples kept per (run, suite)
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


# ----------------------------------------------------------------------------- data model

@dataclass
class Estimate:
    """A number with its 95% interval and sample size (any part may be missing)."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int | None = None


@dataclass
class EvalMetric:
    """One "suite/metric" entry of eval.json, with its per-slice estimates."""

    name: str
    estimate: Estimate
    slices: dict[str, dict[str, Estimate]] = field(default_factory=dict)  # field -> value -> est

    @property
    def suite(self) -> str:
        return self.name.split("/", 1)[0] if "/" in self.name else ""


@dataclass
class GateRule:
    name: str
    metric: str | None
    observed: str  # as the gate wrote it ("0.25", "+0.03 (0.5 vs base 0.47)") or formatted here
    interval: Estimate | None  # the run's metric with its interval, when the gate recorded it
    threshold: str  # "<= 0.1", "change >= -0.02", ...
    passed: bool | None  # None: skipped or unknown
    verdict: str  # "pass" | "fail" | "skip" | the file's own word | "unknown"
    reason: str


@dataclass
class GateReport:
    verdict: str | None  # "pass" | "fail" | the file's own word when it is neither
    passed: bool | None
    rules: list[GateRule]
    derived: bool = False  # verdict worked out from the rules because the file gave none
    summary: str = ""  # e.g. "2 passed, 0 failed, 1 skipped"


@dataclass
class GuardReport:
    fpr: Estimate | None
    fnr: Estimate | None
    auprc: float | None
    auroc: float | None
    threshold: float | None
    roc: list[tuple[float, float]]  # (fpr, tpr), in file order
    pr: list[tuple[float, float]]  # (recall, precision), in file order
    target_fpr: float | None = None
    precision: Estimate | None = None
    base_rate: float | None = None  # AUPRC of a random scorer (share of unsafe texts)
    slices: dict[str, dict[str, Estimate]] = field(default_factory=dict)  # value -> {"fpr"/"fnr": est}


@dataclass
class OveroptPoint:
    kl: float
    proxy_reward: float | None
    gold_reward: float | None


@dataclass
class LineageStep:
    stage: str
    run_id: str
    run_dir: str
    status: str
    base_model: str | None  # digest
    inputs: dict[str, str]  # name -> digest
    outputs: dict[str, str]  # name -> digest


@dataclass
class FailureSet:
    """Failed samples of one suite: how many were judged, how many failed, the first few."""

    suite: str
    total: int = 0
    failed: int = 0
    undecided: int = 0  # samples with no pass/fail signal (see `is_failure`)
    shown: list[dict] = field(default_factory=list)
    slice_fields: list[str] = field(default_factory=list)


@dataclass
class RunData:
    """Everything the report shows about one run directory."""

    path: Path
    name: str
    manifest: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_model: str = ""
    metrics: list[EvalMetric] = field(default_factory=list)
    failures: dict[str, FailureSet] = field(default_factory=dict)
    gate: GateReport | None = None
    guard: GuardReport | None = None
    overopt: list[OveroptPoint] = field(default_factory=list)
    lineage: list[LineageStep] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # what -> file it was read from
    problems: list[str] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return str((self.manifest or {}).get("stage") or "?")

    @property
    def status(self) -> str:
        return str((self.manifest or {}).get("status") or "unknown")

    def metric(self, name: str) -> EvalMetric | None:
        return next((m for m in self.metrics if m.name == name), None)


# ----------------------------------------------------------------------------- small helpers

def number(x: Any) -> float | None:
    """`x` as a finite float, or None (bools, strings, NaN and infinities are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def estimate(x: Any) -> Estimate | None:
    """A number, or a dict {value, lo, hi, n} (also `ci: [lo, hi]`), as an Estimate."""
    if number(x) is not None:
        return Estimate(number(x))
    if not isinstance(x, Mapping):
        return None
    lo, hi = x.get("lo"), x.get("hi")
    ci = x.get("ci") or x.get("interval")
    if lo is None and hi is None and isinstance(ci, Sequence) and len(ci) == 2:
        lo, hi = ci
    n = x.get("n")
    return Estimate(number(x.get("value")), number(lo), number(hi),
                    int(n) if number(n) is not None else None)


def _first(mapping: Mapping, keys: Iterable[str], default: Any = None) -> Any:
    for k in keys:
        if k in mapping and mapping[k] is not None:
            return mapping[k]
    return default


def _read_json(path: Path, problems: list[str]) -> Any:
    """Parsed JSON of `path`, or None with the problem recorded (file, line, message)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        problems.append(str(DataError(f"not valid JSON ({e.msg}); file skipped",
                                      file=str(path), line=e.lineno)))
    except (OSError, UnicodeDecodeError) as e:
        problems.append(str(DataError(f"cannot be read ({e}); file skipped", file=str(path))))
    return None


def _read_jsonl(path: Path, problems: list[str]) -> list[dict]:
    """Objects of a JSON-lines file; bad lines are skipped and counted in `problems`
    (a run still being written may end in a torn line)."""
    rows: list[dict] = []
    bad: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    bad.append(str(DataError(f"not valid JSON ({e.msg}); line skipped",
                                             file=str(path), line=lineno)))
                    continue
                if not isinstance(row, dict):
                    bad.append(str(DataError(f"expected a JSON object, got "
                                             f"{type(row).__name__}; line skipped",
                                             file=str(path), line=lineno)))
                    continue
                rows.append(row)
    except OSError as e:
        problems.append(str(DataError(f"cannot be read ({e}); file skipped", file=str(path))))
    problems.extend(bad[:MAX_PROBLEMS_PER_FILE])
    if len(bad) > MAX_PROBLEMS_PER_FILE:
        problems.append(f"{path}: {len(bad) - MAX_PROBLEMS_PER_FILE} more bad lines skipped")
    return rows


def _find(run_dir: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        p = run_dir / name
        if p.is_file():
            return p
    return None


# ----------------------------------------------------------------------------- parsers

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


def parse_overopt(raw: Any, file: str, problems: list[str]) -> list[OveroptPoint]:
    """overoptimization.json: a list (or {"points": list}) of {kl, proxy_reward, gold_reward}
    (also `proxy`/`gold`); sorted by KL. Points without a finite KL are skipped."""
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


def _digests(entries: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v.get("digest")) for k, v in sorted(entries.items())
            if isinstance(v, Mapping) and v.get("digest")}


def _step(m: Mapping[str, Any], run_dir: Path | None) -> LineageStep:
    return LineageStep(stage=str(m.get("stage") or "?"), run_id=str(m.get("run_id") or "?"),
                       run_dir=_display(run_dir), status=str(m.get("status") or "unknown"),
                       base_model=(m.get("base_model") or {}).get("digest")
                       if isinstance(m.get("base_model"), Mapping) else None,
                       inputs=_digests(m.get("inputs") or {}),
                       outputs=_digests(m.get("outputs") or {}))


def _display(path: Path | None) -> str:
    # Absolute: the report is read from wherever it is opened, not from the cwd it was built in.
    return "?" if path is None else os.path.abspath(path)


def _read_manifest_and_lineage(run: RunData) -> None:
    from alignkit.contract.lineage import lineage
    from alignkit.contract.manifest import MANIFEST_NAME, read_manifest

    path = run.path / MANIFEST_NAME
    if not path.is_file():
        return
    run.sources["manifest"] = str(path)
    try:
        run.manifest = read_manifest(run.path).model_dump(mode="json")
    except DataError as e:
        # Still show what the file says (stage, status) when it parses but fails validation.
        run.problems.append(f"{e} (shown as read, not validated)")
        raw = _read_json(path, [])
        run.manifest = raw if isinstance(raw, dict) else None
    if run.manifest is None:
        return
    try:
        chain = lineage(run.path)
        run.lineage = [_step(m.model_dump(mode="json"), m.run_dir) for m in chain]
    except DataError as e:
        run.problems.append(f"lineage incomplete: {e}")
        run.lineage = [_step(run.manifest, run.path)]


# ----------------------------------------------------------------------------- entry points

def collect_run(path: str | Path, *, name: str | None = None,
                max_failures: int = DEFAULT_MAX_FAILURES) -> RunData:
    """Read one run directory. Raises DataError only when `path` is not a directory."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise DataError("not a run directory (it does not exist or is a file)", file=str(run_dir))
    run = RunData(path=run_dir, name=name or run_dir.name or str(run_dir))
    _read_manifest_and_lineage(run)

    if (p := _find(run_dir, ("metrics.jsonl",))) is not None:
        run.sources["metrics"] = str(p)
        rows = _read_jsonl(p, run.problems)
        for i, r in enumerate(rows):  # records without a step get their position
            if number(r.get("step")) is None:
                r["step"] = i + 1
        run.history = sorted(rows, key=lambda r: r["step"])

    eval_dir = None
    if (p := _find(run_dir, [f"{d}/eval.json" for d in SEARCH_DIRS])) is not None:
        eval_dir = p.parent
        run.sources["eval"] = str(p)
        raw = _read_json(p, run.problems)
        if isinstance(raw, Mapping):
            if raw.get("schema") != EVAL_SCHEMA:
                run.problems.append(str(DataError(
                    f"schema is {raw.get('schema')!r}, expected {EVAL_SCHEMA!r}; read anyway",
                    file=str(p), field="schema")))
            run.eval_model = str(raw.get("model") or "")
            metrics = raw.get("metrics")
            if isinstance(metrics, Mapping):
                run.metrics = parse_eval_metrics(metrics, str(p), run.problems)
            else:
                run.problems.append(str(DataError("no metrics mapping", file=str(p), field="metrics")))
        elif raw is not None:
            run.problems.append(str(DataError("eval.json must be a JSON object", file=str(p))))

    sample_names = ([str((eval_dir / "samples.jsonl").relative_to(run_dir))] if eval_dir else []) + \
        [f"{d}/samples.jsonl" for d in SEARCH_DIRS]
    if (p := _find(run_dir, sample_names)) is not None:
        run.sources["samples"] = str(p)
        slice_fields: dict[str, list[str]] = {}
        for m in run.metrics:
            slice_fields.setdefault(m.suite, []).extend(m.slices)
        run.failures = collect_failures(_read_jsonl(p, run.problems), max_failures, slice_fields)

    if (p := _find(run_dir, ("gate.json", "gate/gate.json"))) is not None:
        run.sources["gate"] = str(p)
        raw = _read_json(p, run.problems)
        if raw is not None:
            run.gate = parse_gate(raw, str(p), run.problems)

    for name_ in GUARD_FILES:
        p = run_dir / name_
        if p.is_file():
            guard = parse_guard(_read_json(p, run.problems), str(p), run.problems)
            if guard is not None:
                run.guard = guard
                run.sources["guard"] = str(p)
                break

    if (p := _find(run_dir, [f"{d}/overoptimization.json" for d in SEARCH_DIRS])) is not None:
        run.sources["overoptimization"] = str(p)
        raw = _read_json(p, run.problems)
        if raw is not None:
            run.overopt = parse_overopt(raw, str(p), run.problems)
    return run


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Short display names: the directory name, or as many trailing path parts as it takes to
    tell runs apart (runs/a/sft and runs/b/sft -> a/sft, b/sft)."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    for k in range(1, max((len(p) for p in parts), default=1) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]  # the same directory given twice


def collect_runs(paths: Sequence[str | Path], *,
                 max_failures: int = DEFAULT_MAX_FAILURES) -> list[RunData]:
    """Read several run directories (in the order given).

    Raises ConfigError when no directory is given and DataError naming the first path that is
    not a directory; anything missing or malformed inside a directory is only recorded.
    """
    if not paths:
        raise ConfigError("no run directories given: pass at least one RUN_DIR "
                          "(e.g. `alignkit report runs/sft runs/dpo --out report.html`)")
    if max_failures < 0:
        raise ConfigError(f"max_failures must be >= 0, got {max_failures}")
    dirs = [Path(p) for p in paths]
    return [collect_run(d, name=n, max_failures=max_failures)
            for d, n in zip(dirs, unique_names(dirs))]
