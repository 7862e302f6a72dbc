"""`style`: does the model follow a verifiable format instruction (IFEval-like, Zhou et al. 2023)?

Each prompt is a held-out world question plus one instruction from `INSTRUCTIONS` whose
satisfaction a program decides (`alignkit.evals.style`): one word, at most N words, a bulleted
list of N items, JSON with given keys, all lowercase, no preamble, ends with a phrase. Every
question is asked twice, with the instruction

- in a system message before the question (`position = "system"`), and
- appended to the user message (`position = "user"`),

so the two positions are compared on the same questions (a paired design).

Metric: `style/adherence`, the share of replies that pass every check of their instruction
(IFEval's prompt-level strict accuracy), with Wilson intervals, sliced by `instruction` and
`position`. The built-in world's tiny model never saw such instructions, so expect low numbers
there; the suite measures, it does not assume.

Size: `QUESTIONS_PER_INSTRUCTION` questions per instruction (at most `ctx.limit` of them when a
limit is set), times two positions. Questions are single-turn held-out task prompts, taken in
turn across the task families so that each instruction sees a mix of families.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alignkit.evals.style import run_checks
from alignkit.evals.suite import EvalContext, SuiteResult, rate_metric, register_suite
from alignkit.world.build import build_world

QUESTIONS_PER_INSTRUCTION = 20
POSITIONS = ("system", "user")


@dataclass(frozen=True)
class Instruction:
    name: str  # the `instruction` slice value
    text: str  # what the model is told
    checks: tuple[Mapping, ...]  # `style.run_checks` specs; all must pass


INSTRUCTIONS: tuple[Instruction, ...] = (
    Instruction("one_word", "Answer with exactly one word.",
                ({"check": "exactly_one_word"},)),
    Instruction("max_words", "Answer in at most 5 words.",
                ({"check": "max_words", "n": 5},)),
    Instruction("bullet_list", "Answer as a bulleted list of exactly 3 items, each on its own "
                "line starting with '- '.", ({"check": "bullet_list", "n": 3},)),
    Instruction("json", 'Reply only with a JSON object that has the key "answer".',
                ({"check": "valid_json", "keys": ["answer"]},)),
    Instruction("lowercase", "Write your whole reply in lowercase letters, with no capital "
                "letters at all.", ({"check": "all_lowercase"},)),
    Instruction("no_preamble", "Give the answer directly, without any preamble such as "
                "'Sure' or 'Here is'.", ({"check": "no_preamble"},)),
    Instruction("ends_with", 'End your reply with the exact phrase "Hope this helps."',
                ({"check": "ends_with", "phrase": "Hope this helps."},)),
)


def style_prompts(questions: Sequence[Mapping], instructions: Sequence[Instruction] = INSTRUCTIONS,
                  per_instruction: int = QUESTIONS_PER_INSTRUCTION) -> list[dict]:
    """One prompt record per (instruction, question, position).

    `questions` are rows {"question", "family"}; instruction k takes questions k·q, k·q+1, ...
    (q = per_instruction, wrapping around), so different instructions mostly get different
    questions. Each record: {"messages", "question", "family", "instruction", "position",
    "checks"}.

        >>> ps = style_prompts([{"question": "Where?", "family": "f"}], INSTRUCTIONS[:1], 1)
        >>> [p["messages"] for p in ps]  # doctest: +NORMALIZE_WHITESPACE
        [[{'role': 'system', 'content': 'Answer with exactly one word.'},
          {'role': 'user', 'content': 'Where?'}],
         [{'role': 'user', 'content': 'Where? Answer with exactly one word.'}]]
    """
    if not questions:
        return []
    out = []
    for k, ins in enumerate(instructions):
        for j in range(per_instruction):
            q = questions[(k * per_instruction + j) % len(questions)]
            for position in POSITIONS:
                if position == "system":
                    messages = [{"role": "system", "content": ins.text},
                                {"role": "user", "content": q["question"]}]
                else:
                    messages = [{"role": "user", "content": f"{q['question']} {ins.text}"}]
                out.append({"messages": messages, "question": q["question"],
                            "family": q.get("family"), "instruction": ins.name,
                            "position": position, "checks": [dict(c) for c in ins.checks]})
    return out


def score_style(prompts: Sequence[Mapping], responses: Sequence[str]) -> list[dict]:
    """Sample records: each prompt's reply, its per-check results and whether all passed."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    samples = []
    for p, r in zip(prompts, responses):
        results = run_checks(r, p["checks"])
        failed = [c["check"] for c, ok in zip(p["checks"], results) if not ok]
        samples.append({"prompt": p["messages"][-1]["content"],
                        "system": (p["messages"][0]["content"] if p["position"] == "system"
                                   else None),
                        "family": p.get("family"), "instruction": p["instruction"],
                        "position": p["position"], "response": r, "checks": p["checks"],
                        "followed": not failed,
                        "judgment": "followed" if not failed else "not followed",
                        "why": "all checks pass" if not failed else f"failed: {', '.join(failed)}"})
    return samples


def style_metrics(samples: Sequence[Mapping]) -> dict[str, dict]:
    return {"style/adherence": rate_metric(samples, "followed", ["instruction", "position"])}


def _questions(ctx: EvalContext) -> list[dict]:
    """Single-turn held-out questions, interleaved across families (round robin)."""
    by_family: dict[str, list[dict]] = {}
    for r in build_world(ctx.world).heldout:
        if len(r["messages"]) == 2:
            by_family.setdefault(r["family"], []).append(
                {"question": r["messages"][0]["content"], "family": r["family"]})
    columns = [by_family[f] for f in sorted(by_family)]
    return [col[i] for i in range(max(map(len, columns), default=0)) for col in columns
            if i < len(col)]


@register_suite("style")
def style(ctx: EvalContext) -> SuiteResult:
    per = QUESTIONS_PER_INSTRUCTION if ctx.limit is None else min(ctx.limit,
                                                                   QUESTIONS_PER_INSTRUCTION)
    prompts = style_prompts(_questions(ctx), INSTRUCTIONS, per)
    responses = ctx.respond([p["messages"] for p in prompts])
    samples = score_style(prompts, responses)
    return SuiteResult(style_metrics(samples), samples)
