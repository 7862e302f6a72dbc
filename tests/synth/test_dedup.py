"""Exact and MinHash near-duplicate detection: normalisation, shingles, Jaccard, planted pairs."""
import random

import pytest

from alignkit.errors import ConfigError
from alignkit.synth.dedup import (exact_duplicates, jaccard, lsh_bands, near_duplicates,
                                  normalise_for_dedup, shingles)
from alignkit.world.facts import WORDS


def test_normalisation_ignores_case_whitespace_and_punctuation():
    assert normalise_for_dedup("  Hello,\tWORLD!!  ") == "hello world"
    assert normalise_for_dedup("don't-stop") == "don t stop"
    assert exact_duplicates(["What is 2+2?", "what is 2 + 2", "What is 2+3?", "WHAT IS 2+2"]) \
        == {1: 0, 3: 0}


def test_shingles_and_jaccard_by_hand():
    """'a b c d' word 2-grams {ab, bc, cd}; 'a b c e' {ab, bc, ce}: J = 2 / 4 = 0.5."""
    a, b = shingles("a b c d", "word", 2), shingles("A b, c e", "word", 2)
    assert a == {"a b", "b c", "c d"} and b == {"a b", "b c", "c e"}
    assert jaccard(a, b) == 0.5
    # char 3-grams of "abcd" = {abc, bcd}; of "abce" = {abc, bce}: J = 1/3
    assert jaccard(shingles("abcd", "char", 3), shingles("abce", "char", 3)) == pytest.approx(1 / 3)
    assert shingles("hi", "word", 5) == {"hi"}  # shorter than n: the text itself
    with pytest.raises(ConfigError, match="shingle kind"):
        shingles("x", "bytes", 5)


def test_one_changed_word_word_vs_char_shingles():
    """Why char shingles are the default: 30 words, word 5-grams: 26 per text, one change
    touches 5 of them -> |A ∩ B| = 21, |A ∪ B| = 31, J = 21/31 = 0.677 < 0.8."""
    words = [f"w{i:02d}" for i in range(30)]
    changed = list(words)
    changed[15] = "zzz"
    a, b = " ".join(words), " ".join(changed)
    assert jaccard(shingles(a, "word", 5), shingles(b, "word", 5)) == pytest.approx(21 / 31)
    assert jaccard(shingles(a, "char", 5), shingles(b, "char", 5)) > 0.8


def test_lsh_banding_for_threshold_0_8():
    """(b, r) = (14, 9): P(candidate | J = 0.85) = 1 - (1 - 0.85^9)^14 = 0.975."""
    b, r = lsh_bands(0.8, 128)
    assert (b, r) == (14, 9)
    assert 1 - (1 - 0.85 ** r) ** b == pytest.approx(0.975, abs=1e-3)


def _planted(seed=0, n_base=180, n_pairs=20):
    """180 random 25-40-word texts; 20 of them get a copy with one word changed and different
    punctuation/case (J >= 0.8 on char 5-grams), appended at the end."""
    rng = random.Random(seed)
    base = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 40))).capitalize() + "."
            for _ in range(n_base)]
    texts, pairs = list(base), []
    for k in range(n_pairs):
        src = k * 9
        w = base[src].rstrip(".").split()
        w[rng.randrange(len(w))] = rng.choice(WORDS)
        texts.append(" ".join(w).upper() + "!")
        pairs.append((src, len(texts) - 1))
    return texts, pairs


def test_minhash_recall_on_planted_near_duplicates_and_no_false_merges():
    texts, pairs = _planted()
    truth = [jaccard(shingles(texts[a]), shingles(texts[b])) for a, b in pairs]
    assert min(truth) >= 0.8  # every planted pair really is a near-duplicate
    found = near_duplicates(texts, threshold=0.8)
    got = {(d.of, d.row) for d in found}
    recall = sum(p in got for p in pairs) / len(pairs)
    assert recall >= 0.9
    assert got <= set(pairs)  # nothing else merged: random texts share few char 5-grams
    for d in found:
        assert d.jaccard == pytest.approx(jaccard(shingles(texts[d.of]), shingles(texts[d.row])))
        assert abs(d.jaccard_estimate - d.jaccard) < 0.15  # MinHash estimate is close


def test_clearly_different_rows_with_shared_boilerplate_are_not_merged():
    """Same template, different content: J well below 0.8, so no merge."""
    texts = [f"Please summarise the following article about {w} and list three key facts "
             f"about {w} for a school report." for w in ("volcanoes", "the french revolution",
                                                        "photosynthesis", "jazz music")]
    assert near_duplicates(texts, threshold=0.8) == []


def test_near_duplicates_skips_rows_and_rejects_bad_threshold():
    texts = ["the same long sentence about a red barn", "the same long sentence about a red barn!"]
    assert [(d.row, d.of) for d in near_duplicates(texts)] == [(1, 0)]
    assert near_duplicates(texts, skip={0}) == []
    with pytest.raises(ConfigError, match="threshold must be in"):
        near_duplicates(texts, threshold=1.5)
