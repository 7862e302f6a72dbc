"""n-gram decontamination of training rows against evaluation sets.

A training row is *contaminated* when it shares a word n-gram with an evaluation row (GPT-3,
Brown et al. 2020, App. C: 13-grams; lm-evaluation-harness' decontamination uses 13-grams by
default). Both sides are normalised the same way as for dedup (`normalise_for_dedup`:
NFKC, lowercase, punctuation and symbols -> space) and split on whitespace, so "What is 2+2?"
and "what is 2 + 2" share their n-grams.

Short evaluation rows: an eval row with fewer than n words has no n-gram, so it could never
be found. As in GPT-3 App. C (where n shrinks for datasets of short examples, never below 8),
such a row is checked with its whole word sequence as one m-gram (m = its length) when
m >= `min_n` (default 8); rows shorter than that are counted as ``too_short`` and not checked
(matching a 4-word question would flag every row that happens to contain it).

Every contaminated training row is reported with the eval rows it overlaps (``file:line``,
plus the row's own ``id`` if it has one) and the first shared n-gram; the report also lists,
per overlapping eval row, the training rows it was found in.

    >>> index = EvalIndex.build([("eval.jsonl", 1, None, "one two three four five six seven eight")], n=13)
    >>> hits = index.find("so: one two three four five six seven eight, done")
    >>> [h.eval_key for h in hits], hits[0].ngram
    (['eval.jsonl:1'], 'one two three four five six seven eight')
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from alignkit.errors import ConfigError
from alignkit.synth.dedup import normalise_for_dedup


def words(text: str) -> list[str]:
    return normalise_for_dedup(text).split()


@dataclass(frozen=True)
class EvalRow:
    file: str
    line: int
    id: object  # the row's own "id" field, or None

    @property
    def key(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Hit:
    eval_key: str  # "file:line" of the eval row
    eval_id: object  # its "id" field, or None
    ngram: str  # the first shared n-gram (normalised words)


@dataclass
class EvalIndex:
    """n-grams of every eval row -> the eval rows that contain them."""

    n: int
    min_n: int
    grams: dict[tuple[str, ...], list[EvalRow]] = field(default_factory=dict)
    lengths: set[int] = field(default_factory=set)  # gram lengths to look up (n and short rows)
    n_rows: int = 0
    too_short: list[str] = field(default_factory=list)  # keys of eval rows not checked

    @classmethod
    def build(cls, rows: Iterable[tuple[str, int, object, str]], *, n: int = 13,
              min_n: int = 8) -> "EvalIndex":
        """`rows`: (file, line, id, text) of every eval row."""
        if n < 1 or not 1 <= min_n <= n:
            raise ConfigError(f"need n >= 1 and 1 <= min_n <= n, got n={n}, min_n={min_n}")
        index = cls(n=n, min_n=min_n)
        for file, line, row_id, text in rows:
            index.n_rows += 1
            row = EvalRow(file, line, row_id)
            toks = words(text)
            if len(toks) < min_n:
                index.too_short.append(row.key)
                continue
            m = min(n, len(toks))
            index.lengths.add(m)
            seen = set()
            for i in range(len(toks) - m + 1):
                gram = tuple(toks[i:i + m])
                if gram not in seen:
                    seen.add(gram)
                    index.grams.setdefault(gram, []).append(row)
        return index

    def find(self, text: str) -> list[Hit]:
        """Eval rows sharing an indexed gram with `text`, each once, in order of first match."""
        toks = words(text)
        hits: dict[str, Hit] = {}
        for m in sorted(self.lengths, reverse=True):
            for i in range(len(toks) - m + 1):
                for row in self.grams.get(tuple(toks[i:i + m]), ()):
                    if row.key not in hits:
                        hits[row.key] = Hit(row.key, row.id, " ".join(toks[i:i + m]))
        return list(hits.values())


def contamination(texts: Sequence[str], index: EvalIndex) -> dict[int, list[Hit]]:
    """{training row: its hits} for every contaminated row."""
    out = {}
    for i, text in enumerate(texts):
        hits = index.find(text)
        if hits:
            out[i] = hits
    return out


def overlap_report(found: dict[int, list[Hit]], index: EvalIndex) -> dict:
    """Which eval rows overlapped which training rows, for report.json."""
    by_eval: dict[str, dict] = {}
    for row, hits in sorted(found.items()):
        for h in hits:
            entry = by_eval.setdefault(h.eval_key, {"eval": h.eval_key, "id": h.eval_id,
                                                    "ngram": h.ngram, "train_rows": []})
            entry["train_rows"].append(row)
    return {"n": index.n, "min_n": index.min_n, "eval_rows": index.n_rows,
            "eval_rows_too_short": len(index.too_short),
            "too_short_examples": index.too_short[:20],
            "eval_rows_overlapping": len(by_eval),
            "train_rows_contaminated": len(found),
            "overlaps": list(by_eval.values())}
