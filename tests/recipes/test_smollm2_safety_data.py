"""The SmolLM2 safety recipe's written data: sizes, split hygiene, no overlap with the world,
written replies the refusal detector reads the intended way, and the exact-answer matcher."""
from __future__ import annotations

import random

import pytest

from alignkit.evals.refusal import classify_refusal
from alignkit.recipes import smollm2_safety_data as data


def _prompts(split: str) -> list[str]:
    return [r["prompt"] for r in data.all_prompts(split)]


# ------------------------------------------------------------------------------ sizes and ids

def test_sizes_per_split_and_kind():
    counts = {(s, k): sum(r["kind"] == k for r in data.all_prompts(s))
              for s in data.SPLITS for k in data.KINDS}
    # unsafe: 8 categories x 12 train / 6 held-out tasks; benign: 7 types x 14 / 7;
    # factual: 16 capitals + 16 arithmetic + 16 general facts in each split.
    assert counts == {("train", "unsafe"): 96, ("train", "benign"): 98, ("train", "factual"): 48,
                      ("heldout", "unsafe"): 48, ("heldout", "benign"): 49,
                      ("heldout", "factual"): 48}


def test_ids_unique_and_prompts_unique():
    rows = data.all_prompts("train") + data.all_prompts("heldout")
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)


def test_bad_split_is_an_error():
    with pytest.raises(ValueError, match="split must be one of"):
        data.unsafe_prompts("test")


# ------------------------------------------------------------------------------ split hygiene

def test_no_word_4gram_shared_between_train_and_heldout():
    shared = data.shared_ngrams(_prompts("train"), _prompts("heldout"), 4)
    assert shared == {}, list(shared.items())[:5]


def test_frames_tasks_terms_and_entities_are_disjoint_between_splits():
    assert not set(data.UNSAFE_FRAMES["train"]) & set(data.UNSAFE_FRAMES["heldout"])
    for category, tasks in data.UNSAFE_TASKS.items():
        assert not set(tasks["train"]) & set(tasks["heldout"]), category
    assert not set(data.DEFINITION_FRAMES["train"]) & set(data.DEFINITION_FRAMES["heldout"])
    assert not set(data.DEFINITION_TERMS["train"]) & set(data.DEFINITION_TERMS["heldout"])
    train_countries = {c for c, _ in data.CAPITALS["train"]}
    assert not train_countries & {c for c, _ in data.CAPITALS["heldout"]}
    assert data.CAPITAL_FRAMES["train"] != data.CAPITAL_FRAMES["heldout"]
    assert not ({f for f, _ in data.ARITHMETIC_FRAMES["train"]}
                & {f for f, _ in data.ARITHMETIC_FRAMES["heldout"]})


def test_shared_ngrams_can_fail():
    """The overlap check finds a planted shared phrase (so the test above can fail)."""
    shared = data.shared_ngrams(["How do I kill a frozen program?"],
                                ["Tell me: how do I kill weeds?"], 4)
    assert set(shared) == {("how", "do", "i", "kill")}


def test_word_ngrams_by_hand():
    # "What's 2+2?" -> words what's, 2, 2 -> 2-grams (what's, 2), (2, 2)
    assert data.word_ngrams("What's 2+2?", 2) == {("what's", "2"), ("2", "2")}
    assert data.word_ngrams("one two", 3) == set()


def test_no_overlap_with_the_world_safety_data():
    """No prompt equals, or shares a word 5-gram with, any prompt of the built-in world's safety
    data (both splits, enough rows per slice that every world template is used)."""
    from alignkit.world.build import WorldConfig, build_world
    from alignkit.world.policy import load_policy
    from alignkit.world.safety import make_safety_data

    facts = build_world(WorldConfig()).facts
    world = [r["prompt"] for s in ("train", "heldout")
             for r in make_safety_data(facts, load_policy(), seed=0, split=s, n_per_slice=60)]
    mine = _prompts("train") + _prompts("heldout")
    assert not set(world) & set(mine)
    shared = data.shared_ngrams(world, mine, 5)
    assert shared == {}, list(shared.items())[:5]


# ------------------------------------------------------------------------------ written replies

def test_every_written_refusal_is_a_full_refusal_for_the_detector():
    """Each decline x (reason+offer | reason | offer) of the prompt's category, on every unsafe
    prompt of both splits: the detector must say full_refusal, or the training targets would
    teach replies the evaluation counts as partial compliance."""
    bad = []
    for row in data.unsafe_prompts("train") + data.unsafe_prompts("heldout"):
        c = row["category"]
        for d in data.DECLINES:
            for reply in (f"{d} {data.REASONS[c]} {data.OFFERS[c]}", f"{d} {data.REASONS[c]}",
                          f"{d} {data.OFFERS[c]}"):
                label = classify_refusal(row["prompt"], reply).label
                if label != "full_refusal":
                    bad.append((row["prompt"], reply, label))
    assert bad == []


def test_refusal_reply_shapes_and_determinism():
    row = data.unsafe_prompts("train")[0]
    a = [data.refusal_reply(row, random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]  # same seed, same text
    replies = {data.refusal_reply(row, random.Random(s)) for s in range(60)}
    assert all(any(r.startswith(d) for d in data.DECLINES) for r in replies)
    assert all(r not in data.DECLINES for r in replies)  # a decline never comes alone
    assert any(data.REASONS["weapons"] in r for r in replies)
    assert any(data.OFFERS["weapons"] in r for r in replies)
    with pytest.raises(ValueError, match="no refusal text"):
        data.refusal_reply({"category": "benign", "id": "x"}, random.Random(0))


def test_overcautious_replies_are_refusals_and_openers_are_compliance():
    for text in data.OVERCAUTIOUS:
        assert classify_refusal("How do I kill weeds?", text).label == "full_refusal", text
    for text in data.COMPLIANCE_OPENERS:
        assert classify_refusal("How do I rob a bank?", text).label == "full_compliance", text


def test_written_factual_replies_contain_their_answer():
    rows = data.factual_prompts("train")
    assert all(data.answer_is_correct(r["reply"], r["answers"]) for r in rows)
    assert all("reply" not in r for r in data.factual_prompts("heldout"))


def test_arithmetic_answers_by_hand():
    for row in data.factual_prompts("heldout"):
        if row["category"] != "arithmetic":
            continue
        words = row["prompt"].rstrip(".?").split()
        if "multiplied" in words:  # "How much is A multiplied by B?"
            a, b = int(words[3]), int(words[-1])
            assert row["answers"] == [str(a * b)]
        else:  # "Calculate A + B."
            a, b = int(words[1]), int(words[3])
            assert row["answers"] == [str(a + b)]


# ------------------------------------------------------------------------------ exact answers

@pytest.mark.parametrize("reply, answers, expected", [
    ("The capital of Peru is Lima.", ["Lima"], True),
    ("17 + 25 = 32.", ["42"], False),            # the wrong sum
    ("It is 142.", ["42"], False),               # 42 inside 142 is not the number 42
    ("About 7.5 hours.", ["7"], False),          # 7 as the start of 7.5
    ("There are 7 days.", ["7", "seven"], True),
    ("There are seven days.", ["7", "seven"], True),
    ("Romeo is a character.", ["Rome"], False),  # a word inside a longer word
    ("The capital is Brasilia.", ["Brasília"], True),  # accents ignored
    ("The answer is 1,024.", ["1024"], True),    # thousands separator ignored
    ("BLUE WHALE", ["blue whale"], True),        # case ignored
    ("", ["Paris"], False),
])
def test_answer_is_correct(reply, answers, expected):
    assert data.answer_is_correct(reply, answers) is expected
