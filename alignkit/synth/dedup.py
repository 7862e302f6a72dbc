"""Exact and near-duplicate removal: normalised-text hashing, and MinHash LSH.

**Exact duplicates.** Two rows are exact duplicates when their *normalised* texts are equal:
NFKC, lowercase, every punctuation or symbol character replaced by a space, whitespace runs
collapsed ("Hello,  World!" and "hello world" are the same). The first row is kept; each later
copy is an ``exact_dup`` of it.

**Near duplicates** (Broder 1997, "On the resemblance and containment of documents"; the
deduplication of Lee et al. 2022, "Deduplicating Training Data Makes Language Models Better",
§3.1, used word 5-grams and Jaccard >= 0.8). A text is the set S of its shingles, and

    J(A, B) = |S_A ∩ S_B| / |S_A ∪ S_B|.

Shingles are taken from the normalised text, either character n-grams (``char``, default
n = 5, over the normalised string with its single spaces) or word n-grams (``word``, n = 5).
Character shingles are the default because instruction data is short: changing one word of
a 30-word text changes 5 of its 26 word 5-grams (J = 21/31 = 0.68, below any usual threshold)
but only about 5 + (word length) of its ~150 character 5-grams (J ≈ 0.88). A text shorter
than n units is one shingle, itself.

A MinHash signature of ``num_perm`` hash minima estimates J: P[min h(A) = min h(B)] = J, so
the fraction of equal minima is an unbiased estimate with standard error sqrt(J(1-J)/num_perm)
(0.03 at J = 0.85, num_perm = 128). Locality-sensitive hashing splits the signature into b
bands of r rows; two texts become *candidates* when any band matches, which happens with
probability 1 - (1 - J^r)^b (Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets",
§3.4). `datasketch.MinHashLSH` picks (b, r) for the threshold by weighing false positives
against false negatives; we weigh them 0.1 : 0.9 because every candidate is then verified,
so a false positive costs only time while a false negative is a missed duplicate. For
threshold 0.8 and 128 permutations this gives b = 14, r = 9: a pair with J = 0.85 becomes a
candidate with probability 1 - (1 - 0.85^9)^14 = 0.975.

Rows are processed in order; each is compared with the rows kept so far (greedy "keep the
first of each cluster"). A candidate is confirmed when the **exact** Jaccard of the two
shingle sets is >= the threshold; the reject records both the exact value and the MinHash
estimate.

    >>> normalise_for_dedup("Hello,  World!")
    'hello world'
    >>> exact_duplicates(["A cat.", "a CAT", "a dog"])
    {1: 0}
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from alignkit.errors import ConfigError

_PUNCT_OR_SPACE = re.compile(r"[\W_]+")  # anything that is not a letter or digit
SHINGLE_KINDS = ("char", "word")
LSH_WEIGHTS = (0.1, 0.9)  # (false positive, false negative) weights for the banding choice
_INSTALL = "pip install datasketch (or: pip install 'alignkit[synth]')"


def normalise_for_dedup(text: str) -> str:
    """NFKC, lowercase, punctuation/symbols -> space, single spaces, stripped."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _PUNCT_OR_SPACE.sub(" ", text).strip()


def exact_duplicates(texts: Sequence[str]) -> dict[int, int]:
    """{i: j}: row i's normalised text equals that of the earlier row j (the first copy)."""
    first: dict[str, int] = {}
    dups: dict[int, int] = {}
    for i, text in enumerate(texts):
        key = normalise_for_dedup(text)
        if key in first:
            dups[i] = first[key]
        else:
            first[key] = i
    return dups


def shingles(text: str, kind: str = "char", n: int = 5) -> set[str]:
    """The shingle set of the normalised text (see the module docstring).

        >>> sorted(shingles("a b c", "word", 2))
        ['a b', 'b c']
        >>> shingles("Hi!", "char", 5)
        {'hi'}
    """
    if kind not in SHINGLE_KINDS:
        raise ConfigError(f"shingle kind must be one of {SHINGLE_KINDS}, got {kind!r}")
    if n < 1:
        raise ConfigError(f"shingle size must be >= 1, got {n}")
    norm = normalise_for_dedup(text)
    units: Sequence[str] = norm.split() if kind == "word" else norm
    if len(units) <= n:
        return {" ".join(units) if kind == "word" else norm}
    sep = " " if kind == "word" else ""
    return {sep.join(units[i:i + n]) for i in range(len(units) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|A ∩ B| / |A ∪ B| (1.0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _datasketch():
    try:
        import datasketch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(f"near-duplicate removal needs datasketch: {_INSTALL}") from None
    return datasketch


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(b, r): the bands and rows per band `near_duplicates` uses for this threshold."""
    lsh = _datasketch().MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


@dataclass
class NearDuplicate:
    row: int  # the later row, removed
    of: int  # the earlier, kept row it duplicates
    jaccard: float  # exact Jaccard of the two shingle sets
    jaccard_estimate: float  # MinHash estimate


def near_duplicates(texts: Sequence[str], *, threshold: float = 0.8, kind: str = "char",
                    n: int = 5, num_perm: int = 128, seed: int = 1,
                    skip: set[int] | frozenset[int] = frozenset()) -> list[NearDuplicate]:
    """Later rows whose Jaccard similarity to a kept earlier row is >= `threshold`.

    Rows in `skip` (e.g. exact duplicates already removed) are neither checked nor kept.
    """
    ds = _datasketch()
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
    if num_perm < 16:
        raise ConfigError(f"num_perm must be >= 16, got {num_perm}")
    lsh = ds.MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    kept: dict[int, tuple[set[str], object]] = {}
    found: list[NearDuplicate] = []
    for i, text in enumerate(texts):
        if i in skip:
            continue
        sh = shingles(text, kind, n)
        mh = ds.MinHash(num_perm=num_perm, seed=seed)
        mh.update_batch([s.encode("utf-8") for s in sorted(sh)])
        best: NearDuplicate | None = None
        for j in sorted(lsh.query(mh)):
            sh_j, mh_j = kept[j]
            exact = jaccard(sh, sh_j)
            if exact >= threshold and (best is None or exact > best.jaccard):
                best = NearDuplicate(i, j, exact, float(mh.jaccard(mh_j)))
        if best is not None:
            found.append(best)
        else:
            kept[i] = (sh, mh)
            lsh.insert(i, mh)
    return found
