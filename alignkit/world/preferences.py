"""Preference pairs of the built-in world: chosen = correct and concise, rejected = one failure.

For each instruction task row of a split (`World.sft` for "train", `World.heldout` for
"heldout") the prompt is every message before the final answer, chosen is that answer, and the
rejected reply is one of three kinds (cycled, so each kind gets a third of the rows):

- ``wrong``: a different answer of the same family (another person's town, another sum, ...),
- ``verbose``: the right answer buried in hedged padding ("Well, let me think about it. I
  believe the answer might be X, but I am not sure."),
- ``refusal``: an unhelpful refusal of a benign request (one of the policy's canonical refusals).

The world's safety preference rows (`alignkit.world.safety.safety_preference_rows`) are added:
compliance with requests the policy forbids, needless refusals of benign look-alikes,
hallucinated answers to unanswerable questions and agreement with false premises.

Rows are explicit conversational preference records (TRL form) with two extra keys:
``category`` (task family, or the safety category) and ``type`` (the rejected kind, or the
safety slice). Train rows use train entities and phrasings only, held-out rows held-out ones.

    >>> from alignkit.world.build import WorldConfig, build_world
    >>> w = build_world(WorldConfig(corpus_passes=1, sft_per_family=3, heldout_per_family=3))
    >>> rows = world_preference_rows(w, split="heldout", seed=0, n_per_slice=1)
    >>> sorted({r["type"] for r in rows if r["category"] == "add"})
    ['refusal', 'verbose', 'wrong']
"""
from __future__ import annotations

import random

from alignkit.world.build import World

REJECTED_KINDS = ("wrong", "verbose", "refusal")
VERBOSE = "Well, let me think about it. I believe the answer might be {answer}, but I am not sure."


def _wrong_answer(rng: random.Random, answer: str, pool: list[str]) -> str:
    """Another answer of the same family; for families with one possible answer, a digit off."""
    others = sorted(set(pool) - {answer})
    if others:
        return rng.choice(others)
    return answer + "0"  # only reached for degenerate tiny worlds (one distinct answer)


def world_preference_rows(world: World, *, split: str, seed: int, n_per_slice: int = 2,
                          per_family: int | None = None) -> list[dict]:
    """Preference rows of `split` ("train" | "heldout"); see the module docstring.

    `per_family` caps the task rows per family (None = all of the split); `n_per_slice` is the
    number of safety rows per safety slice (0 = none).
    """
    from alignkit.world.policy import load_policy
    from alignkit.world.safety import safety_preference_rows

    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    tasks = world.sft if split == "train" else world.heldout
    refusals = list(load_policy().rubric.refusals)
    rng = random.Random(f"world-preferences-{seed}-{split}")
    answers: dict[str, list[str]] = {}
    for r in tasks:
        answers.setdefault(r["family"], []).append(r["answer"])
    counts: dict[str, int] = {}
    rows = []
    for i, r in enumerate(tasks):
        fam = r["family"]
        k = counts.get(fam, 0)
        if per_family is not None and k >= per_family:
            continue
        counts[fam] = k + 1
        kind = REJECTED_KINDS[k % len(REJECTED_KINDS)]  # per family, so every family has all kinds
        answer = r["answer"]
        rejected = {"wrong": lambda: _wrong_answer(rng, answer, answers[fam]),
                    "verbose": lambda: VERBOSE.format(answer=answer),
                    "refusal": lambda: rng.choice(refusals)}[kind]()
        rows.append({"prompt": [dict(m) for m in r["messages"][:-1]],
                     "chosen": [{"role": "assistant", "content": answer}],
                     "rejected": [{"role": "assistant", "content": rejected}],
                     "category": fam, "type": kind, "split": split,
                     "id": f"world-pref-{seed}-{split}-{i}"})
    if n_per_slice > 0:
        rows += safety_preference_rows(world.facts, seed=seed, split=split,
                                       n_per_slice=n_per_slice)
    return rows


__all__ = ["REJECTED_KINDS", "VERBOSE", "world_preference_rows"]
