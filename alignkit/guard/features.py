"""Text -> sparse feature rows by the hashing trick: word 1-2-grams and character 3-5-grams.

Each n-gram is hashed with CRC-32 (stable across processes and machines, unlike Python's
salted `hash`) into one of `dim` buckets; bit 31 of the hash picks a sign, so colliding
n-grams cancel in expectation instead of piling up (Weinberger et al. 2009, "Feature Hashing
for Large Scale Multitask Learning", the signed hash of §2). Per text, the word block and
the character block are each L2-normalised and scaled by 1/sqrt(2), so every non-empty text
is a unit vector and neither block dominates because it has more n-grams:

    x = (u / ||u|| + c / ||c||) / sqrt(2)      u: word-gram counts, c: char-gram counts

(u and c live in the same hashed space; a collision between a word and a char gram adds.)
Word n-grams catch the request ("walk me through", "poison"); character n-grams generalise
to unseen inflections and names ("poisoning", "torch"/"torched").

    >>> spec = FeatureSpec(dim=2**10)
    >>> rows = featurize(["Burn it", "burn   IT"], spec)
    >>> first, second = rows.indices[:rows.indptr[1]], rows.indices[rows.indptr[1]:]
    >>> first.tolist() == second.tolist()
    True
"""
from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters/digits, inner apostrophes kept ("don't")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


class FeatureSpec(BaseModel):
    """How texts become features; stored in the guard's config and part of its digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(2**18, ge=16)  # hashed buckets; a power of two
    word_ngrams: tuple[int, int] = (1, 2)  # (min n, max n) of word n-grams
    char_ngrams: tuple[int, int] = (3, 5)  # (min n, max n) of character n-grams
    lowercase: bool = True  # case carries little signal about intent, and doubles the grams

    @model_validator(mode="after")
    def _check(self) -> "FeatureSpec":
        if self.dim & (self.dim - 1):
            raise ValueError(f"dim must be a power of two, got {self.dim}")
        for name in ("word_ngrams", "char_ngrams"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} must be (min, max) with 1 <= min <= max, got {(lo, hi)}")
        return self


@dataclass
class SparseRows:
    """CSR rows: row i has columns indices[indptr[i]:indptr[i+1]] with the matching values."""

    indptr: np.ndarray  # (N+1,) int64
    indices: np.ndarray  # (nnz,) int64, column ids in [0, dim)
    values: np.ndarray  # (nnz,) float64
    dim: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row_ids(self) -> np.ndarray:
        """(nnz,) the row of every stored value."""
        return np.repeat(np.arange(self.n_rows), np.diff(self.indptr))

    def dot(self, w: np.ndarray) -> np.ndarray:
        """X @ w, shape (N,). np.bincount sums in index order, so the result is deterministic."""
        return np.bincount(self.row_ids(), weights=w[self.indices] * self.values,
                           minlength=self.n_rows)

    def rdot(self, r: np.ndarray) -> np.ndarray:
        """X^T @ r, shape (dim,)."""
        return np.bincount(self.indices, weights=self.values * r[self.row_ids()],
                           minlength=self.dim)


def normalise_text(text: str, lowercase: bool = True) -> str:
    """NFKC, straight quotes, single spaces (and lowercase): one spelling per visible text."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = " ".join(text.split())
    return text.lower() if lowercase else text


def _add(bucket: dict[int, float], gram: str, prefix: bytes, mask: int) -> None:
    h = zlib.crc32(prefix + gram.encode("utf-8"))
    idx = h & mask
    bucket[idx] = bucket.get(idx, 0.0) + (-1.0 if h >> 31 else 1.0)


def _block(grams: dict[int, float]) -> dict[int, float]:
    norm = math.sqrt(sum(v * v for v in grams.values()))
    # A block whose signed counts cancel exactly (rare collision) contributes nothing.
    return {k: v / norm for k, v in grams.items()} if norm > 0 else {}


def text_features(text: str, spec: FeatureSpec) -> dict[int, float]:
    """{bucket: value} of one text (see the module docstring for the formula)."""
    t = normalise_text(text, spec.lowercase)
    mask = spec.dim - 1
    words: dict[int, float] = {}
    tokens = _WORD.findall(t)
    for n in range(spec.word_ngrams[0], spec.word_ngrams[1] + 1):
        for i in range(len(tokens) - n + 1):
            _add(words, " ".join(tokens[i:i + n]), b"w:", mask)
    chars: dict[int, float] = {}
    padded = f" {t} "  # so n-grams see where the text starts and ends
    for n in range(spec.char_ngrams[0], spec.char_ngrams[1] + 1):
        for i in range(len(padded) - n + 1):
            _add(chars, padded[i:i + n], b"c:", mask)
    out: dict[int, float] = {}
    for block in (_block(words), _block(chars)):
        for k, v in block.items():
            out[k] = out.get(k, 0.0) + v / math.sqrt(2.0)
    return out


def featurize(texts: Sequence[str], spec: FeatureSpec) -> SparseRows:
    """Feature rows of `texts` (N texts -> N rows), columns sorted within each row."""
    indptr = [0]
    indices: list[int] = []
    values: list[float] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a string, got {type(text).__name__}")
        feats = text_features(text, spec)
        for k in sorted(feats):
            indices.append(k)
            values.append(feats[k])
        indptr.append(len(indices))
    return SparseRows(indptr=np.asarray(indptr, dtype=np.int64),
                      indices=np.asarray(indices, dtype=np.int64),
                      values=np.asarray(values, dtype=np.float64), dim=spec.dim)
