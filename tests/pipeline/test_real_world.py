"""One real pipeline, pretrain -> sft, on a tiny world (a few optimizer steps each): the
stages chain through ${base.out}, the contract links them, and a second run reuses both."""
import yaml

from alignkit.contract.lineage import lineage
from alignkit.contract.manifest import read_manifest
from alignkit.pipeline.run import run_pipeline

WORLD = {"corpus_passes": 1, "sft_per_family": 24, "heldout_per_family": 3, "n_people": 16}


def test_pretrain_then_sft_runs_links_and_is_reused(tmp_path, quiet):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"out": str(tmp_path / "root"), "stages": [
        {"name": "base", "stage": "pretrain", "config": {
            "world": WORLD, "heldout_eval": False,
            "train": {"max_steps": 6, "micro_batch_size": 16, "progress": False,
                      "optim": {"lr": 0.003, "warmup_steps": 2}}}},
        {"name": "sft", "stage": "sft", "config": {
            "model": "${base.out}/final", "world": WORLD, "heldout_eval": False,
            "train": {"max_steps": 3, "micro_batch_size": 16, "eval_every": 0, "progress": False}}},
    ]}, sort_keys=False))
    first = run_pipeline(path, console=quiet)
    assert [r.action for r in first.results] == ["run", "run"]
    root = tmp_path / "root"
    base, sft = read_manifest(root / "base"), read_manifest(root / "sft")
    assert base.status == sft.status == "completed"
    assert sft.base_model["digest"] == base.outputs["final"]["digest"]  # sft started from base
    assert [c.stage for c in lineage(root / "sft")] == ["pretrain", "sft"]
    assert "train/loss" in first.results[0].main_metrics

    second = run_pipeline(path, console=quiet)
    assert [r.action for r in second.results] == ["reuse", "reuse"]
    assert read_manifest(root / "sft").run_id == sft.run_id  # the same run, not a new one
