"""`DIR/gate.json`: the recorded verdict, pinned to the spec and the runs it judged.

    {
      "schema": "alignkit.gate/v1",
      "created_at": "2025-01-31T12:00:00+00:00",
      "alignkit_version": "0.1.0",
      "verdict": "pass" | "fail",
      "passed": true | false,
      "counts": {"pass": 2, "fail": 0, "skip": 1},
      "summary": "2 passed, 0 failed, 1 skipped",
      "spec": {"path", "sha256" (file bytes), "file_digest" ("file-…"),
               "content_digest" ("cfg-…" over the validated rules: formatting-proof),
               "description"},
      "run": {"dir", "run_id", "stage", "status", "config_digest", "outputs",
              "manifest_sha256", "eval_files": [{"path", "sha256"}]},
      "baseline": {... same ...} | null,
      "rules": [{"index", "name", "metric", "kind", "greater_is_better", "use", "bound_used",
                 "optional", "threshold", "comparison": {"op", "bound"}, "threshold_text",
                 "observed", "observed_text", "run_number", "baseline_number", "run_metric", "baseline_metric",
                 "verdict": "pass" | "fail" | "skip", "passed": true | false | null, "reason"}]
    }

`observed` is the quantity compared with `comparison.bound`: the run's number for `min`/`max`,
run - baseline for absolute change rules, (run - baseline)/|baseline| for relative ones.
A skipped (optional, absent) rule has `passed: null`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.contract.digest import digest_file, digest_obj, sha256_file
from alignkit.contract.environment import package_version
from alignkit.contract.manifest import atomic_write_bytes, utc_now
from alignkit.errors import DataError
from alignkit.gates.spec import GateSpec
from alignkit.gates.verdict import GateResult

GATE_SCHEMA = "alignkit.gate/v1"
GATE_NAME = "gate.json"


def spec_fingerprint(spec: GateSpec, path: str | Path | None = None) -> dict[str, Any]:
    """Digests of the spec: of the file's bytes (what was reviewed) and of its content."""
    out: dict[str, Any] = {"content_digest": digest_obj(spec.model_dump(mode="json"), "config"),
                           "description": spec.description}
    if path is not None:
        out.update(path=str(path), sha256=sha256_file(path), file_digest=digest_file(path))
    return out


def gate_report(result: GateResult, spec_path: str | Path | None = None) -> dict[str, Any]:
    """The gate.json object for a result (see the module docstring)."""
    return {
        "schema": GATE_SCHEMA,
        "created_at": utc_now(),
        "alignkit_version": package_version("alignkit"),
        "verdict": result.verdict,
        "passed": result.passed,
        "counts": result.counts,
        "summary": result.summary,
        "spec": spec_fingerprint(result.spec, spec_path),
        "run": result.run.identity(),
        "baseline": None if result.baseline is None else result.baseline.identity(),
        "rules": [r.to_json() for r in result.rules],
    }


def write_gate_json(run_dir: str | Path, report: dict[str, Any]) -> Path:
    """Atomically write DIR/gate.json; returns its path."""
    path = Path(run_dir) / GATE_NAME
    text = json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_gate_json(path: str | Path) -> dict[str, Any]:
    """A gate.json (file or run directory), schema-checked."""
    p = Path(path)
    if p.is_dir():
        p = p / GATE_NAME
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("no gate report found", file=str(p)) from None
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg}", file=str(p), line=e.lineno) from None
    if not isinstance(report, dict) or report.get("schema") != GATE_SCHEMA:
        got = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise DataError(f"schema is {got!r}, expected {GATE_SCHEMA!r}", file=str(p),
                        field="schema")
    return report
