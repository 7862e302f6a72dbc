"""ROUGE-L F-measure between instructions, computed by the `rouge-score` package, and a pool
index that finds an instruction's most similar pool member without scoring every pair.

ROUGE-L (Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries", §3.1) scores two
token sequences X (reference, length n) and Y (candidate, length m) by their longest common
subsequence LCS(X, Y):

    P = LCS / m,   R = LCS / n,   F = 2 P R / (P + R) = 2 LCS / (m + n)

Self-Instruct (Wang et al. 2022, §2.2) adds a generated instruction to the pool only when its
ROUGE-L F with every pool instruction is at most 0.7. Tokens are rouge-score's default
tokenisation without stemming (what Self-Instruct used): lower-case, every run of characters
other than ``a-z0-9`` becomes a space, split on spaces. Non-ASCII letters are therefore dropped
("wörld" -> "w", "rld"), and a text with no ASCII letter or digit has no tokens and scores 0.

Why an index: the pool grows to thousands of instructions and each candidate is compared with all
of them. Since LCS(X, Y) can never exceed the size of the multiset intersection of the two token
bags, I = |bag(X) ∩ bag(Y)|, the bound F <= 2 I / (m + n) lets the index skip every pool member
that cannot beat the best score found so far; only the survivors are scored by rouge-score.

    >>> round(rouge_l_f("Write a poem about the sea", "Write a short poem about the ocean"), 4)
    0.7692
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from alignkit.errors import ConfigError

_SCORER: Any = None
_TOKENIZER: Any = None


def _scorer() -> Any:
    """rouge-score's ROUGE-L scorer, created once (importing rouge-score pulls in nltk: slow)."""
    global _SCORER, _TOKENIZER
    if _SCORER is None:
        try:
            from rouge_score import rouge_scorer, tokenizers
        except ImportError:
            raise ConfigError("the ROUGE-L filter needs the `rouge-score` package: "
                              "pip install 'alignkit[synth]' (or pip install rouge-score)") from None
        _TOKENIZER = tokenizers.DefaultTokenizer(use_stemmer=False)
        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=_TOKENIZER)
    return _SCORER


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokens of `text` (no stemming).

        >>> rouge_tokens("It's 3.5 km!")
        ['it', 's', '3', '5', 'km']
    """
    _scorer()
    return _TOKENIZER.tokenize(text)


def rouge_l_f(reference: str, candidate: str) -> float:
    """ROUGE-L F-measure of `candidate` against `reference`, as rouge-score computes it.

    Symmetric in its two arguments (F = 2 LCS / (m + n)); 0.0 when either text has no token.
    """
    return float(_scorer().score(reference, candidate)["rougeL"].fmeasure)


@dataclass(frozen=True)
class Match:
    """The pool member most similar to a query: its position, its key, the ROUGE-L F."""

    index: int  # position in the index, in insertion order; -1 when nothing was comparable
    key: str  # the key given to `add` (e.g. the task id); "" when index is -1
    score: float  # ROUGE-L F-measure in [0, 1]


class RougeLIndex:
    """Texts to compare new instructions with; grows with `add`.

        >>> idx = RougeLIndex()
        >>> idx.add("Write a poem about the sea", key="seed_1")
        >>> m = idx.best_match("Write a short poem about the ocean")
        >>> m.key, round(m.score, 4)
        ('seed_1', 0.7692)
    """

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._keys: list[str] = []
        self._bags: list[Counter] = []
        self._lengths: list[int] = []
        self.n_scored = 0  # pairs actually scored by rouge-score (the rest were pruned)

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, text: str, key: str = "") -> None:
        tokens = rouge_tokens(text)
        self._texts.append(text)
        self._keys.append(key)
        self._bags.append(Counter(tokens))
        self._lengths.append(len(tokens))

    def best_match(self, text: str) -> Match:
        """The member with the highest ROUGE-L F against `text` (the first one on ties).

        `Match(-1, "", 0.0)` when the index is empty or when `text` or every member has no token.
        """
        tokens = rouge_tokens(text)
        bag, m = Counter(tokens), len(tokens)
        best = Match(-1, "", 0.0)
        if m == 0:
            return best
        for i, (other, n) in enumerate(zip(self._bags, self._lengths)):
            if n == 0:
                continue
            shared = sum((bag & other).values())  # multiset intersection: an upper bound on LCS
            if best.index >= 0 and 2 * shared / (m + n) <= best.score:
                continue  # cannot beat the best so far
            self.n_scored += 1
            score = rouge_l_f(self._texts[i], text)
            if best.index < 0 or score > best.score:
                best = Match(i, self._keys[i], score)
        return best


__all__ = ["Match", "RougeLIndex", "rouge_l_f", "rouge_tokens"]
