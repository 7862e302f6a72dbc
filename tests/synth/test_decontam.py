"""n-gram decontamination: planted 13-gram overlaps found with exact ids, near misses not."""
import pytest

from alignkit.errors import ConfigError
from alignkit.synth.decontam import EvalIndex, contamination, overlap_report

EVAL = [
    ("ev.jsonl", 1, "q1", "the quick brown fox jumps over the lazy dog near the old mill "
                          "by the river bank today"),  # 18 words
    ("ev.jsonl", 2, None, "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu "
                          "xi omicron"),  # 15 words
    ("ev.jsonl", 3, "q3", "what is two plus two"),  # 5 words: too short to check
    ("ev.jsonl", 4, "q4", "one two three four five six seven eight nine"),  # 9 words: whole row
]
GRAM1 = "jumps over the lazy dog near the old mill by the river bank"  # words 5-17 of row 1


@pytest.fixture
def index():
    return EvalIndex.build(EVAL, n=13, min_n=8)


def test_planted_overlaps_found_with_exact_ids(index):
    train = [
        "Totally unrelated text about baking bread.",                           # 0 clean
        f"Story: a cat {GRAM1.upper()}, and then it slept.",                    # 1 eval row 1
        "Greek: ALPHA beta, gamma delta epsilon zeta eta theta iota kappa lambda mu nu!",  # 2 row 2
        # 12 of row 2's words only (alpha..mu) -> no 13-gram in common
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu",    # 3 clean
        "count: one, two, three, four, five, six, seven, eight, nine.",          # 4 row 4 (whole)
        "what is two plus two",                                                  # 5 clean (q3 short)
        f"{GRAM1} and also alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu",
    ]                                                                            # 6 rows 1 and 2
    found = contamination(train, index)
    assert sorted(found) == [1, 2, 4, 6]
    assert [h.eval_key for h in found[1]] == ["ev.jsonl:1"] and found[1][0].eval_id == "q1"
    assert found[1][0].ngram == "jumps over the lazy dog near the old mill by the river bank"
    assert found[2][0].eval_key == "ev.jsonl:2" and found[2][0].eval_id is None
    assert found[2][0].ngram == "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu"
    assert found[4][0].eval_key == "ev.jsonl:4"
    assert found[4][0].ngram == "one two three four five six seven eight nine"
    assert sorted(h.eval_key for h in found[6]) == ["ev.jsonl:1", "ev.jsonl:2"]
    report = overlap_report(found, index)
    assert report["eval_rows"] == 4 and report["eval_rows_too_short"] == 1
    assert report["too_short_examples"] == ["ev.jsonl:3"]
    assert report["train_rows_contaminated"] == 4 and report["eval_rows_overlapping"] == 3
    assert {o["eval"]: o["train_rows"] for o in report["overlaps"]} == {
        "ev.jsonl:1": [1, 6], "ev.jsonl:2": [2, 6], "ev.jsonl:4": [4]}


def test_short_eval_row_needs_its_whole_word_sequence(index):
    """Row 4 (9 words, checked whole): 8 of its words in a row do not match."""
    assert contamination(["one two three four five six seven eight ten"], index) == {}


def test_gram_size_settings():
    with pytest.raises(ConfigError, match="min_n <= n"):
        EvalIndex.build(EVAL, n=8, min_n=9)
    small = EvalIndex.build(EVAL, n=5, min_n=5)  # q3 now long enough
    assert small.too_short == [] and sorted(contamination(["so what is two plus two"], small)) == [0]
