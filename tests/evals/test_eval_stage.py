"""The eval stage writes a manifest beside eval.json and runs inside a pipeline."""
import json

import pytest

from alignkit.contract.manifest import read_manifest
from alignkit.errors import ConfigError
from alignkit.evals.stage import EvalStageConfig, eval_stage
from alignkit.world.build import WorldConfig

TINY_WORLD = WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2)


def test_eval_stage_manifest_metrics_equal_eval_json(tmp_path):
    cfg = EvalStageConfig(model="builtin:world-tiny", suites=["world_tasks"], world=TINY_WORLD,
                          decode={"max_new_tokens": 3})
    metrics = eval_stage(cfg, tmp_path / "ev")
    m = read_manifest(tmp_path / "ev")
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert m.status == "completed" and m.stage == "eval"
    assert m.metrics == metrics
    assert metrics["world_tasks/exact_match"] == report["metrics"]["world_tasks/exact_match"]["value"]
    assert m.policy["digest"].startswith("pol-") and m.template["digest"].startswith("tpl-")
    with pytest.raises(ConfigError, match="already holds a eval run"):
        eval_stage(cfg, tmp_path / "ev")


def test_eval_is_a_pipeline_stage_kind():
    from alignkit.pipeline.registry import get_stage_kind

    assert get_stage_kind("eval").config_cls is EvalStageConfig
