"""lineage(): parents followed to the roots, oldest first; cycles and gaps are clear errors."""
from __future__ import annotations

import os

import pytest

from alignkit.contract.lineage import format_lineage, lineage
from alignkit.contract.manifest import RunManifest, write_manifest
from alignkit.errors import DataError


def _run(path, stage, parents=(), **kw):
    write_manifest(path, RunManifest(stage=stage, run_id=stage, parents=list(parents), **kw))
    return path


def test_linear_chain_oldest_first(tmp_path):
    _run(tmp_path / "pre", "pretrain")
    _run(tmp_path / "sft", "sft", ["../pre"])
    _run(tmp_path / "dpo", "prefer", ["../sft"])
    chain = lineage(tmp_path / "dpo")
    assert [m.stage for m in chain] == ["pretrain", "sft", "prefer"]
    assert [m.run_dir.name for m in chain] == ["pre", "sft", "dpo"]


def test_relative_parents_resolve_against_the_child_not_the_cwd(tmp_path, monkeypatch):
    _run(tmp_path / "a" / "sft", "sft")
    _run(tmp_path / "a" / "dpo", "prefer", ["../sft"])
    monkeypatch.chdir(tmp_path)  # "../sft" from the cwd would be outside tmp_path
    assert [m.stage for m in lineage("a/dpo")] == ["sft", "prefer"]


def test_absolute_parent_paths_work(tmp_path):
    _run(tmp_path / "sft", "sft")
    _run(tmp_path / "x" / "dpo", "prefer", [str(tmp_path / "sft")])
    assert [m.stage for m in lineage(tmp_path / "x" / "dpo")] == ["sft", "prefer"]


def test_diamond_lists_shared_ancestor_once_before_its_children(tmp_path):
    """rl has parents [sft, rm]; both descend from pre. pre appears once, first; rl last."""
    _run(tmp_path / "pre", "pretrain")
    _run(tmp_path / "sft", "sft", ["../pre"])
    _run(tmp_path / "rm", "reward", ["../pre"])
    _run(tmp_path / "rl", "rl", ["../sft", "../rm"])
    stages = [m.stage for m in lineage(tmp_path / "rl")]
    assert stages == ["pretrain", "sft", "reward", "rl"]


def test_missing_parent_names_child_manifest_and_entry(tmp_path):
    _run(tmp_path / "dpo", "prefer", ["../gone"])
    with pytest.raises(DataError, match="'../gone'") as e:
        lineage(tmp_path / "dpo")
    assert e.value.field == "parents"
    assert e.value.file == str(tmp_path / "dpo" / "manifest.json")


def test_missing_start_run_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no run manifest"):
        lineage(tmp_path / "nothing")


def test_cycles_are_detected(tmp_path):
    _run(tmp_path / "a", "a", ["../b"])
    _run(tmp_path / "b", "b", ["../a"])
    with pytest.raises(DataError, match="cycle"):
        lineage(tmp_path / "a")
    _run(tmp_path / "self", "s", ["."])
    with pytest.raises(DataError, match="cycle"):
        lineage(tmp_path / "self")


def test_format_lineage_one_line_per_run(tmp_path, monkeypatch):
    """Metrics print with 4 significant digits: 1.23456 -> 1.235, 0.5 -> 0.5."""
    _run(tmp_path / "sft", "sft", status="completed",
         base_model={"digest": "mdl-aaaaaaaaaaaa"},
         outputs={"final": {"path": "final", "digest": "mdl-bbbbbbbbbbbb"}},
         metrics={"loss": 1.23456, "acc": 0.5})
    _run(tmp_path / "dpo", "prefer", ["../sft"], base_model={"digest": "mdl-bbbbbbbbbbbb"},
         outputs={"adapter": {"digest": "mdl-cccccccccccc"}},
         metrics={f"m{i}": float(i) for i in range(6)})
    monkeypatch.chdir(tmp_path)
    text = format_lineage(lineage("dpo"))
    lines = text.splitlines()
    assert lines[0] == ("sft     sft  base=mdl-aaaaaaaaaaaa  out=mdl-bbbbbbbbbbbb  "
                        "acc=0.5 loss=1.235  [completed]")
    assert lines[1] == ("prefer  dpo  base=mdl-bbbbbbbbbbbb  out=mdl-cccccccccccc  "
                        "m0=0 m1=1 m2=2 m3=3 (+2 more)  [running]")
    assert format_lineage([]) == "(no runs)"
    assert os.path.relpath(tmp_path / "dpo") == "dpo"
