"""`alignkit pipeline FILE.yaml`: stages in order, each cached by a content digest of its config.

Modules, one job each: `spec` (the YAML schema), `registry` (stage kinds), `resolve`
(`${NAME.out}` references, validated configs, cache keys), `cache` (key files, force record,
lock, moving stale runs aside), `plan` (run / resume / reuse decisions), `run` (execution,
progress, summary), `display` (tables). See docs/pipeline.md.

Importing this package is cheap (no torch): stage modules load when a stage kind is used.
"""
from __future__ import annotations

from alignkit.pipeline.registry import (StageKind, get_stage_kind, register_stage_kind,
                                        stage_kind_names, unregister_stage_kind)
from alignkit.pipeline.run import PipelineRun, StageResult, run_pipeline
from alignkit.pipeline.spec import Pipeline, PipelineSpec, StageSpec, load_pipeline

__all__ = ["Pipeline", "PipelineRun", "PipelineSpec", "StageKind", "StageResult", "StageSpec",
           "get_stage_kind", "load_pipeline", "register_stage_kind", "run_pipeline",
           "stage_kind_names", "unregister_stage_kind"]
