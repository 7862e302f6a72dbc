"""Verifiable formatting instructions, checked by code (in the spirit of IFEval).

IFEval (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models") scores a
response by instructions whose satisfaction a program can decide ("answer in at most 50 words",
"wrap the answer in JSON"). These are our own implementations of a few such checks; each is a
pure function `check(response, **kwargs) -> bool`, gathered in `CHECKS`, so an eval suite names
them in a config: ``{"check": "max_words", "n": 50}``.

Conventions (stated because IFEval's choices differ in detail):
- A *word* is a maximal run of letters/digits, with inner apostrophes or hyphens kept
  ("don't", "state-of-the-art" are one word); punctuation and markdown symbols are not words.
- A *bullet item* is a line whose first non-space characters are "*", "-" or "•" followed by
  a space (markdown bullets). Numbered lines ("1.") are not bullets.
- Leading/trailing whitespace of the response is ignored by every check.

    >>> CHECKS["max_words"]("Paris is the capital.", n=4)
    True
    >>> run_checks("sure, here it is", [{"check": "no_preamble"}, {"check": "all_lowercase"}])
    [False, True]
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence

_WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")
_BULLET = re.compile(r"^\s*[*\-\u2022]\s+\S")
_FENCE = re.compile(r"^```[A-Za-z]*\s*\n(.*)\n```$", re.DOTALL)
DEFAULT_PREAMBLES = ("sure", "certainly", "of course", "absolutely", "here is", "here's",
                     "here are", "okay", "ok", "great question", "i'd be happy", "i would be happy",
                     "happy to help", "no problem")


def _count(n: object, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    return n


def words(response: str) -> list[str]:
    """The words of `response` under this module's convention.

        >>> words("It's a state-of-the-art, 2-step plan!")
        ["It's", 'a', 'state-of-the-art', '2-step', 'plan']
    """
    return _WORD.findall(response)


def max_words(response: str, n: int) -> bool:
    """At most `n` words."""
    return len(words(response)) <= _count(n)


def exactly_one_word(response: str) -> bool:
    """Exactly one word (punctuation around it is allowed: "Yes." passes)."""
    return len(words(response)) == 1


def bullet_list(response: str, n: int) -> bool:
    """Exactly `n` markdown bullet items ("* x", "- x" or "• x" lines)."""
    return sum(bool(_BULLET.match(line)) for line in response.splitlines()) == _count(n)


def valid_json(response: str, keys: Sequence[str] | None = None) -> bool:
    """The response parses as JSON (a ```json fenced block is unwrapped first, as IFEval does).

    With `keys`, the value must be an object that has every key in `keys`.
    """
    text = response.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if keys is None:
        return True
    if isinstance(keys, str):
        raise ValueError("keys must be a list of key names, not a single string")
    return isinstance(value, dict) and all(k in value for k in keys)


def no_preamble(response: str, phrases: Sequence[str] = DEFAULT_PREAMBLES) -> bool:
    """The response does not open with a filler phrase ("Sure", "Here is", "Certainly", ...).

    Matching is case-insensitive and on whole words: "Surely not" opens with "surely", which is
    not "sure", so it passes.
    """
    head = response.strip().lower().replace("\u2019", "'")
    for phrase in phrases:
        p = phrase.lower()
        if head.startswith(p) and (len(head) == len(p) or not head[len(p)].isalnum()):
            return False
    return True


def all_lowercase(response: str) -> bool:
    """No uppercase letters, and at least one letter (an empty or digits-only reply fails)."""
    text = response.strip()
    return any(c.isalpha() for c in text) and text == text.lower()


def ends_with(response: str, phrase: str, ignore_case: bool = False) -> bool:
    """The response (trailing whitespace ignored) ends with `phrase`, exactly by default."""
    if not isinstance(phrase, str) or not phrase.strip():
        raise ValueError(f"phrase must be a non-empty string, got {phrase!r}")
    text, end = response.rstrip(), phrase.strip()
    if ignore_case:
        text, end = text.lower(), end.lower()
    return text.endswith(end)


CHECKS: dict[str, Callable[..., bool]] = {
    "max_words": max_words,
    "exactly_one_word": exactly_one_word,
    "bullet_list": bullet_list,
    "valid_json": valid_json,
    "no_preamble": no_preamble,
    "all_lowercase": all_lowercase,
    "ends_with": ends_with,
}


def run_checks(response: str, instructions: Sequence[Mapping]) -> list[bool]:
    """Apply each instruction ``{"check": NAME, **kwargs}`` to `response`; one bool each.

    A response follows a prompt "strictly" (IFEval's prompt-level strict accuracy) when all
    are True. An unknown check name or bad argument is a ValueError naming the instruction.
    """
    results = []
    for i, spec in enumerate(instructions):
        kwargs = dict(spec)
        name = kwargs.pop("check", None)
        if name not in CHECKS:
            raise ValueError(f"instruction {i}: unknown check {name!r}; known: {sorted(CHECKS)}")
        try:
            results.append(bool(CHECKS[name](response, **kwargs)))
        except TypeError as e:
            raise ValueError(f"instruction {i} ({name}): {e}") from None
    return results
