"""RunManifest: schema, atomic write, read errors that name the file, update semantics."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from alignkit.contract import manifest as manifest_mod
from alignkit.contract.digest import digest_obj
from alignkit.contract.manifest import (
    MANIFEST_NAME,
    RunManifest,
    atomic_write_bytes,
    new_run_id,
    read_manifest,
    start_manifest,
    update_manifest,
    write_manifest,
)
from alignkit.errors import DataError


def _full_manifest() -> RunManifest:
    return RunManifest(
        stage="sft", run_id="sft-1", created_at="2025-01-31T12:00:00+00:00",
        config={"lr": 1e-4, "epochs": 2, "model": {"path": "builtin:world-tiny"}},
        inputs={"train": {"digest": "ds-aaaaaaaaaaaa", "path": "train.jsonl", "n_rows": 10,
                          "n_bad": 1, "quarantine_path": "quarantine.jsonl"}},
        base_model={"digest": "mdl-bbbbbbbbbbbb", "spec": {"path": "builtin:world-tiny"}},
        template={"name": "chatml", "digest": "tpl-cccccccccccc"},
        policy={"name": "world", "version": "1", "digest": "pol-dddddddddddd"},
        decode={"temperature": 0.0, "digest": "dec-eeeeeeeeeeee"},
        seed=7, environment={"python": "3.11.7", "device": "cpu"},
        outputs={"final": {"path": "final", "digest": "mdl-ffffffffffff"}},
        metrics={"loss": 1.25, "acc": 0.5}, parents=["../pretrain"], status="completed",
        notes="test run")


def test_every_field_has_a_default():
    m = RunManifest()
    assert m.schema_version == 1 and m.status == "running" and m.parents == []
    assert m.run_id.startswith("run-") and m.created_at.endswith("+00:00")


def test_reading_requires_identity_fields(tmp_path):
    raw = json.loads(_full_manifest().to_json())
    del raw["run_id"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(DataError, match="required") as e:
        read_manifest(tmp_path)
    assert e.value.field == "run_id"


def test_round_trip_preserves_every_field(tmp_path):
    m = _full_manifest()
    path = write_manifest(tmp_path, m)
    assert path == tmp_path / MANIFEST_NAME
    back = read_manifest(tmp_path)
    assert back.model_dump() == m.model_dump()
    assert back.path == path and back.run_dir == tmp_path
    # A path to the file works as well as the directory.
    assert read_manifest(path).model_dump() == m.model_dump()


def test_file_is_pretty_json_with_sorted_keys(tmp_path):
    write_manifest(tmp_path, _full_manifest())
    text = (tmp_path / MANIFEST_NAME).read_text()
    assert text.endswith("\n")
    top_keys = [line.split('"')[1] for line in text.splitlines() if line.startswith('  "')]
    assert top_keys == sorted(top_keys) and "base_model" in top_keys
    assert '\n  "stage": "sft",\n' in text  # two-space indent


def test_config_digest_is_filled_from_config():
    """digest_obj canonicalises 2.0 to 2, so a re-serialised config keeps its digest."""
    m = RunManifest(config={"epochs": 2.0, "lr": 0.1})
    assert m.config_digest == digest_obj({"lr": 0.1, "epochs": 2}, "cfg")
    assert RunManifest(config={"a": 1}, config_digest="cfg-given").config_digest == "cfg-given"


def test_unknown_field_is_an_error_naming_file_and_field(tmp_path):
    raw = json.loads(_full_manifest().to_json())
    raw["learning_rate"] = 3
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(DataError) as e:
        read_manifest(tmp_path)
    assert e.value.file == str(tmp_path / MANIFEST_NAME)
    assert e.value.field == "learning_rate"


def test_bad_field_value_names_field(tmp_path):
    raw = json.loads(_full_manifest().to_json())
    raw["status"] = "done"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(DataError, match="status") as e:
        read_manifest(tmp_path)
    assert e.value.field == "status"


def test_missing_manifest_names_the_file(tmp_path):
    with pytest.raises(DataError, match="no run manifest") as e:
        read_manifest(tmp_path)
    assert e.value.file == str(tmp_path / MANIFEST_NAME)
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "nope")


def test_invalid_json_names_file_and_line(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text('{\n  "stage": "sft",\n  oops\n}\n')
    with pytest.raises(DataError, match="not valid JSON") as e:
        read_manifest(tmp_path)
    assert e.value.line == 3 and e.value.file.endswith(MANIFEST_NAME)


def test_non_object_and_newer_schema_are_rejected(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(DataError, match="newer") as e:
        read_manifest(tmp_path)
    assert e.value.field == "schema_version"


def test_non_finite_metrics_and_config_round_trip(tmp_path):
    m = RunManifest(metrics={"kl": math.nan, "ratio": math.inf},
                    config={"max_grad_norm": math.inf})
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert math.isnan(back.metrics["kl"]) and back.metrics["ratio"] == math.inf
    assert back.config["max_grad_norm"] == math.inf


def test_update_replaces_fields_and_stamps_finish(tmp_path):
    write_manifest(tmp_path, RunManifest(stage="sft", metrics={"a": 1.0}))
    up = update_manifest(tmp_path, status="completed", metrics={"loss": 2.0})
    assert up.metrics == {"loss": 2.0}  # replaced, not merged
    assert up.finished_at is not None
    back = read_manifest(tmp_path)
    assert back.status == "completed" and back.metrics == {"loss": 2.0}
    assert back.stage == "sft"


def test_update_config_recomputes_its_digest(tmp_path):
    write_manifest(tmp_path, RunManifest(config={"lr": 1}))
    up = update_manifest(tmp_path, config={"lr": 2})
    assert up.config_digest == digest_obj({"lr": 2}, "cfg")


def test_update_rejects_unknown_and_invalid_fields(tmp_path):
    write_manifest(tmp_path, RunManifest())
    with pytest.raises(DataError, match="unknown manifest field") as e:
        update_manifest(tmp_path, metric={"a": 1})
    assert e.value.field == "metric"
    with pytest.raises(DataError) as e:
        update_manifest(tmp_path, metrics={"a": "not a number"})
    assert e.value.field.startswith("metrics")
    assert read_manifest(tmp_path).metrics == {}  # the file was not touched


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(manifest_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # temp file cleaned up


def test_start_manifest_writes_a_running_manifest(tmp_path):
    out = tmp_path / "run"
    m = start_manifest(out, "prefer", {"beta": 0.1}, environment={"device": "cpu"}, seed=3)
    back = read_manifest(out)
    assert back.status == "running" and back.stage == "prefer" and back.seed == 3
    assert back.run_id == m.run_id and back.run_id.startswith("prefer-")
    assert back.environment == {"device": "cpu"}


def test_run_ids_are_unique():
    assert len({new_run_id("sft") for _ in range(50)}) == 50


def test_contract_imports_nothing_else_from_alignkit():
    """DESIGN.md dependency rule: `contract` imports only alignkit.errors and itself."""
    import ast

    root = Path(manifest_mod.__file__).parent
    for file in root.glob("*.py"):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("alignkit"):
                    assert name == "alignkit.errors" or name.startswith("alignkit.contract"), \
                        f"{file.name} imports {name}"
