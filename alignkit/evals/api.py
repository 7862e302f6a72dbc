"""`alignkit.evaluate(...)`: run evaluation suites on a model and write OUT/eval.json.

    >>> import alignkit
    >>> report = alignkit.evaluate("runs/sft/final", suites="safety,over_refusal", out="runs/sft/eval")
    ... # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from alignkit.contract.specs import DecodeSpec
from alignkit.world.build import WorldConfig


def _loaded(model: Any):
    """A LoadedModel from anything `load_model` accepts, or pass a LoadedModel through."""
    from alignkit.models.loading import LoadedModel, load_model

    return model if isinstance(model, LoadedModel) else load_model(model)


def evaluate(model: Any, suites: str | Sequence[str] = "world_tasks", out: str | Path = "eval", *,
             reference: Any = None, base: Any = None,
             judge: Callable[[str, str, str], str] | str | None = None,
             prompts: str | Path | None = None, template: str | None = None,
             decode: DecodeSpec | None = None, world: WorldConfig | None = None,
             limit: int | None = None, seed: int = 0, guard: str | Path | None = None,
             progress: Callable[[str], None] | None = None) -> dict:
    """Evaluate `model` on `suites` and write OUT/eval.json + OUT/samples.jsonl.

    `model`, `reference` (drift, win rate) and `base` (capability tax) are anything `load_model`
    accepts. `judge` is a function (prompt, a, b) -> "a" | "b" | "tie", or the directory of a
    reward model (`alignkit reward` output). `prompts` is an extra prompt file (an XSTest-format
    CSV for `over_refusal`). `guard` is a guard directory (`alignkit guard calibrate` output):
    the evaluated system is then the model behind the guard's input and output rails (the
    layered system: compare with the same evaluation without it). Returns the report.
    """
    from alignkit.data.templates import resolve_chat_template
    from alignkit.evals.suite import EvalContext, run_suites

    loaded = _loaded(model)
    tpl = resolve_chat_template(loaded.tokenizer, template)
    if isinstance(judge, (str, Path)):
        from alignkit.evals.judges import reward_model_judge
        from alignkit.models.heads import load_reward_model

        rm, rm_tok = load_reward_model(judge)
        judge = reward_model_judge(rm, rm_tok, resolve_chat_template(rm_tok, template))
    ctx = EvalContext(
        model=loaded.model, tokenizer=loaded.tokenizer, template=tpl,
        decode=decode or DecodeSpec(max_new_tokens=24), world=world or WorldConfig(),
        reference=_loaded(reference) if reference is not None else None,
        base=_loaded(base) if base is not None else None,
        judge=judge, prompts_file=Path(prompts) if prompts else None, seed=seed, limit=limit)
    name = str(getattr(loaded.spec, "path", "") or model)
    if guard is not None:
        from alignkit.guard.rails import guarded_respond
        from alignkit.guard.runtime import Guard

        ctx.respond = guarded_respond(ctx.respond, Guard.load(guard))
        name += f" + guard {guard}"
    return run_suites(ctx, suites, out, model_name=name, progress=progress)
