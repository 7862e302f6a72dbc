"""`alignkit report RUN_DIR... --out report.html`: one self-contained HTML page over run dirs.

- `collect`: read run directories (manifest, metrics.jsonl, eval.json, samples.jsonl, gate.json,
  guard report, overoptimization.json) into `RunData`, tolerating missing and malformed pieces;
  `parse`: the per-file parsers (and which samples count as failures); `model`: the dataclasses.
- `svg`: line / scatter-with-error-bars / horizontal-interval-bar / ROC / PR charts as inline SVG.
- `sections`: one HTML section per view; `html`: the page (inline CSS and JS, strict CSP).

    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\\n')
    >>> out = build_report([run], run / "report.html")
    >>> "Training loss" in out.read_text()
    True
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from alignkit.report.collect import DEFAULT_MAX_FAILURES  # stdlib-only module: cheap


def build_report(run_dirs: Sequence[str | Path], out: str | Path, *,
                 max_failures: int = DEFAULT_MAX_FAILURES, title: str | None = None,
                 attack_metric: str | None = None, refusal_metric: str | None = None) -> Path:
    """Read `run_dirs`, write the report to `out` atomically, return its path.

    Raises ConfigError for an empty `run_dirs` and DataError for a path that is not a directory.
    `attack_metric` / `refusal_metric` ("suite/metric") pin the frontier's axes; by default they
    are found by name (see `alignkit.report.sections.ATTACK_PATTERNS`, `REFUSAL_PATTERNS`).
    """
    from alignkit.contract.manifest import atomic_write_bytes
    from alignkit.report.collect import collect_runs
    from alignkit.report.html import render_report

    runs = collect_runs(list(run_dirs), max_failures=max_failures)
    page = render_report(runs, title=title, max_failures=max_failures,
                         attack_metric=attack_metric, refusal_metric=refusal_metric)
    return atomic_write_bytes(Path(out), page.encode("utf-8"))


__all__ = ["build_report"]
