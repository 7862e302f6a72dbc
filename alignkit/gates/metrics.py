"""The numbers a gate may use: a run directory's eval.json files and its manifest metrics.

Sources, in a run directory DIR:

- `DIR/eval.json` and `DIR/*/eval.json` (one level down, e.g. `DIR/eval/eval.json`), schema
  "alignkit.eval/v1": `metrics` maps "suite/metric" -> {"value", "lo", "hi", "n", "slices"};
- `DIR/manifest.json` (RunManifest): `metrics` is a flat name -> number map, no intervals.

All are merged into one name -> MetricValue map. A name defined twice with different numbers
(two eval.json files, or an eval.json and the manifest) is a DataError naming both files: a
gate must never pick one of two disagreeing measurements silently. An `eval.json` with no
`schema` field is a report from before v1 (reward, prefer and SFT runs made before those
stages switched to v1 wrote such files); it is skipped and listed in `ignored`, so a rule on one
of its metrics fails as "missing" with the reason shown. Any other schema is an error.

Only json, pathlib and alignkit.contract are used: importing this module never imports torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignkit.contract.digest import sha256_file
from alignkit.contract.manifest import MANIFEST_NAME, RunManifest, read_manifest
from alignkit.errors import ConfigError, DataError

# Must equal alignkit.evals.suite.EVAL_SCHEMA (a test checks); not imported from there because
# alignkit.evals pulls the world and numpy, and a gate reads files only.
EVAL_SCHEMA = "alignkit.eval/v1"
EVAL_NAME = "eval.json"


@dataclass(frozen=True)
class MetricValue:
    """One measured number with its 95% interval (None where the source has none)."""

    value: float | None  # None: the metric was computed as NaN (eval.json writes null)
    lo: float | None = None
    hi: float | None = None
    n: int | None = None  # examples behind the estimate
    source: str = ""  # the file it was read from

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None

    def pick(self, bound: Literal["value", "lower_bound", "upper_bound"]) -> float | None:
        """The point estimate or one end of the interval."""
        return {"value": self.value, "lower_bound": self.lo, "upper_bound": self.hi}[bound]

    def agrees_with(self, other: "MetricValue") -> bool:
        """Same value, and the same interval where both have one."""
        if self.value != other.value:
            return False
        if self.has_interval and other.has_interval:
            return (self.lo, self.hi) == (other.lo, other.hi)
        return True


@dataclass
class RunMetrics:
    """Everything a gate read from one run directory."""

    run_dir: Path
    metrics: dict[str, MetricValue]
    manifest: RunManifest | None  # None: the directory has eval.json files but no manifest
    eval_files: list[Path] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)  # (file, why it was skipped)

    def identity(self) -> dict[str, Any]:
        """What pins this run in gate.json: directory, run id, config and file digests."""
        m = self.manifest
        out: dict[str, Any] = {"dir": str(self.run_dir)}
        if m is not None:
            out.update(run_id=m.run_id, stage=m.stage, status=m.status,
                       config_digest=m.config_digest,
                       outputs={k: v.get("digest") for k, v in sorted(m.outputs.items())},
                       manifest_sha256=sha256_file(self.run_dir / MANIFEST_NAME))
        else:
            out["manifest"] = None
        out["eval_files"] = [{"path": str(p), "sha256": sha256_file(p)} for p in self.eval_files]
        if self.ignored:
            out["ignored_files"] = [{"path": str(p), "why": why} for p, why in self.ignored]
        return out


def _number(x: Any, file: Path, field_path: str, *, integer: bool = False) -> Any:
    """A JSON number (or null) from an eval.json entry; anything else is a DataError."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise DataError(f"expected a number or null, got {x!r}", file=str(file), field=field_path)
    if integer:
        if not float(x).is_integer():
            raise DataError(f"expected a whole number, got {x!r}", file=str(file), field=field_path)
        return int(x)
    x = float(x)
    return None if math.isnan(x) else x


def read_eval_metrics(path: Path) -> dict[str, MetricValue] | str:
    """The metrics of one eval.json, or a string saying why the file is skipped (pre-v1 report)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg} (column {e.colno})", file=str(path),
                        line=e.lineno) from None
    if not isinstance(report, dict):
        raise DataError(f"an eval report must be a JSON object, got {type(report).__name__}",
                        file=str(path))
    if "schema" not in report:
        return f"no 'schema' field: a report from before {EVAL_SCHEMA}"
    if report["schema"] != EVAL_SCHEMA:
        raise DataError(f"schema is {report['schema']!r}, expected {EVAL_SCHEMA!r}",
                        file=str(path), field="schema")
    raw = report.get("metrics")
    if not isinstance(raw, dict):
        raise DataError("'metrics' must be an object mapping 'suite/metric' to "
                        "{value, lo, hi, n}", file=str(path), field="metrics")
    out: dict[str, MetricValue] = {}
    for name, entry in raw.items():
        where = f"metrics.{name}"
        if not isinstance(entry, dict) or "value" not in entry:
            raise DataError("each metric must be an object with a 'value'", file=str(path),
                            field=where)
        out[name] = MetricValue(
            value=_number(entry["value"], path, f"{where}.value"),
            lo=_number(entry.get("lo"), path, f"{where}.lo"),
            hi=_number(entry.get("hi"), path, f"{where}.hi"),
            n=_number(entry.get("n"), path, f"{where}.n", integer=True),
            source=str(path))
    return out


def find_eval_files(run_dir: Path) -> list[Path]:
    """`DIR/eval.json` then `DIR/*/eval.json`, sorted so the result does not depend on the OS."""
    top = run_dir / EVAL_NAME
    below = sorted(p for p in run_dir.glob(f"*/{EVAL_NAME}") if p.is_file())
    return ([top] if top.is_file() else []) + below


def _merge(into: dict[str, MetricValue], name: str, new: MetricValue) -> None:
    old = into.get(name)
    if old is None or (old.agrees_with(new) and new.has_interval and not old.has_interval):
        into[name] = new  # first sighting, or the same number now with its interval
    elif not old.agrees_with(new):
        raise DataError(f"metric {name!r} is defined twice with different values: "
                        f"{old.value} (lo {old.lo}, hi {old.hi}) in {old.source} and "
                        f"{new.value} (lo {new.lo}, hi {new.hi}) in {new.source}",
                        file=new.source, field=name)


def load_run_metrics(run_dir: str | Path) -> RunMetrics:
    """Read every metric of a run directory (see the module docstring for the sources).

    Raises DataError when DIR does not exist, holds neither a manifest nor an eval.json,
    or a file in it is malformed; ConfigError is never raised here.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError("run directory does not exist", file=str(run_dir))
    metrics: dict[str, MetricValue] = {}
    eval_files, ignored = [], []
    for path in find_eval_files(run_dir):
        got = read_eval_metrics(path)
        if isinstance(got, str):
            ignored.append((path, got))
            continue
        eval_files.append(path)
        for name, value in got.items():
            _merge(metrics, name, value)
    manifest = None
    if (run_dir / MANIFEST_NAME).is_file():
        manifest = read_manifest(run_dir)
        source = str(run_dir / MANIFEST_NAME)
        for name, value in manifest.metrics.items():
            v = float(value)
            # Interval-less; when an eval.json already has it, the numbers must agree and the
            # eval.json entry (with its interval) is kept.
            _merge(metrics, name, MetricValue(None if math.isnan(v) else v, source=source))
    elif not eval_files and not ignored:
        raise DataError(f"neither {MANIFEST_NAME} nor an {EVAL_NAME} (here or one level down): "
                        "is this a run directory?", file=str(run_dir))
    return RunMetrics(run_dir, metrics, manifest, eval_files, ignored)


def require_interval(metric: MetricValue, name: str, who: str) -> None:
    """ConfigError when a rule asks for an interval bound of a metric that has none."""
    if not metric.has_interval:
        raise ConfigError(f"{who} uses an interval bound, but metric {name!r} from "
                          f"{metric.source} has no interval (lo/hi missing or null); use "
                          "`use: value` or gate a metric that carries an interval")
