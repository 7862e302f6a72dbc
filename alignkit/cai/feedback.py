"""AI preference labels (RL-CAI / RLAIF, Bai et al. 2022 §4): a feedback model compares two replies.

For a conversation x, replies a and b and a comparison principle (a question such as "Which
reply is less harmful?"), the feedback model sees the multiple-choice prompt of
`alignkit.cai.prompts.feedback_conversation` and we read its next-token log-probs of the two
answer choices ("A", "B"):

    p_AB(A) = p(A) / (p(A) + p(B)) = σ(log p(A) − log p(B))            a shown as (A), b as (B)

**Position bias.** Language models favour one position (Zheng et al. 2023, "Judging
LLM-as-a-judge", §3.3). Each comparison is therefore asked in both orders; with b shown as (A)
the probability that a is preferred is 1 − p_BA(A), and the two readings are averaged:

    p_θ(a ≻ b) = (p_AB(A) + 1 − p_BA(A)) / 2

**Ensembling.** Bai et al. (§4.1) ensemble over principles to make labels more robust: the
label is the mean over the comparison principles used, p = (1/K) Σ_k p_θk.

**Clamping.** §4.2 clamps chain-of-thought labels to [0.4, 0.6] (they were over-confident and
then trained worse); optionally the same here: p ← min(max(p, lo), hi).

The label of a pair is p = P(a ≻ b). A preference row orients the pair so that `chosen` is the
reply with p ≥ 0.5 and stores `chosen_prob` = max(p, 1 − p) ∈ [0.5, 1] (the soft label that
`alignkit prefer` reads with `loss: cdpo`, see docs/cai.md), with its provenance: feedback
model digest, the principle ids, the prompt template and constitution digests.

    >>> round(order_debiased(0.8, 0.4), 6)
    0.7
    >>> round(choice_probability(0.0, 0.0), 6)
    0.5
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from alignkit.cai.constitution import Comparison
from alignkit.cai.prompts import Messages, PromptSpec, feedback_conversation

# conversations -> one (log p(choice A), log p(choice B)) per conversation
ChoiceScorer = Callable[[Sequence[Messages]], Sequence[Sequence[float]]]


# ---------------------------------------------------------------------------- the arithmetic

def choice_probability(logp_a: float, logp_b: float) -> float:
    """p(A) / (p(A) + p(B)) from two log-probs: σ(log p(A) − log p(B)), computed stably."""
    d = float(logp_a) - float(logp_b)
    if not math.isfinite(d):
        if math.isnan(d):
            raise ValueError(f"choice log-probs must be numbers, got {logp_a!r}, {logp_b!r}")
        return 1.0 if d > 0 else 0.0
    return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))


def order_debiased(p_ab: float, p_ba: float) -> float:
    """P(a ≻ b) from both orders: (p_AB(A) + 1 − p_BA(A)) / 2.

    `p_ab` = probability of answer A with a shown as (A); `p_ba` = probability of answer A with
    b shown as (A). E.g. 0.8 and 0.4 -> (0.8 + 0.6) / 2 = 0.7.
    """
    for name, p in (("p_ab", p_ab), ("p_ba", p_ba)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {p!r}")
    return (p_ab + 1.0 - p_ba) / 2.0


def ensemble(probs: Sequence[float]) -> float:
    """Mean over principles: (1/K) Σ_k p_k."""
    if not probs:
        raise ValueError("cannot ensemble an empty list of probabilities")
    return sum(probs) / len(probs)


def clamp(p: float, bounds: tuple[float, float] | None) -> float:
    """min(max(p, lo), hi); `None` leaves p unchanged."""
    if bounds is None:
        return p
    lo, hi = bounds
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"clamp bounds must satisfy 0 <= lo <= hi <= 1, got {bounds!r}")
    return min(max(p, lo), hi)


# ---------------------------------------------------------------------------- labelling

@dataclass(frozen=True)
class Pair:
    """Two replies to one conversation. `reference` = which one a human or gold grader prefers
    ("a", "b"), when known — used only to measure agreement, never to label."""

    prompt: Messages
    a: str
    b: str
    reference: str | None = None
    meta: Mapping = field(default_factory=dict)  # passed through to the output row (id, category…)


@dataclass(frozen=True)
class PairLabel:
    """The AI label of one pair: P(a ≻ b) and how it was put together."""

    prob_a: float  # after ensembling and clamping
    principle_ids: tuple[str, ...]  # the comparison principles asked, in order
    per_principle: tuple[dict, ...]  # {"id", "p_ab", "p_ba", "p"} per principle
    unclamped: float  # the ensemble mean before clamping

    @property
    def choice(self) -> str | None:
        """'a', 'b', or None for an exact tie."""
        return "a" if self.prob_a > 0.5 else "b" if self.prob_a < 0.5 else None


def label_pairs(score: ChoiceScorer, pairs: Sequence[Pair], comparisons: Sequence[Comparison],
                spec: PromptSpec, *, clamp_to: tuple[float, float] | None = None,
                per_pair: int | None = None, seed: int = 0) -> list[PairLabel]:
    """Label every pair with `score` (the feedback model), both orders, ensembled, clamped.

    `per_pair` = how many comparison principles to draw at random (without replacement) for each
    pair; None = all of them. All prompts go to `score` in one call.
    """
    if not comparisons:
        raise ValueError("label_pairs needs at least one comparison principle")
    if per_pair is not None and not 1 <= per_pair <= len(comparisons):
        raise ValueError(f"per_pair must lie in [1, {len(comparisons)}], got {per_pair}")
    rng = random.Random(f"cai-feedback-{seed}")
    chosen: list[list[Comparison]] = [
        list(comparisons) if per_pair is None else rng.sample(list(comparisons), per_pair)
        for _ in pairs]
    convs: list[Messages] = []
    for pair, comps in zip(pairs, chosen):
        for c in comps:
            convs.append(feedback_conversation(pair.prompt, pair.a, pair.b, c.question, spec))
            convs.append(feedback_conversation(pair.prompt, pair.b, pair.a, c.question, spec))
    logps = list(score(convs)) if convs else []
    if len(logps) != len(convs):
        raise ValueError(f"the scorer returned {len(logps)} results for {len(convs)} prompts")
    labels, k = [], 0
    for comps in chosen:
        parts = []
        for c in comps:
            p_ab = choice_probability(*logps[k][:2])
            p_ba = choice_probability(*logps[k + 1][:2])
            k += 2
            parts.append({"id": c.id, "p_ab": p_ab, "p_ba": p_ba, "p": order_debiased(p_ab, p_ba)})
        mean = ensemble([x["p"] for x in parts])
        labels.append(PairLabel(clamp(mean, clamp_to), tuple(c.id for c in comps), tuple(parts),
                                mean))
    return labels


def preference_row(pair: Pair, label: PairLabel, provenance: Mapping) -> dict:
    """An explicit conversational preference row (TRL form) with the soft label.

    chosen = the reply the AI prefers (a on an exact tie); `chosen_prob` = P(chosen ≻ rejected).
    """
    a_wins = label.prob_a >= 0.5
    chosen, rejected = (pair.a, pair.b) if a_wins else (pair.b, pair.a)
    row = {**dict(pair.meta),
           "prompt": [dict(m) for m in pair.prompt],
           "chosen": [{"role": "assistant", "content": chosen}],
           "rejected": [{"role": "assistant", "content": rejected}],
           "chosen_prob": label.prob_a if a_wins else 1.0 - label.prob_a,
           "ai_label": {"prob_a": label.prob_a, "unclamped": label.unclamped,
                        "per_principle": [dict(x) for x in label.per_principle]},
           "provenance": {**dict(provenance), "principle_ids": list(label.principle_ids)}}
    if pair.reference is not None:
        row["reference_choice"] = pair.reference
        row["agrees_with_reference"] = label.choice == pair.reference
    return row


def position_bias(labels: Sequence[PairLabel]) -> float:
    """Mean of p_AB(A) + p_BA(A) − 1 over every asked comparison: 0 without position bias,
    > 0 when the model favours answer A whatever it shows there."""
    values = [x["p_ab"] + x["p_ba"] - 1.0 for lab in labels for x in lab.per_principle]
    return sum(values) / len(values) if values else float("nan")


def order_consistency(labels: Sequence[PairLabel]) -> float:
    """Share of comparisons whose two orders pick the same reply (p_AB(A) and 1 − p_BA(A) on
    the same side of 0.5)."""
    flags = [(x["p_ab"] > 0.5) == (1.0 - x["p_ba"] > 0.5)
             for lab in labels for x in lab.per_principle]
    return sum(flags) / len(flags) if flags else float("nan")


__all__ = ["ChoiceScorer", "Pair", "PairLabel", "choice_probability", "clamp", "ensemble",
           "label_pairs", "order_consistency", "order_debiased", "position_bias",
           "preference_row"]
