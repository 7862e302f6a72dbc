"""Shared by the safety, over-refusal, honesty and sycophancy suites: the world's held-out
safety rows, per-slice limits, and one judged record per reply (detector label + gold label).

Judging uses the general refusal detector (`alignkit.evals.refusal.classify_refusal`) so the
suites also work on real English models; on world rows the world's own string-exact grader
(`alignkit.world.safety.world_reply_label`) is recorded beside it as `gold_label`, and the
suites report how often the two agree, so a detector error is visible rather than silent.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from alignkit.evals.refusal import RefusalLabel, classify_refusal
from alignkit.evals.suite import EvalContext
from alignkit.world.build import build_world
from alignkit.world.policy import load_policy
from alignkit.world.safety import make_safety_data

# Examples per slice of the held-out split (before `ctx.limit`); 20 gives Wilson intervals of
# about ±0.2 per slice and ±0.05 overall, at a few minutes of CPU generation for a 135M model.
N_PER_SLICE = 20


def heldout_rows(ctx: EvalContext, n_per_slice: int | None = None) -> list[dict]:
    """The world's held-out safety rows (see alignkit.world.safety for the row fields)."""
    facts = build_world(ctx.world).facts
    return make_safety_data(facts, load_policy(), seed=ctx.world.seed, split="heldout",
                            n_per_slice=n_per_slice or N_PER_SLICE)


def take_unsafe(ctx: EvalContext, rows: Sequence[dict]) -> list[dict]:
    """`ctx.take` for unsafe rows: `unsafe_direct` rows come grouped by category, so limiting
    them by `type` alone would keep only the first category; they are limited per category,
    every other slice per `type`."""
    direct = [r for r in rows if r["type"] == "unsafe_direct"]
    other = [r for r in rows if r["type"] != "unsafe_direct"]
    return ctx.take(direct, by="category") + ctx.take(other, by="type")


def user_turn(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def detector_why(label: RefusalLabel) -> str:
    """The detector's reason in one line: the cues that fired, then its unit counts."""
    cues = ", ".join(f"{c.name} ({c.text!r})" for c in label.cues)
    return f"{label.label}: {cues or 'no refusal cue'}; {label.why}"


def judge_reply(prompt: str, response: str, row: Mapping | None = None) -> dict:
    """Detector label and reason for one reply, plus the world's gold label for world rows.

    `row` is the world row the prompt came from (None for prompts from a user file); with it
    the record gets `gold_label` and `judge_agrees` (detector label == gold label, 3 classes).
    """
    from alignkit.world.safety import world_reply_label

    label = classify_refusal(prompt, response)
    rec = {"judgment": label.label, "why": detector_why(label)}
    if row is not None:
        gold = world_reply_label(response)
        rec.update(gold_label=gold, judge_agrees=gold == label.label)
    return rec


def slice_fields(row: Mapping, names: Sequence[str] = ("type", "category")) -> dict:
    return {k: row[k] for k in names if k in row}


def oracle_replies(rows: Sequence[Mapping], which: str, fallback: str):
    """A stand-in for `EvalContext.respond` that answers each world prompt with the row's
    ideal reply (`which="response"`) or its dispreferred one (`which="rejected"`), and any
    other prompt (e.g. an adaptive-attack wrapping) with `fallback`.

    For checking that the metrics move the right way without a model:
    `monkeypatch.setattr(EvalContext, "respond", oracle_replies(rows, "response", refusal))`.
    """
    if which not in ("response", "rejected"):
        raise ValueError(f"which must be 'response' or 'rejected', got {which!r}")
    table = {r["prompt"]: r[which] for r in rows}

    def respond(self, conversations, **_ignored) -> list[str]:
        return [table.get(conv[-1]["content"], fallback) for conv in conversations]

    return respond
