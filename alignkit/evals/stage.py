"""The `eval` stage: suites on one model as a run directory with a manifest.

`alignkit eval` writes eval.json only; as a stage (pipelines, the demo) the same evaluation also
writes OUT/manifest.json pinning the model, reference and base digests, the template, the decode
settings and the policy, with every metric's point value under `metrics`, so gates, lineage and
reports treat an evaluation like any other run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from alignkit.contract.specs import DecodeSpec
from alignkit.world.build import WorldConfig


class EvalStageConfig(BaseModel):
    """Settings of an `eval` stage. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str  # the evaluated model: HF dir, .gguf file or builtin:NAME
    suites: list[str] = ["world_tasks"]  # suite names, or ["all"]
    reference: str | None = None  # drift and win-rate reference (e.g. the SFT model)
    base: str | None = None  # capability-tax baseline (e.g. the pretrained model)
    judge: str | None = None  # reward-model directory judging win rates
    prompts: str | None = None  # extra prompts (XSTest-format CSV for over_refusal)
    template: str | None = None  # chat template override
    decode: DecodeSpec = DecodeSpec(max_new_tokens=24)
    world: WorldConfig = WorldConfig()
    limit: int | None = None  # at most this many examples per slice
    guard: str | None = None  # guard directory: evaluate the model behind its rails
    seed: int = 0


def _parents(*models: str | None) -> list[str]:
    """Run directories whose `final/` model is evaluated or compared against."""
    out = []
    for m in models:
        p = Path(m) if m else None
        if p is not None and p.name == "final" and (p.parent / "manifest.json").is_file():
            out.append(str(p.parent.resolve()))
    return out


def eval_stage(config: EvalStageConfig | dict, out_dir: str | Path, *,
               resume: bool = False) -> dict[str, float]:
    """Run the suites; an interrupted evaluation simply runs again (there is no checkpoint)."""
    from alignkit.contract.manifest import read_manifest, start_manifest, update_manifest
    from alignkit.evals.api import _loaded, evaluate
    from alignkit.world.policy import load_policy

    cfg = config if isinstance(config, EvalStageConfig) else EvalStageConfig.model_validate(config)
    out = Path(out_dir)
    if (out / "manifest.json").exists() and not resume:
        from alignkit.errors import ConfigError

        old = read_manifest(out)
        raise ConfigError(f"{out} already holds a {old.stage} run (status {old.status}); "
                          "pass --resume to run it again, or choose another --out")
    loaded = _loaded(cfg.model)
    policy = load_policy()
    start_manifest(out, "eval", cfg.model_dump(mode="json"), seed=cfg.seed,
                   base_model={"spec": cfg.model, "digest": loaded.digest},
                   decode={**cfg.decode.model_dump(mode="json"), "digest": cfg.decode.digest},
                   policy={"name": policy.id, "version": policy.version, "digest": policy.digest},
                   parents=_parents(cfg.model, cfg.reference, cfg.base))
    try:
        report = evaluate(loaded, cfg.suites, out, reference=cfg.reference, base=cfg.base,
                          judge=cfg.judge, prompts=cfg.prompts, template=cfg.template,
                          decode=cfg.decode, world=cfg.world, limit=cfg.limit, seed=cfg.seed,
                          guard=cfg.guard)
    except BaseException as e:
        update_manifest(out, status="failed", notes=f"{type(e).__name__}: {e}")
        raise
    metrics: dict[str, Any] = {k: m["value"] for k, m in report["metrics"].items()
                               if m["value"] is not None}
    update_manifest(out, status="completed", metrics=metrics,
                    template={"digest": report["template"]})
    return metrics
