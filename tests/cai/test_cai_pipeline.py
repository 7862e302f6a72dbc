"""SL-CAI as a pipeline stage kind (`cai_sl`): it resolves, runs in a pipeline whose next stage
fine-tunes on its rows, and `resume=True` re-runs an interrupted run from scratch (it keeps no
checkpoint) but never overwrites a completed one."""
import json

import pytest
from rich.console import Console

from alignkit.cai.label import LabelConfig, label
from alignkit.cai.sl import SL_FILES, SLConfig, sl
from alignkit.contract.manifest import read_manifest, update_manifest
from alignkit.errors import ConfigError
from alignkit.pipeline.registry import get_stage_kind
from alignkit.pipeline.run import run_pipeline

WORLD = {"corpus_passes": 1, "sft_per_family": 12, "heldout_per_family": 6, "n_people": 16}


def _sl_config(model):
    return {"model": model, "rounds": 1, "max_red_team": 2, "max_helpful": 2,
            "world_red_team": {"n_per_slice": 1, "world": WORLD},
            "world_helpful": {"n_per_slice": 1, "world": WORLD},
            "prompts": {"few_shot": 0},
            # sampled: greedy, the random model only ever says "\n" (an empty reply)
            "decode": {"max_new_tokens": 3, "temperature": 1.0}}


def test_cai_kinds_resolve():
    kind = get_stage_kind("cai_sl")
    assert kind.config_cls is SLConfig and kind.fn is sl
    assert "world/final_refusal" in kind.main_metrics
    kind = get_stage_kind("cai_label")
    assert kind.config_cls is LabelConfig and kind.fn is label


def test_cai_sl_stage_then_sft_on_its_rows(tmp_path, tiny_model_dir):
    stages = [
        {"name": "cai_data", "stage": "cai_sl", "config": _sl_config(tiny_model_dir)},
        {"name": "cai", "stage": "sft", "config": {
            "model": tiny_model_dir, "data": "${cai_data.out}/sl_data.jsonl", "train_on": "last",
            "heldout_eval": False, "val_fraction": 0.0,
            "train": {"max_steps": 1, "micro_batch_size": 2, "progress": False}}}]
    quiet = Console(quiet=True)
    run = run_pipeline({"stages": stages}, out=tmp_path / "root", console=quiet)
    assert [r.action for r in run.results] == ["run", "run"]
    root = tmp_path / "root"
    data, tuned = read_manifest(root / "cai_data"), read_manifest(root / "cai")
    assert data.stage == "cai-sl" and data.status == tuned.status == "completed"
    entry = tuned.inputs["train"]
    assert entry["source"] == str(root / "cai_data" / "sl_data.jsonl")
    assert entry["n_rows"] == data.metrics["n_rows"] == run.results[0].main_metrics["n_rows"] > 0
    assert data.metrics["n_rows"] + data.metrics["dropped_empty_rows"] == 4
    again = run_pipeline({"stages": stages}, out=tmp_path / "root", console=quiet)
    assert [r.action for r in again.results] == ["reuse", "reuse"]


def test_resume_reruns_an_interrupted_sl_run_and_keeps_other_files(tmp_path, tiny_model_dir):
    out = tmp_path / "sl"
    cfg = _sl_config(tiny_model_dir)
    sl(cfg, out)
    rows = (out / "sl_data.jsonl").read_text()
    with pytest.raises(ConfigError, match="already holds"):
        sl(cfg, out, resume=True)  # a completed run is never overwritten
    update_manifest(out, status="running")  # as if killed mid-run
    (out / "sl_data.jsonl").write_text("half a row")
    (out / "pipeline_key.json").write_text(json.dumps({"key": "k"}))  # not the stage's file
    with pytest.raises(ConfigError, match="already holds"):
        sl(cfg, out)  # without resume: refused
    first_id = read_manifest(out).run_id
    sl(cfg, out, resume=True)
    m = read_manifest(out)
    assert m.status == "completed" and m.run_id != first_id
    assert (out / "sl_data.jsonl").read_text() == rows  # greedy: the same rows again
    assert json.loads((out / "pipeline_key.json").read_text()) == {"key": "k"}
    assert set(SL_FILES) >= {p.name for p in out.iterdir()} - {"manifest.json", "pipeline_key.json"}


def test_empty_replies_are_dropped_and_counted(tmp_path, tiny_model_dir):
    cfg = {**_sl_config(tiny_model_dir), "decode": {"max_new_tokens": 3}}  # greedy: "\n" only
    metrics = sl(cfg, tmp_path / "sl")
    assert metrics["n_rows"] == 0 and metrics["dropped_empty_rows"] == 4
    assert (tmp_path / "sl" / "sl_data.jsonl").read_text() == ""
    trajs = (tmp_path / "sl" / "trajectories.jsonl").read_text().splitlines()
    assert len(trajs) == 2  # the red-team prompts are still all in the trajectories
