"""`template_robustness`: does task accuracy survive a change of chat template?

The world's held-out tasks are asked through each chat template in turn: the model's own
(`tokenizer.chat_template`, slice value "own") and the built-ins of `alignkit.data.templates`
(chatml, llama2, mistral, alpaca, zephyr), each resolved for this tokenizer with
`resolve_chat_template` (the tokenizer's BOS/EOS strings). A model that learned the task rather
than one prompt format keeps its accuracy; one that memorised the format loses it.

A template is skipped when the tokenizer cannot encode every prompt through it (a
`TemplateError`, e.g. a tokenizer that turns a template's control string into something else, or a
`DataError`, a template refusing a conversation); skipped templates and the reason are listed in
a note record (`{"kind": "note"}`) of samples.jsonl. All templates that are kept see the same
rows, so their accuracies compare like for like.

Metrics
- `template_robustness/exact_match`: exact match pooled over all (template, row) pairs, sliced by
  `template` (one Wilson interval per template).
- `template_robustness/spread`: max − min of the per-template accuracies. An interval is not
  computed (lo = hi = null); `n` is the number of templates compared.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alignkit.contract.specs import DecodeSpec
from alignkit.data.templates import BUILTINS, ChatTemplate, resolve_chat_template
from alignkit.errors import DataError, TemplateError
from alignkit.evals.exact_match import normalize_answer
from alignkit.evals.suite import EvalContext, SuiteResult, metric, rate_metric, register_suite
from alignkit.world.build import build_world


def candidate_templates(tokenizer: Any) -> tuple[dict[str, ChatTemplate], dict[str, str]]:
    """({name: template} that resolve for `tokenizer`, {name: why skipped})."""
    found: dict[str, ChatTemplate] = {}
    skipped: dict[str, str] = {}
    try:
        found["own"] = ChatTemplate.from_tokenizer(tokenizer)
    except TemplateError as e:
        skipped["own"] = str(e)
    for name in BUILTINS:
        found[name] = resolve_chat_template(tokenizer, name)
    return found, skipped


def encode_all(tokenizer: Any, template: ChatTemplate,
               conversations: Sequence[Sequence[Mapping]]) -> list[list[int]]:
    """Prompt ids of every conversation; the first failure raises (TemplateError / DataError)."""
    from alignkit.data.encode import encode_prompt

    return [encode_prompt(tokenizer, template, conv) for conv in conversations]


def score_templates(rows: Sequence[Mapping], responses: Mapping[str, Sequence[str]]) -> list[dict]:
    """Sample records for each template's replies to `rows` ({"messages", "answer", "family"})."""
    samples = []
    for name, replies in responses.items():
        if len(replies) != len(rows):
            raise ValueError(f"template {name!r}: {len(replies)} replies for {len(rows)} rows")
        for row, reply in zip(rows, replies):
            ok = normalize_answer(reply) == normalize_answer(row["answer"])
            samples.append({"prompt": row["messages"][-2]["content"], "family": row.get("family"),
                            "template": name, "response": reply, "answer": row["answer"],
                            "correct": ok, "judgment": "correct" if ok else "wrong",
                            "why": f"expected {row['answer']!r}"})
    return samples


def robustness_metrics(samples: Sequence[Mapping]) -> dict[str, dict]:
    em = rate_metric(samples, "correct", ["template"])
    per_template = [e["value"] for e in em["slices"].get("template", {}).values()
                    if e["value"] is not None]
    spread = max(per_template) - min(per_template) if per_template else float("nan")
    return {"template_robustness/exact_match": em,
            "template_robustness/spread": metric(spread, None, None, len(per_template))}


@register_suite("template_robustness")
def template_robustness(ctx: EvalContext) -> SuiteResult:
    from alignkit.rollout.generate import generate

    rows = ctx.take(build_world(ctx.world).heldout, by="family")
    conversations = [r["messages"][:-1] for r in rows]
    templates, skipped = candidate_templates(ctx.tokenizer)
    prompts: dict[str, list[list[int]]] = {}
    for name, tpl in templates.items():
        try:
            prompts[name] = encode_all(ctx.tokenizer, tpl, conversations)
        except (TemplateError, DataError) as e:
            skipped[name] = str(e)
    names = list(prompts)
    # One generate call for every template's prompts: batches stay full.
    flat = [p for name in names for p in prompts[name]]
    decode: DecodeSpec = ctx.decode
    outputs = generate(ctx.model, ctx.tokenizer, flat, decode)
    responses = {name: [ctx.tokenizer.decode(ids, skip_special_tokens=True)
                        for ids in outputs[k * len(rows):(k + 1) * len(rows)]]
                 for k, name in enumerate(names)}
    samples = score_templates(rows, responses)
    notes = [{"kind": "note", "note": f"template {name!r} skipped: {why}"}
             for name, why in skipped.items()]
    return SuiteResult(robustness_metrics(samples), notes + samples)
