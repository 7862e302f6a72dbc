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
| overoptimization.json        | [{kl, proxy_reward, gold_reward}, ...], or per method (bon, ppo) lists d, proxy, gold (`parse_overopt`) |

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
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from alignkit.errors import ConfigError, DataError
from alignkit.report.model import LineageStep, RunData, number
from alignkit.report.parse import (collect_failures, parse_eval_metrics, parse_gate,
                                   parse_guard, parse_overopt)

EVAL_SCHEMA = "alignkit.eval/v1"  # the schema alignkit.evals.suite writes (not imported: no torch here)
SEARCH_DIRS = (".", "eval")  # where eval.json / samples.jsonl may sit, in order of preference
GUARD_FILES = ("guard_report.json", "guard/report.json", "report.json")
MAX_PROBLEMS_PER_FILE = 5  # a torn 10,000-line file should not flood the report
DEFAULT_MAX_FAILURES = 20  # failed samples kept per (run, suite)


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


# ----------------------------------------------------------------------------- lineage

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
