"""Pairwise judges: functions `judge(prompt, a, b) -> "a" | "b" | "tie"`.

This is the judge protocol of `EvalContext.judge`: "a" means the reply shown first wins, "b" the
reply shown second. A judge only sees positions; which system sits in which position is the
caller's business (`alignkit.evals.winrate.pairwise_verdicts` asks in both orders, so a judge
with a position bias produces ties, not wins). `pairwise_judge(judge)` adapts such a judge to
`pairwise_verdicts`' "first" / "second" / "tie" answers.

Two judges are built in:

- `reward_model_judge(reward_model, tokenizer, template)`: the reply with the higher reward wins,
  a tie when the rewards differ by at most `margin`. The conversation is encoded exactly as the
  reward stage encodes a (prompt, response) pair, through the same chat template.
- `exact_match_judge(answers)`: for rows with a checkable answer (the built-in world's tasks); a
  correct reply beats a wrong one, two correct or two wrong replies tie.

`prompt` is a string (one user message). For multi-turn prompts the caller flattens the
conversation to a string with `prompt_text`; `reward_model_judge` also accepts the conversation
itself (a list of messages), which it then encodes turn by turn.

    >>> judge = exact_match_judge({"2+2?": "4"})
    >>> judge("2+2?", "4.", "5"), judge("2+2?", "5", "4"), judge("2+2?", "3", "5")
    ('a', 'b', 'tie')
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from alignkit.data.templates import ChatTemplate
from alignkit.evals.exact_match import normalize_answer

Prompt = Union[str, Sequence[Mapping[str, Any]]]
Judge = Callable[[Prompt, str, str], str]
JUDGE_VERDICTS = ("a", "b", "tie")


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The string a judge sees for the conversation `messages` (the turns before the reply).

    A single user message is its content, unchanged; a longer conversation becomes a transcript,
    one "role: content" line per message, so that its earlier turns are not lost.

        >>> prompt_text([{"role": "user", "content": "Hi"}])
        'Hi'
        >>> prompt_text([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
        ...              {"role": "user", "content": "Bye"}])
        'user: Hi\\nassistant: Yo\\nuser: Bye'
    """
    if len(messages) == 1 and messages[0].get("role") == "user":
        return str(messages[0]["content"])
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _conversation(prompt: Prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def pairwise_judge(judge: Judge) -> Callable[[Prompt, str, str], str]:
    """Adapt an "a"/"b"/"tie" judge to `winrate.pairwise_verdicts` ("first"/"second"/"tie").

    Answers already in the "first"/"second" form pass through; anything else is a ValueError
    naming the answer.

        >>> pairwise_judge(lambda p, x, y: "a")("q", "x", "y")
        'first'
    """
    to_position = {"a": "first", "b": "second", "tie": "tie", "first": "first",
                   "second": "second"}

    def wrapped(prompt: Prompt, first: str, second: str) -> str:
        answer = judge(prompt, first, second)
        if answer not in to_position:
            raise ValueError(f"judge answered {answer!r}; expected one of {JUDGE_VERDICTS}")
        return to_position[answer]

    return wrapped


def reward_model_judge(reward_model: Any, tokenizer: Any, template: ChatTemplate, *,
                       margin: float = 0.0, max_length: int | None = None) -> Judge:
    """A judge from a reward model (`alignkit.models.heads.RewardModel`): higher reward wins.

    r(x, y) is the reward of the conversation prompt + one assistant message y, encoded with
    `encode_messages(tokenizer, template, ...)`, i.e. the token ids the reward stage trained on
    (`encode_preference` gives prompt + response the same ids). The verdict is "a" when
    r(x, a) − r(x, b) > margin, "b" when r(x, b) − r(x, a) > margin, else "tie". Rewards are
    cached per (prompt, reply), so judging a pair in both orders costs two forwards, not four.
    `max_length` keeps the first `max_length` tokens (as the reward stage does).
    """
    import torch

    from alignkit.data.encode import encode_messages

    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or margin < 0:
        raise ValueError(f"margin must be a non-negative number, got {margin!r}")
    device = next(reward_model.parameters()).device
    cache: dict[tuple[str, str], float] = {}

    def reward(prompt: Prompt, reply: str) -> float:
        key = (prompt if isinstance(prompt, str) else repr(_conversation(prompt)), reply)
        if key not in cache:
            conv = _conversation(prompt) + [{"role": "assistant", "content": reply}]
            ids = encode_messages(tokenizer, template, conv, max_length=max_length).input_ids
            was_training = reward_model.training
            reward_model.eval()
            try:
                with torch.no_grad():
                    r = reward_model(torch.tensor([ids], device=device),
                                     torch.ones((1, len(ids)), dtype=torch.long, device=device))
            finally:
                reward_model.train(was_training)
            cache[key] = float(r[0])
        return cache[key]

    def judge(prompt: Prompt, a: str, b: str) -> str:
        diff = reward(prompt, a) - reward(prompt, b)
        return "a" if diff > margin else "b" if diff < -margin else "tie"

    judge.rewards = cache  # type: ignore[attr-defined]  (inspectable: what the judge saw)
    return judge


def exact_match_judge(answers: Mapping[str, str]) -> Judge:
    """A judge for prompts with known answers: a correct reply beats a wrong one.

    `answers` maps the prompt string (as the judge receives it; see `prompt_text`) to its gold
    answer. A reply is correct when `normalize_answer(reply) == normalize_answer(answer)`, the
    rule of `alignkit.evals.exact_match`. Both correct or both wrong: "tie". A prompt without an
    answer is a KeyError naming it.
    """
    gold = {str(k): normalize_answer(str(v)) for k, v in answers.items()}

    def judge(prompt: Prompt, a: str, b: str) -> str:
        key = prompt if isinstance(prompt, str) else prompt_text(_conversation(prompt))
        if key not in gold:
            raise KeyError(f"exact_match_judge has no answer for prompt {key[:80]!r}")
        ok_a = normalize_answer(a) == gold[key]
        ok_b = normalize_answer(b) == gold[key]
        return "a" if ok_a and not ok_b else "b" if ok_b and not ok_a else "tie"

    return judge


__all__ = ["JUDGE_VERDICTS", "Judge", "exact_match_judge", "pairwise_judge", "prompt_text",
           "reward_model_judge"]
