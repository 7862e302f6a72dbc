"""SL-CAI with a fake generator: the loop's calls, the rows and their provenance, the world's
gold metrics by hand."""
import random

import pytest

from alignkit.cai.constitution import load_constitution
from alignkit.cai.prompts import PromptSpec
from alignkit.cai.sl import Trajectory, critique_revise, read_prompts, sl_rows, world_gold_metrics

REFUSAL = "I can't help with that."


class Canned:
    """A generator that answers by what it is asked: the reply to the bare prompt, a critique
    when the last user turn is a critique request, a revision when it is a revision request.
    Every call is recorded."""

    def __init__(self, constitution, replies, revisions):
        self.crit = {p.critique_request for p in constitution.principles}
        self.rev = {p.revision_request for p in constitution.principles}
        self.replies, self.revisions, self.calls = replies, revisions, []

    def __call__(self, convs):
        self.calls.append([list(c) for c in convs])
        out = []
        for conv in convs:
            last = conv[-1]["content"]
            prompt = [m["content"] for m in conv if m["role"] == "user"
                      and m["content"] not in self.crit | self.rev][-1]  # after any demo
            if last in self.crit:
                out.append(f"critique of: {conv[-2]['content']}")
            elif last in self.rev:
                out.append(self.revisions[prompt].pop(0))
            else:
                out.append(self.replies[prompt])
        return out


def _prompt(text):
    return [{"role": "user", "content": text}]


def test_loop_critiques_the_latest_revision_under_drawn_principles():
    c = load_constitution()
    gen = Canned(c, replies={"burn it": "Sure, here is how.", "hello": "Hi there."},
                 revisions={"burn it": ["Maybe not.", REFUSAL, REFUSAL],
                            "hello": ["Hi there!", "Hello!", "Hello."]})
    trajs = critique_revise(gen, [_prompt("burn it"), _prompt("hello")], c, rounds=3,
                            spec=PromptSpec(few_shot=0), rng=random.Random(7))
    assert len(gen.calls) == 1 + 2 * 3  # replies, then (critiques, revisions) per round
    t = trajs[0]
    assert t.original == "Sure, here is how." and t.final == REFUSAL
    # round 2 critiqued round 1's revision, not the original
    assert [r["critique"] for r in t.rounds] == ["critique of: Sure, here is how.",
                                                 "critique of: Maybe not.",
                                                 f"critique of: {REFUSAL}"]
    # principles are drawn by the seeded rng, one per prompt and round, in that order
    rng = random.Random(7)
    draws = [[rng.choice(c.principles).id for _ in range(2)] for _ in range(3)]
    assert t.principle_ids == [d[0] for d in draws]
    assert trajs[1].principle_ids == [d[1] for d in draws]
    # the revision prompt = prompt, reply, critique request, critique, revision request
    rev_conv = gen.calls[2][0]
    assert [m["role"] for m in rev_conv] == ["user", "assistant", "user", "assistant", "user"]
    assert rev_conv[2]["content"] == c.principle(draws[0][0]).critique_request
    assert rev_conv[4]["content"] == c.principle(draws[0][0]).revision_request


def test_few_shot_demonstrations_come_first():
    c = load_constitution()
    gen = Canned(c, replies={"x": "y"}, revisions={"x": ["z"]})
    critique_revise(gen, [_prompt("x")], c, rounds=1, spec=PromptSpec(few_shot=1),
                    rng=random.Random(0))
    crit_conv = gen.calls[1][0]
    ex = c.examples[0]
    assert [m["content"] for m in crit_conv[:6]] == [
        ex.prompt, ex.response, c.principle(ex.principle).critique_request, ex.critique,
        c.principle(ex.principle).revision_request, ex.revision]
    assert crit_conv[6] == {"role": "user", "content": "x"}
    assert len(crit_conv) == 6 + 3


def test_empty_revision_keeps_the_previous_reply():
    c = load_constitution()
    gen = Canned(c, replies={"x": "original"}, revisions={"x": ["  ", "second"]})
    [t] = critique_revise(gen, [_prompt("x")], c, rounds=2, spec=PromptSpec(few_shot=0),
                          rng=random.Random(0))
    assert [r["empty"] for r in t.rounds] == [True, False]
    assert gen.calls[3][0][1]["content"] == "original"  # round 2 critiqued the original again
    assert t.final == "second"
    [t2] = critique_revise(Canned(c, {"x": "original"}, {"x": [""]}), [_prompt("x")], c,
                           rounds=1, spec=PromptSpec(few_shot=0), rng=random.Random(0))
    assert t2.final == "original"


def test_generator_that_drops_replies_is_an_error():
    with pytest.raises(ValueError, match="returned 0 replies for 1 prompts"):
        critique_revise(lambda convs: [], [_prompt("x")], load_constitution(), rounds=1,
                        spec=PromptSpec(few_shot=0), rng=random.Random(0))
    with pytest.raises(ValueError, match="rounds"):
        critique_revise(lambda convs: ["a"], [_prompt("x")], load_constitution(), rounds=0,
                        spec=PromptSpec(), rng=random.Random(0))


def test_rows_carry_final_revisions_helpful_replies_and_provenance():
    t = Trajectory(_prompt("burn it"), "Sure.", [
        {"principle": "harm", "critique": "bad", "revision": "No.", "empty": False},
        {"principle": "policy", "critique": "fine", "revision": REFUSAL, "empty": False}])
    prov = {"model": "mdl-a", "constitution": "const-b", "template": "tpl-c"}
    rows = sl_rows([t], [(_prompt("hello"), "Hi!")], prov, [{"id": "r1", "category": "arson"}],
                   [{"id": "h1"}])
    assert rows[0] == {"id": "r1", "category": "arson",
                       "messages": [{"role": "user", "content": "burn it"},
                                    {"role": "assistant", "content": REFUSAL}],
                       "source": "sl-cai/revision",
                       "provenance": {**prov, "principle_ids": ["harm", "policy"], "round": 2}}
    assert rows[1]["messages"][-1] == {"role": "assistant", "content": "Hi!"}
    assert rows[1]["source"] == "sl-cai/helpful" and rows[1]["id"] == "h1"
    assert rows[1]["provenance"] == {**prov, "principle_ids": [], "round": 0}


def test_world_gold_metrics_by_hand():
    comply = "Sure, here is how to set the fire."
    partial = "I can't help with that. Here is how anyway."
    def traj(orig, final):
        return Trajectory(_prompt("p"), orig, [{"principle": "harm", "critique": "",
                                                "revision": final, "empty": False}])
    trajs = [traj(comply, REFUSAL), traj(comply, partial), traj(REFUSAL, REFUSAL),
             traj(REFUSAL, comply)]
    metas = [{"label": "unsafe"}] * 4 + []
    m = world_gold_metrics(trajs + [traj(comply, comply)], metas + [{"label": "safe"}])
    # 4 unsafe rows (the safe one is left out); harm ranks: originals 2,2,0,0; finals 0,1,0,2
    assert m["world/original_compliance"]["value"] == pytest.approx(2 / 4)
    assert m["world/final_compliance"]["value"] == pytest.approx(1 / 4)
    assert m["world/final_refusal"]["value"] == pytest.approx(2 / 4)
    assert m["world/revision_less_harmful"]["value"] == pytest.approx(2 / 4)  # 2->0, 2->1
    assert m["world/revision_more_harmful"]["value"] == pytest.approx(1 / 4)  # 0->2
    # Wilson 95% for 2/4: centre (2 + 1.92) / 7.84 = 0.5, half-width 1.96*sqrt(1 + 0.96)/7.84 = 0.35
    assert m["world/revision_less_harmful"]["lo"] == pytest.approx(0.15, abs=0.005)
    assert m["world/revision_less_harmful"]["n"] == 4


def test_read_prompts_accepts_prompt_messages_and_preference_rows(tmp_path):
    import json

    path = tmp_path / "p.jsonl"
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    [(prompt, _)] = read_prompts(str(path))
    assert [m["content"] for m in prompt] == ["a", "b", "c"]  # cut after the last user turn
    path2 = tmp_path / "q.jsonl"
    path2.write_text(json.dumps({"prompt": "How?", "label": "unsafe", "category": "x",
                                 "type": "t"}) + "\n")
    [(prompt2, meta2)] = read_prompts(str(path2))
    assert prompt2 == [{"role": "user", "content": "How?"}] and meta2["label"] == "unsafe"
