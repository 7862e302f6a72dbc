"""Fixture run directories for the gate tests: small manifest.json / eval.json files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.contract.manifest import RunManifest, write_manifest

EVAL_SCHEMA = "alignkit.eval/v1"


def eval_entry(value, lo=None, hi=None, n=100):
    return {"value": value, "lo": lo, "hi": hi, "n": n, "slices": {}}


def _write_eval(directory: Path, metrics: dict, schema: str | None = EVAL_SCHEMA) -> Path:
    """DIR/eval.json with `metrics` ("suite/metric" -> entry or bare value)."""
    directory.mkdir(parents=True, exist_ok=True)
    report = {"model": "test", "suites": sorted({k.split("/")[0] for k in metrics}),
              "metrics": {k: v if isinstance(v, dict) else eval_entry(v) for k, v in metrics.items()}}
    if schema is not None:
        report["schema"] = schema
    path = directory / "eval.json"
    path.write_text(json.dumps(report, indent=2))
    return path


def _write_run(directory: Path, *, stage="sft", metrics=None, **fields) -> Path:
    """DIR/manifest.json, completed, with fixed identity fields."""
    m = RunManifest(stage=stage, run_id=f"{stage}-{directory.name}",
                    created_at="2025-01-31T12:00:00+00:00", status="completed",
                    environment={"device": "cpu"}, metrics=metrics or {}, **fields)
    write_manifest(directory, m)
    return directory


@pytest.fixture
def write_eval():
    """write_eval(DIR, {"suite/metric": entry or value}, schema=...) -> DIR/eval.json."""
    return _write_eval


@pytest.fixture
def write_run():
    """write_run(DIR, stage=..., metrics=..., **RunManifest fields) -> DIR (with manifest.json)."""
    return _write_run
