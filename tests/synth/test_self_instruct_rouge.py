"""ROUGE-L F-measure (alignkit.synth.rouge) against hand-computed values and `rouge-score`.

ROUGE-L F = 2 * LCS / (m + n) for token counts m, n (Lin 2004), rouge-score's tokens: lower-case,
runs of characters other than a-z0-9 become spaces.
"""
import json
from pathlib import Path

import pytest

from alignkit.synth.rouge import RougeLIndex, rouge_l_f, rouge_tokens

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

SEEDS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "self_instruct_seed_tasks.jsonl"

# (reference, candidate, hand-computed F)
PAIRS = [
    # write a poem about the sea (6) / write a short poem about the ocean (7);
    # LCS = write a poem about the (5) -> 2*5/13
    ("Write a poem about the sea", "Write a short poem about the ocean", 10 / 13),
    # give three tips for staying healthy (6) / what are three tips for staying healthy (7);
    # LCS = three tips for staying healthy (5) -> 10/13
    ("Give three tips for staying healthy.", "What are three tips for staying healthy?", 10 / 13),
    # translate the sentence into french (5) / summarize the article in one sentence (6);
    # LCS = the sentence (2) -> 4/11
    ("Translate the sentence into French.", "Summarize the article in one sentence.", 4 / 11),
    # "Café" loses its non-ASCII letter: caf au lait (3) / cafe au lait (3); LCS = au lait -> 4/6
    ("Café au lait", "cafe au lait", 4 / 6),
    # same bag of words, different order: the cat sat on the mat / the mat sat on the cat (6, 6);
    # LCS = the sat on the (4) -> 8/12, although all 6 tokens are shared
    ("the cat sat on the mat", "the mat sat on the cat", 8 / 12),
    # exactly at the Self-Instruct threshold: 10 tokens each, LCS = a..g (7) -> 14/20 = 0.7
    ("a b c d e f g h i j", "a b c d e f g x y z", 0.7),
    # no token at all on one side -> 0
    ("!!!", "Write a poem", 0.0),
]


@pytest.mark.parametrize("reference,candidate,expected", PAIRS)
def test_rouge_l_matches_hand_value_and_rouge_score(reference, candidate, expected):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    reference_value = scorer.score(reference, candidate)["rougeL"].fmeasure
    assert rouge_l_f(reference, candidate) == pytest.approx(expected, abs=1e-12)
    assert rouge_l_f(reference, candidate) == pytest.approx(reference_value, abs=1e-12)
    assert rouge_l_f(candidate, reference) == pytest.approx(expected, abs=1e-12)  # F is symmetric


def test_tokens_are_rouge_score_default_tokens():
    assert rouge_tokens("Héllo, wörld! It's 3.5 km") == ["h", "llo", "w", "rld", "it", "s", "3", "5", "km"]


def test_index_best_match_equals_brute_force_and_prunes():
    rows = [json.loads(line) for line in SEEDS.read_text(encoding="utf-8").splitlines()]
    pool, queries = rows[:80], [r["instruction"] for r in rows[80:90]]
    queries.append(pool[5]["instruction"].upper())  # same tokens as a member: score 1.0
    index = RougeLIndex()
    for r in pool:
        index.add(r["instruction"], key=r["id"])
    for q in queries:
        brute = [rouge_l_f(r["instruction"], q) for r in pool]
        best = index.best_match(q)
        assert best.score == pytest.approx(max(brute), abs=1e-12)
        assert best.index == brute.index(max(brute)) and best.key == pool[best.index]["id"]
    assert index.best_match(queries[-1]).key == pool[5]["id"]
    # the bag-of-words bound must have skipped most of the 11 * 80 pairs
    assert index.n_scored < len(queries) * len(pool) / 2


def test_empty_index_and_tokenless_query():
    index = RougeLIndex()
    assert index.best_match("Write a poem").index == -1
    index.add("Write a poem", key="a")
    m = index.best_match("???")
    assert (m.index, m.key, m.score) == (-1, "", 0.0)
