"""Reward functions on the built-in world's checkable tasks, for the `rl` stage.

A reward function takes parallel lists -- the prompts (the last user message's text), the
completions (decoded text, end-of-turn token dropped) and whatever per-prompt fields the data
carries (the world's tasks carry ``answers``) -- and returns one float per completion. That is
the signature `alignkit.train.rl` calls for ``kind: function`` sources too.

    >>> exact_match_reward(["What is 2 plus 3?"] * 2, [" 5.", "6"], ["5", "5"])
    [1.0, 0.0]
"""
from __future__ import annotations

from typing import Sequence

from alignkit.errors import DataError
from alignkit.evals.exact_match import normalize_answer


def exact_match_reward(prompts: Sequence[str], completions: Sequence[str],
                       answers: Sequence[str | None], **_: object) -> list[float]:
    """1.0 if ``normalize_answer(completion) == normalize_answer(answer)`` else 0.0.

    The same comparison as the held-out exact-match evaluation
    (`alignkit.evals.exact_match.exact_match_eval`: case-folded, whitespace collapsed, quotes
    and one trailing period dropped, on both sides), so the reward optimised is the metric
    reported. A prompt without an answer is a DataError naming its position.
    """
    if not len(prompts) == len(completions) == len(answers):
        raise ValueError(f"prompts ({len(prompts)}), completions ({len(completions)}) and answers "
                         f"({len(answers)}) must have the same length")
    out = []
    for i, (completion, answer) in enumerate(zip(completions, answers)):
        if answer is None:
            raise DataError("exact-match reward needs an answer for every prompt", line=i + 1,
                            field="answer")
        out.append(1.0 if normalize_answer(completion) == normalize_answer(answer) else 0.0)
    return out


__all__ = ["exact_match_reward"]
