"""CAI on the world: the row selection, the teaching rows' targets, the gold grader on pairs."""
import pytest

from alignkit.cai.constitution import load_constitution
from alignkit.cai.prompts import PromptSpec
from alignkit.cai.world import (CRITIQUE_FINE_ANSWER, CRITIQUE_FINE_REFUSAL,
                                CRITIQUE_OVER_REFUSAL, WorldRows, gold_preference, harm_rank,
                                teaching_rows, world_rows)
from alignkit.errors import ConfigError

from alignkit.world.build import WorldConfig

SMALL_WORLD = WorldConfig(corpus_passes=1, sft_per_family=12, heldout_per_family=6, n_people=16)

REFUSAL = "I can't help with that."
COMPLY = "Sure, here is how to do it."
PARTIAL = "I can't help with that. Here is how anyway."


def test_harm_rank_and_gold_preference():
    assert [harm_rank(x) for x in (COMPLY, PARTIAL, REFUSAL)] == [2, 1, 0]
    assert gold_preference("unsafe", COMPLY, REFUSAL) == "b"
    assert gold_preference("unsafe", PARTIAL, COMPLY) == "a"  # partial is less harmful
    assert gold_preference("safe", REFUSAL, "Arson is a crime.") == "b"  # complying is wanted
    assert gold_preference("safe", "Yes.", "No.") is None  # the grader ranks them equal
    with pytest.raises(ValueError, match="label"):
        gold_preference("maybe", "a", "b")


def test_world_rows_select_categories_types_and_tasks():
    sel = WorldRows(n_per_slice=4, categories=["arson"], types=["unsafe_direct"], tasks=3,
                    world=SMALL_WORLD)
    rows = world_rows(sel)
    safety = [r for r in rows if r["type"] != "task"]
    assert len(safety) == 4 and {r["category"] for r in safety} == {"arson"}
    assert {r["label"] for r in safety} == {"unsafe"}
    tasks = [r for r in rows if r["type"] == "task"]
    assert 1 <= len(tasks) <= 3 and all(r["label"] == "safe" and r["response"] for r in tasks)
    with pytest.raises(ConfigError, match="unknown policy categories"):
        world_rows(WorldRows(categories=["piracy"], world=SMALL_WORLD))


def test_teaching_rows_targets():
    c = load_constitution()
    rows = world_rows(WorldRows(n_per_slice=4, categories=["poison"],
                                types=["unsafe_direct", "benign_lookalike/"], world=SMALL_WORLD))
    unsafe = next(r for r in rows if r["label"] == "unsafe")
    safe = next(r for r in rows if r["label"] == "safe")
    taught = teaching_rows([unsafe, safe], c, PromptSpec(few_shot=0), seed=0)
    # per row: 2 critiques + 2 revisions + 2 comparisons (both orders)
    assert len(taught) == 12
    last = lambda row: row["messages"][-1]["content"]  # noqa: E731
    u, s = taught[:6], taught[6:]
    assert [x["task"] for x in u] == ["critique", "revision", "critique", "revision",
                                      "comparison", "comparison"]
    # unsafe: the stub is critiqued as help with the category, both revisions are the refusal
    assert last(u[0]) == "The reply gives help with poison, which the policy forbids."
    assert u[0]["messages"][1]["content"] == unsafe["rejected"]
    assert last(u[1]) == unsafe["response"] and last(u[3]) == unsafe["response"]
    assert last(u[2]) == CRITIQUE_FINE_REFUSAL
    # safe look-alike: a needless refusal is critiqued as such; the revision is the answer
    assert last(s[0]) == CRITIQUE_OVER_REFUSAL and last(s[2]) == CRITIQUE_FINE_ANSWER
    assert last(s[1]) == safe["response"] and last(s[3]) == safe["response"]
    # comparisons: the good reply is option A in the first order, option B in the second
    assert (last(u[4]), last(u[5])) == ("A", "B")
    assert f"(A) {unsafe['response']}" in u[4]["messages"][0]["content"]
    assert f"(A) {unsafe['rejected']}" in u[5]["messages"][0]["content"]
    # the critique request comes from the constitution
    requests = {p.critique_request for p in c.principles}
    assert u[0]["messages"][2]["content"] in requests
