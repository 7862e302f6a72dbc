"""The Self-Instruct filters on generated instructions, applied in a fixed order.

Wang et al. 2022 ("Self-Instruct: Aligning Language Models with Self-Generated Instructions",
§2.2 "Filtering and postprocessing") keep a generated instruction only if it is not too similar
to any instruction already in the pool (ROUGE-L F > 0.7 rejects), is neither too short nor too
long, contains no keyword that a text-only model cannot act on (image, graph, file, ...), and
does not start with punctuation or a non-ASCII character. We add two cheap duplicate checks
before ROUGE-L so that the per-filter counts say *why* a candidate went.

A candidate is attributed to the **first** filter that rejects it, in the order of `FILTERS`:

==================  ===============================================================================
bad_start           first character is ASCII punctuation (``string.punctuation``) or non-ASCII
length              fewer than `min_words` or more than `max_words` whitespace-separated words
blacklist           contains a blacklisted keyword as a whole word/phrase, case-insensitive
exact_duplicate     identical (after trimming surrounding whitespace) to a pool instruction
near_duplicate      same rouge-score tokens as a pool instruction: differs only in case,
                    punctuation or spacing ("Write a poem." vs "write a poem")
rouge_l             ROUGE-L F-measure > `rouge_threshold` with some pool instruction
==================  ===============================================================================

"Pool" includes the instructions kept earlier in the same round, as in Self-Instruct, where
each kept instruction joins the pool before the next candidate is checked.

Deviation, on purpose: the released Self-Instruct code drops instructions of 3 words or fewer;
here the range is inclusive (3 to 150 words are kept), as alignkit's issue 7 specifies.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from alignkit.synth.rouge import Match, RougeLIndex, rouge_tokens

FILTERS = ("bad_start", "length", "blacklist", "exact_duplicate", "near_duplicate", "rouge_l")

# Keywords from Self-Instruct §2.2: tasks a language model cannot do from text alone.
DEFAULT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                     "map", "maps", "draw", "plot", "go to", "video", "audio", "music",
                     "flowchart", "diagram")


def _keyword_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    # Whole words only ("map" must not reject "mapping"); a phrase matches across any spacing.
    parts = [r"\s+".join(re.escape(w) for w in word.split()) for word in words]
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.IGNORECASE)


@dataclass
class Verdict:
    """Whether a candidate is kept, the filter that removed it, and its nearest pool instruction."""

    kept: bool
    reason: str | None  # one of FILTERS, None when kept
    nearest: Match | None = None  # set once the ROUGE-L filter ran (kept, or rejected by it)


@dataclass
class InstructionFilter:
    """The filter chain plus the pool it compares against.

        >>> f = InstructionFilter()
        >>> f.add("Write a poem about the sea.", key="seed_1")
        >>> f.check("Draw a map of your town.").reason
        'blacklist'
        >>> f.check("write a poem about the sea").reason
        'near_duplicate'
    """

    min_words: int = 3
    max_words: int = 150
    blacklist: tuple[str, ...] = DEFAULT_BLACKLIST
    rouge_threshold: float = 0.7
    index: RougeLIndex = field(default_factory=RougeLIndex)

    def __post_init__(self) -> None:
        self._pattern = _keyword_pattern(tuple(self.blacklist))
        self._exact: set[str] = set()
        self._tokens: set[tuple[str, ...]] = set()

    def add(self, instruction: str, key: str = "") -> None:
        """Put an instruction in the pool (seed, earlier round, or just kept)."""
        text = instruction.strip()
        self._exact.add(text)
        self._tokens.add(tuple(rouge_tokens(text)))
        self.index.add(text, key)

    def check(self, instruction: str) -> Verdict:
        """Run the filters in order; does not add the instruction to the pool."""
        text = instruction.strip()
        if not text or text[0] in string.punctuation or not text[0].isascii():
            return Verdict(False, "bad_start")
        n_words = len(text.split())
        if n_words < self.min_words or n_words > self.max_words:
            return Verdict(False, "length")
        if self._pattern is not None and self._pattern.search(text):
            return Verdict(False, "blacklist")
        if text in self._exact:
            return Verdict(False, "exact_duplicate")
        if tuple(rouge_tokens(text)) in self._tokens:
            return Verdict(False, "near_duplicate")
        nearest = self.index.best_match(text)
        if nearest.score > self.rouge_threshold:
            return Verdict(False, "rouge_l", nearest)
        return Verdict(True, None, nearest)


__all__ = ["DEFAULT_BLACKLIST", "FILTERS", "InstructionFilter", "Verdict"]
