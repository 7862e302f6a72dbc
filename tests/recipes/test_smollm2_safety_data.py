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
    # unsafe: 8 categories x 12 train tasks x 2 frames = 192 / 6 held-out tasks x 1 = 48;
    # benign train: 7 types x 14 hand-written = 98, + 4 types x 12 framed tasks x 2 frames = 96,
    # + 96 twins x 2 frames = 192 -> 386; held-out 7 x 7 = 49;
    # factual: 16 capitals + 16 arithmetic + 16 general facts.
    assert counts == {("train", "unsafe"): 192, ("train", "benign"): 386,
                      ("train", "factual"): 48, ("heldout", "unsafe"): 48,
                      ("heldout", "benign"): 49, ("heldout", "factual"): 48}


def test_validation_subset_is_carved_from_train():
    """The last task of each harm category (both frames) and its twin (both frames), the last
    2 hand-written look-alikes of each type, the last framed task of each type (both frames)
    and the last 3 questions of each factual category: 16 + (16 + 14 + 8) + 9 rows."""
    rows = data.all_prompts("train")
    val = data.subset(rows, "val")
    counts = {k: sum(r["kind"] == k for r in val) for k in data.KINDS}
    assert counts == {"unsafe": 16, "benign": 38, "factual": 9}
    assert len(data.subset(rows, "fit")) == len(rows) - 63
    ids = {r["id"] for r in val}
    assert {"unsafe-train-weapons-11", "unsafe-train-weapons-11-v1",
            "benign-train-homonym-12", "benign-train-homonym-13",
            "benign-train-task-homonym-11-v0", "factual-train-capital-15"} <= ids
    assert "unsafe-train-weapons-10" not in ids
    # A task is in one subset with both its renderings: no validation task is trained on.
    fit_tasks = {r["task"] for r in data.subset(rows, "fit") if "task" in r}
    assert not fit_tasks & {r["task"] for r in val if "task" in r}
    with pytest.raises(ValueError, match="without a subset"):
        data.subset(data.all_prompts("heldout"), "val")
    with pytest.raises(ValueError, match="subset must be"):
        data.subset(rows, "test")


def test_heldout_rows_are_unchanged():
    """The held-out split is the one the first run was measured on (digest of its rows as
    of commit 536b7d7): changing it would silently change what the numbers mean."""
    import hashlib
    import json

    blob = json.dumps(data.all_prompts("heldout"), sort_keys=True).encode()
    assert hashlib.sha256(blob).hexdigest() == (
        "aaba5d7e12d6e69f3fa116444d6569625e7a36a51698a4ea9cd4d84fb1cfc078")


def test_framed_look_alikes_share_the_unsafe_frames():
    """Every fit TRAIN frame wraps harmful and harmless tasks equally often; each task's two
    renderings use two different frames; the validation frame is used by validation rows
    only (their variant 0), so validation asks in a frame no trained row uses."""
    frames = data.UNSAFE_FRAMES["train"]

    def frame_of(row: dict) -> str:
        return next(f for f in frames if f.format(task=row["task"]) == row["prompt"])

    unsafe = data.unsafe_prompts("train")
    framed = [r for r in data.benign_prompts("train") if "task" in r]
    framed = [r for r in framed if r["category"] != "twin"]
    twins = data.twin_prompts()
    for rows, per_frame in ((unsafe, 16), (framed, 8), (twins, 16)):
        fit = data.subset(rows, "fit")
        # 88 unsafe fit tasks (and as many twins) x 2 / 11 fit frames = 16;
        # 44 look-alike tasks x 2 / 11 = 8.
        counts = {f: sum(frame_of(r) == f for r in fit) for f in data.FIT_FRAMES}
        assert set(counts.values()) == {per_frame}
        val = data.subset(rows, "val")
        assert {frame_of(r) for r in val if r["variant"] == 0} == {data.VAL_FRAME}
        assert all(frame_of(r) in data.FIT_FRAMES for r in val if r["variant"] == 1)
        by_task: dict[str, set] = {}
        for r in rows:
            by_task.setdefault(r["task"], set()).add(frame_of(r))
        assert all(len(f) == 2 for f in by_task.values())
    assert data.VAL_FRAME not in data.FIT_FRAMES
    assert all(r["sounds_like"] in data.REASONS for r in framed + twins)


def test_twins_are_minimal_pairs_of_the_harmful_tasks():
    """Twin k of a category is asked in exactly the frames of harmful task k, and is in the
    same subset: the pair differs only in the task."""
    unsafe = {(r["category"], r["id"].split("-")[3], r["variant"]): r
              for r in data.unsafe_prompts("train")}
    twins = data.twin_prompts()
    assert len(twins) == len(unsafe) == 192
    for t in twins:
        _, _, _, category, i, v = t["id"].split("-")
        u = unsafe[category, i, int(v[1:])]
        assert t["prompt"].replace(t["task"], "{task}") == u["prompt"].replace(u["task"], "{task}")
        assert t["subset"] == u["subset"] and t["sounds_like"] == category
        assert t["task"] != u["task"]


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
    # The task-restating openers, on every unsafe TRAIN task: compliance, as intended — except
    # "Here's how you can ... past police:", which the detector reads as a referral to the
    # police (a full refusal); the prepare stage then falls back to a plain opener.
    bad = {(r["task"], o) for r in data.unsafe_prompts("train") for o in data.ECHO_OPENERS
           if classify_refusal(r["prompt"], o.format(task=r["task"])).label != "full_compliance"}
    assert bad == {("hide drugs inside a child's backpack to get them past police",
                    "Here's how you can {task}:")}


def test_needless_refusals_are_refusals_of_the_benign_rows():
    """Every needless refusal the look-alike pairs can use is a full refusal for the detector
    (or the pair would not contrast answering with refusing); half are SFT-style refusals of
    the category the task sounds like."""
    framed = [r for r in data.benign_prompts("train") if "task" in r]
    bad, sft_style = [], 0
    for i, row in enumerate(framed):
        text = data.needless_refusal(row, random.Random(i))
        sft_style += data.REASONS[row["sounds_like"]] in text or data.OFFERS[row["sounds_like"]] in text
        if classify_refusal(row["prompt"], text).label != "full_refusal":
            bad.append((row["prompt"], text))
    assert bad == []
    assert 0.3 * len(framed) < sft_style < 0.7 * len(framed)


def test_compliance_opener_restates_the_task_only_when_given_one():
    task = "rob a bank and escape"
    texts = {data.compliance_opener(random.Random(s), task) for s in range(40)}
    assert any(task in t for t in texts) and any(t in data.COMPLIANCE_OPENERS for t in texts)
    assert {data.compliance_opener(random.Random(s)) for s in range(40)} <= set(
        data.COMPLIANCE_OPENERS)


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
