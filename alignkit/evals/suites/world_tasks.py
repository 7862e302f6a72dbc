"""`world_tasks`: exact match on the built-in world's held-out task split (entities and phrasings
that appear in no SFT example)."""
from __future__ import annotations

from alignkit.evals.exact_match import exact_match_eval
from alignkit.evals.suite import EvalContext, SuiteResult, rate_metric, register_suite
from alignkit.world.build import build_world


@register_suite("world_tasks")
def world_tasks(ctx: EvalContext) -> SuiteResult:
    rows = ctx.take(build_world(ctx.world).heldout, by="family")
    res = exact_match_eval(ctx.model, ctx.tokenizer, ctx.template, rows, ctx.decode)
    samples = [{**s, "judgment": "correct" if s["correct"] else "wrong",
                "why": f"expected {s['answer']!r}"} for s in res["samples"]]
    return SuiteResult({"world_tasks/exact_match": rate_metric(samples, "correct", ["family"])},
                       samples)
