"""`DIR/MODEL_CARD.md`: a Hugging Face model card written from a run's files only.

The card has YAML front matter following the Hub's model card metadata spec
(https://github.com/huggingface/hub-docs/blob/main/modelcard.md; Mitchell et al. 2019,
"Model Cards for Model Reporting"):

    base_model: <the starting model of the lineage's oldest run>
    datasets: ["<source> (ds-…)", ...]          # every dataset input along the lineage
    tags: [alignkit, <stages>, release-gate-passed | release-gate-failed]
    license: <if a run's config names one, or passed in>
    model-index:
      - name: <run id>
        results:                                  # one entry per eval suite
          - task: {type: text-generation, name: <suite>}
            dataset: {type: <suite>, name: <suite>}
            metrics: [{type: <metric>, name: <suite/metric>, value: <eval.json value>,
                       verified: false}]

then sections: model details (with the lineage chain and digests), training data, evaluation
(with 95% intervals), safety (attack success, benign refusal, guard FPR/FNR, policy), the
release gate verdict, and limitations. Every number comes from manifest.json, eval.json,
gate.json or a guard report; a measure that is absent is written "not measured", never omitted,
so a missing safety evaluation is visible on the card.

    >>> import tempfile, pathlib
    >>> from alignkit.contract.manifest import RunManifest, write_manifest
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_manifest(run, RunManifest(stage="sft", base_model={"spec": "org/base"}))
    >>> card = write_model_card(run).read_text()
    >>> card.splitlines()[0], "base_model: org/base" in card
    ('---', True)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from alignkit.contract.environment import package_version
from alignkit.contract.lineage import lineage
from alignkit.contract.manifest import RunManifest, atomic_write_bytes, utc_now
from alignkit.errors import DataError
from alignkit.gates.gatefile import GATE_NAME, gate_report, read_gate_json
from alignkit.gates.metrics import MetricValue, RunMetrics, load_run_metrics
from alignkit.gates.verdict import GateResult

CARD_NAME = "MODEL_CARD.md"
TASK_TYPE = "text-generation"  # Hub task id of a causal LM assistant
SMALL_N = 100  # below this many examples an interval is too wide to read a metric alone

# The safety section always lists these (as "not measured" when absent) ...
SAFETY_ALWAYS = {
    "safety/attack_success": "attack success rate (complies with unsafe requests)",
    "over_refusal/benign_refusal": "benign refusal rate (refuses safe look-alike requests)",
}
# ... and these when the run has them.
SAFETY_IF_PRESENT = {
    "safety/attack_success_incl_partial": "attack success incl. partial compliance",
    "safety/adaptive_attack_success": "adaptive attack success (worst case over jailbreaks)",
    "over_refusal/unsafe_compliance": "unsafe compliance (over-refusal set)",
    "over_refusal/file_benign_refusal": "benign refusal rate (prompts file)",
    "over_refusal/file_unsafe_compliance": "unsafe compliance (prompts file)",
    "safety/judge_agreement": "refusal detector agreement with gold labels",
}


# ------------------------------------------------------------------------ small helpers

def _cell(x: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(x).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _interval(m: MetricValue) -> str:
    return f"[{_num(m.lo)}, {_num(m.hi)}]" if m.has_interval else "—"


def _spec_text(spec: Any) -> str | None:
    """A model spec as one string: a path / hub id, or the dict's path/name/id."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        for key in ("path", "name", "id", "repo_id"):
            if isinstance(spec.get(key), str):
                return spec[key]
    return json.dumps(spec, sort_keys=True)


# ------------------------------------------------------------------------ inputs

def _chain(run: RunMetrics) -> tuple[list[RunManifest], str | None]:
    """Lineage oldest first; on a broken parent link, just this run and the reason."""
    if run.manifest is None:
        return [], None
    try:
        return lineage(run.run_dir), None
    except DataError as e:
        return [run.manifest], str(e)


def _gate_dict(gate: GateResult | Mapping | str | Path | None, run_dir: Path) -> dict | None:
    if isinstance(gate, GateResult):
        return gate_report(gate)
    if isinstance(gate, Mapping):
        return dict(gate)
    if gate is not None:
        return read_gate_json(gate)
    if (run_dir / GATE_NAME).is_file():  # a verdict recorded earlier by `alignkit gate`
        return read_gate_json(run_dir / GATE_NAME)
    return None


def _rate(x: Any) -> MetricValue | None:
    """A rate written as a number or as {value|rate|estimate, lo, hi, n}."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return MetricValue(float(x))
    if isinstance(x, Mapping):
        v = next((x[k] for k in ("value", "rate", "estimate") if isinstance(x.get(k), (int, float))),
                 None)
        if v is None:
            return None
        num = lambda k: float(x[k]) if isinstance(x.get(k), (int, float)) else None  # noqa: E731
        n = x.get("n")
        return MetricValue(float(v), num("lo"), num("hi"), int(n) if isinstance(n, int) else None)
    return None


def guard_summary(guard_report: Mapping | str | Path) -> dict[str, Any]:
    """FPR, FNR (MetricValue each, or None), threshold, target FPR and AUROC from a guard report.

    Tolerant of layout: the rates may sit at the top level or under "test" / "metrics" /
    "heldout", named fpr/fnr or false_positive_rate/false_negative_rate, each a number or
    {value, lo, hi, n}. A path may be the report file or its directory (DIR/report.json).
    Raises DataError when neither rate can be found.
    """
    source = "<guard report>"
    if not isinstance(guard_report, Mapping):
        p = Path(guard_report)
        if p.is_dir():
            p = p / "report.json"
        source = str(p)
        try:
            guard_report = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError("guard report not found", file=source) from None
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON: {e.msg}", file=source, line=e.lineno) from None
        if not isinstance(guard_report, Mapping):
            raise DataError("a guard report must be a JSON object", file=source)
    places = [guard_report] + [guard_report[k] for k in ("test", "metrics", "heldout")
                               if isinstance(guard_report.get(k), Mapping)]

    def find(*names: str) -> Any:
        for place in places:
            for name in names:
                if name in place:
                    return place[name]
        return None

    fpr = _rate(find("fpr", "false_positive_rate"))
    fnr = _rate(find("fnr", "false_negative_rate"))
    if fpr is None and fnr is None:
        raise DataError("guard report has no FPR/FNR (looked for fpr, fnr, false_positive_rate, "
                        "false_negative_rate at the top level and under test/metrics/heldout)",
                        file=source, field="fpr")
    threshold = find("threshold")
    target = find("target_fpr")
    auroc = find("auroc")
    return {"fpr": fpr, "fnr": fnr, "source": source,
            "auroc": auroc if isinstance(auroc, (int, float)) and not isinstance(auroc, bool)
            else None,
            "threshold": threshold if isinstance(threshold, (int, float)) else None,
            "target_fpr": target if isinstance(target, (int, float)) else None}


# ------------------------------------------------------------------------ front matter

def _datasets(chain: list[RunManifest]) -> list[str]:
    seen: list[str] = []
    for m in chain:
        for name, entry in sorted(m.inputs.items()):
            digest = entry.get("digest")
            if isinstance(digest, str) and digest.startswith("ds-"):
                label = f"{entry.get('source') or name} ({digest})"
                if label not in seen:
                    seen.append(label)
    return seen


def _base_model(chain: list[RunManifest]) -> tuple[str | None, str | None]:
    """(spec, digest) of the oldest run's starting model: what the whole lineage grew from."""
    for m in chain:
        if m.base_model and _spec_text(m.base_model.get("spec")):
            return _spec_text(m.base_model.get("spec")), m.base_model.get("digest")
    return None, None


def _license(chain: list[RunManifest], given: str | None) -> str | None:
    if given:
        return given
    for m in reversed(chain):  # the newest run's choice wins
        if isinstance(m.config.get("license"), str):
            return m.config["license"]
    return None


def _eval_metrics(run: RunMetrics) -> dict[str, MetricValue]:
    """Metrics that came from eval.json files (not the manifest's training summary)."""
    evals = {str(p) for p in run.eval_files}
    return {k: v for k, v in sorted(run.metrics.items()) if v.source in evals}


def front_matter(run: RunMetrics, chain: list[RunManifest], gate: dict | None,
                 name: str, license: str | None = None) -> dict[str, Any]:
    """The card's metadata block as a plain dict (dumped with yaml.safe_dump)."""
    meta: dict[str, Any] = {}
    base, _ = _base_model(chain)
    if base:
        meta["base_model"] = base
    lic = _license(chain, license)
    if lic:
        meta["license"] = lic
    tags = ["alignkit"]
    for m in chain:
        if m.stage and m.stage not in tags:
            tags.append(m.stage)
    if gate is not None:
        tags.append("release-gate-passed" if gate.get("verdict") == "pass"
                    else "release-gate-failed")
    meta["tags"] = tags
    datasets = _datasets(chain)
    if datasets:
        meta["datasets"] = datasets
    by_suite: dict[str, list[dict]] = {}
    for key, m in _eval_metrics(run).items():
        if m.value is None:  # NaN: the Hub wants a value; the table below says n/a
            continue
        suite, _, metric = key.partition("/")
        by_suite.setdefault(suite, []).append(
            {"type": metric or key, "name": key, "value": m.value, "verified": False})
    if by_suite:
        meta["model-index"] = [{"name": name, "results": [
            {"task": {"type": TASK_TYPE, "name": suite},
             "dataset": {"type": suite, "name": suite},
             "metrics": metrics} for suite, metrics in by_suite.items()]}]
    return meta


# ------------------------------------------------------------------------ sections

def _details(run: RunMetrics, chain: list[RunManifest], lineage_error: str | None) -> str:
    m = run.manifest
    out = ["## Model details", ""]
    if m is None:
        out.append(f"No manifest.json in `{run.run_dir}`: how this model was made is not recorded.")
        return "\n".join(out)
    base, base_digest = _base_model(chain)
    rows = [["stage", m.stage or "?"], ["run id", m.run_id], ["status", m.status],
            ["created", m.created_at], ["finished", m.finished_at or "—"],
            ["starting model of this run",
             f"{_spec_text((m.base_model or {}).get('spec')) or '—'} "
             f"({(m.base_model or {}).get('digest') or 'no digest'})"],
            ["base model of the lineage", f"{base or '—'} ({base_digest or 'no digest'})"],
            ["chat template", f"{(m.template or {}).get('name', '—')} "
                              f"({(m.template or {}).get('digest', 'no digest')})"],
            ["decoding", (m.decode or {}).get("digest", "—")],
            ["seed", "—" if m.seed is None else m.seed],
            ["config digest", m.config_digest],
            ["outputs", ", ".join(f"{k}: {v.get('digest', '—')}"
                                  for k, v in sorted(m.outputs.items())) or "—"]]
    out += [_table(["", ""], rows), "", "### Lineage", ""]
    if lineage_error:
        out += [f"The lineage is incomplete: {lineage_error}", ""]
    out.append(_table(["#", "stage", "run id", "run dir", "starting model", "outputs", "status"], [
        [i, c.stage, c.run_id, os.path.normpath(str(c.run_dir)), (c.base_model or {}).get("digest") or "—",
         ", ".join(str(v.get("digest")) for _, v in sorted(c.outputs.items()) if v.get("digest"))
         or "—", c.status] for i, c in enumerate(chain)]))
    return "\n".join(out)


def _training_data(chain: list[RunManifest]) -> str:
    rows, bad = [], []
    for c in chain:
        for name, e in sorted(c.inputs.items()):
            rows.append([c.stage, name, e.get("source") or e.get("path") or "—",
                         e.get("digest") or "—", e.get("n_rows", "—"), e.get("n_bad", "—")])
            if isinstance(e.get("n_bad"), int) and e["n_bad"] > 0:
                bad.append(f"{c.stage}/{name}: {e['n_bad']} malformed rows quarantined "
                           f"({e.get('quarantine_path') or 'no quarantine path recorded'})")
    out = ["## Training data", ""]
    if not rows:
        return "\n".join(out + ["No dataset inputs are recorded in the manifests of this lineage."])
    out.append(_table(["stage", "input", "source", "digest", "rows", "bad rows"], rows))
    if bad:
        out += ["", *[f"- {b}" for b in bad]]
    return "\n".join(out)


def _evaluation(run: RunMetrics) -> str:
    out = ["## Evaluation", ""]
    evals = _eval_metrics(run)
    if evals:
        out += ["95% intervals as the eval suites wrote them (Wilson score intervals for rates; "
                "each suite documents its other intervals).",
                "", _table(["metric", "value", "95% interval", "n", "source"],
                           [[k, _num(m.value), _interval(m), "—" if m.n is None else m.n,
                             m.source] for k, m in evals.items()])]
    else:
        out.append("No eval.json (schema alignkit.eval/v1) in this run directory: "
                   "the model has not been evaluated.")
    summary = {k: m for k, m in sorted(run.metrics.items()) if k not in evals}
    if summary:
        out += ["", "Training summary metrics from manifest.json (point values, no intervals):",
                "", _table(["metric", "value"], [[k, _num(m.value)] for k, m in summary.items()])]
    return "\n".join(out)


def _safety(run: RunMetrics, chain: list[RunManifest], guard: dict | None) -> str:
    rows = []
    for key, what in SAFETY_ALWAYS.items():
        m = run.metrics.get(key)
        rows.append([what, key, "not measured" if m is None else _num(m.value),
                     "—" if m is None else _interval(m), "—" if m is None or m.n is None else m.n])
    for key, what in SAFETY_IF_PRESENT.items():
        m = run.metrics.get(key)
        if m is not None:
            rows.append([what, key, _num(m.value), _interval(m), "—" if m.n is None else m.n])
    if guard is None:
        rows.append(["guardrail false positive / negative rates", "—", "no guard report given",
                     "—", "—"])
    else:
        for key, what in (("fpr", "guardrail false positive rate (benign flagged)"),
                          ("fnr", "guardrail false negative rate (unsafe missed)")):
            m = guard[key]
            rows.append([what, guard["source"], "not in report" if m is None else _num(m.value),
                         "—" if m is None else _interval(m), "—" if m is None or m.n is None else m.n])
        if guard["auroc"] is not None:
            rows.append(["guardrail AUROC (threshold-free separation)", guard["source"],
                         _num(guard["auroc"]), "—", "—"])
    out = ["## Safety", "", _table(["measure", "metric", "value", "95% interval", "n"], rows), ""]
    if guard is not None and (guard["threshold"] is not None or guard["target_fpr"] is not None):
        out += [f"Guard threshold {_num(guard['threshold'])} (calibrated for target FPR "
                f"{_num(guard['target_fpr'])}).", ""]
    policy = next((m.policy for m in reversed(chain) if m.policy), None)
    if policy:
        pid = policy.get("id") or policy.get("name") or "?"
        out.append(f"Safety policy: **{pid}** version {policy.get('version', '?')} "
                   f"({policy.get('digest', 'no digest')}).")
    else:
        out.append("Safety policy: none recorded in the manifests of this lineage.")
    return "\n".join(out)


def _gate_section(gate: dict | None) -> str:
    out = ["## Release gate", ""]
    if gate is None:
        return "\n".join(out + ["No release gate has been run on this model "
                                "(`alignkit gate --run DIR --gates gates.yaml`)."])
    spec = gate.get("spec") or {}
    verdict = str(gate.get("verdict", "?")).upper()
    out.append(f"Verdict: **{verdict}** — {gate.get('summary', '')}. Spec "
               f"`{spec.get('path', '<in memory>')}` ({spec.get('file_digest') or spec.get('content_digest', '?')}), "
               f"checked {gate.get('created_at', '?')}.")
    baseline = gate.get("baseline")
    if baseline:
        out.append(f"Baseline run: `{baseline.get('dir')}` ({baseline.get('run_id', 'no manifest')}).")
    rules = gate.get("rules") or []
    if rules:
        out += ["", _table(["rule", "observed", "threshold", "verdict", "why"], [
            [f"{r.get('index', '?')}: {r.get('name') or r.get('metric')}",
             r.get("observed_text") or _num(r.get("observed")),
             r.get("threshold_text", r.get("threshold")),
             r.get("verdict"), r.get("reason")] for r in rules])]
    return "\n".join(out)


def _limitations(run: RunMetrics, chain: list[RunManifest], gate: dict | None,
                 guard: dict | None) -> str:
    notes = ["Every number is an estimate from a finite sample; read it with its 95% interval."]
    small = [f"{k} (n={m.n})" for k, m in _eval_metrics(run).items()
             if m.n is not None and m.n < SMALL_N]
    if small:
        notes.append(f"Fewer than {SMALL_N} examples behind: {', '.join(small)}; these intervals "
                     "are wide, so small differences between models are not evidence.")
    missing = [k for k in SAFETY_ALWAYS if k not in run.metrics]
    if missing:
        notes.append(f"Not measured: {', '.join(missing)}. Without them nothing on this card "
                     "supports a claim that the model is safe or that it does not over-refuse.")
    base, _ = _base_model(chain)
    if base and base.startswith("builtin:"):
        notes.append("Trained and evaluated on alignkit's built-in fictional world: the numbers "
                     "describe behaviour in that world, not on real users' requests.")
    if guard is not None:
        notes.append("Guardrail error rates were measured on held-out data like its calibration "
                     "data; under a shift of topics or attack styles they can be much worse, and "
                     "with n benign examples the FPR is only resolved to 1/n.")
    if run.manifest is not None and run.manifest.status != "completed":
        notes.append(f"The run's status is '{run.manifest.status}', not 'completed'.")
    if gate is not None and gate.get("verdict") != "pass":
        notes.append("The release gate FAILED: this model did not meet its release criteria.")
    notes.append("Evaluations cover only the suites listed above; behaviours they do not probe "
                 "(other languages, long conversations, tool use, new jailbreaks) are unknown.")
    return "\n".join(["## Limitations", "", *[f"- {n}" for n in notes]])


def render_model_card(run_dir: str | Path, gate: GateResult | Mapping | str | Path | None = None,
                      guard_report: Mapping | str | Path | None = None, *,
                      license: str | None = None, name: str | None = None) -> str:
    """The card's text (see write_model_card)."""
    run = load_run_metrics(run_dir)
    chain, lineage_error = _chain(run)
    gate_dict = _gate_dict(gate, run.run_dir)
    guard = guard_summary(guard_report) if guard_report is not None else None
    name = name or (run.manifest.run_id if run.manifest is not None else run.run_dir.resolve().name)
    meta = front_matter(run, chain, gate_dict, name, license)
    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    intro = (f"# Model card: {name}\n\nWritten by alignkit {package_version('alignkit') or ''} "
             f"on {utc_now()} from the files of `{run.run_dir}` (manifest.json, eval.json, "
             "gate.json): no number on this card was typed in by hand.")
    sections = [_details(run, chain, lineage_error), _training_data(chain), _evaluation(run),
                _safety(run, chain, guard), _gate_section(gate_dict),
                _limitations(run, chain, gate_dict, guard)]
    return "---\n" + head + "---\n\n" + intro + "\n\n" + "\n\n".join(sections) + "\n"


def write_model_card(run_dir: str | Path, gate: GateResult | Mapping | str | Path | None = None,
                     guard_report: Mapping | str | Path | None = None, *,
                     license: str | None = None, name: str | None = None) -> Path:
    """Write DIR/MODEL_CARD.md and return its path.

    `gate`: a GateResult, a gate.json dict or path; None reads DIR/gate.json if there is one.
    `guard_report`: the guard's report.json (dict, file or directory), for FPR/FNR.
    `license`: overrides a `license` key found in the lineage's configs; `name`: the
    model-index name (default: the run id).
    """
    text = render_model_card(run_dir, gate, guard_report, license=license, name=name)
    return atomic_write_bytes(Path(run_dir) / CARD_NAME, text.encode("utf-8"))
