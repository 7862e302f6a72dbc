"""`style` suite: prompt construction, scoring by hand, end-to-end on world-tiny."""
import pytest

from alignkit.contract.specs import DecodeSpec
from alignkit.data.templates import resolve_chat_template
from alignkit.evals.suite import EvalContext
from alignkit.evals.suites import style as st
from alignkit.models.loading import load_model
from alignkit.world.build import WorldConfig

WORLD = WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2)

# A reply that satisfies each instruction (and one that does not).
GOOD = {"one_word": "Dunmere.", "max_words": "She lives in Dunmere.",
        "bullet_list": "- Dunmere\n- Ashby\n- Brook", "json": '{"answer": "Dunmere"}',
        "lowercase": "she lives in dunmere.", "no_preamble": "Dunmere.",
        "ends_with": "Dunmere. Hope this helps."}
BAD = {"one_word": "It is Dunmere.", "max_words": "She lives in the town of Dunmere.",
       "bullet_list": "- Dunmere\n- Ashby", "json": "Dunmere", "lowercase": "Dunmere",
       "no_preamble": "Sure, Dunmere.", "ends_with": "Hope this helps. Dunmere."}


@pytest.fixture(scope="module")
def tiny():
    return load_model("builtin:world-tiny")


def test_prompts_put_the_instruction_in_system_or_user_message():
    qs = [{"question": f"Q{i}?", "family": "f"} for i in range(3)]
    ps = st.style_prompts(qs, st.INSTRUCTIONS[:2], per_instruction=2)
    assert len(ps) == 2 * 2 * 2  # instructions x questions x positions
    # instruction 0 takes questions 0, 1; instruction 1 takes 2, then wraps to 0
    assert [p["question"] for p in ps if p["position"] == "user"] == ["Q0?", "Q1?", "Q2?", "Q0?"]
    sys_p = ps[0]
    assert sys_p["position"] == "system" and sys_p["messages"][0] == {
        "role": "system", "content": st.INSTRUCTIONS[0].text}
    user_p = ps[1]
    assert user_p["messages"] == [{"role": "user", "content": f"Q0? {st.INSTRUCTIONS[0].text}"}]
    assert st.style_prompts([], st.INSTRUCTIONS) == []


def test_every_instruction_has_a_passing_and_a_failing_reply():
    for ins in st.INSTRUCTIONS:
        p = {"messages": [{"role": "user", "content": "Q"}], "instruction": ins.name,
             "position": "user", "checks": list(ins.checks)}
        good, bad = st.score_style([p, p], [GOOD[ins.name], BAD[ins.name]])
        assert good["followed"] and not bad["followed"], ins.name
        assert bad["why"].startswith("failed: ")


def test_adherence_by_hand_with_slices():
    ins = {i.name: i for i in st.INSTRUCTIONS}

    def prompt(name, position):
        return {"messages": [{"role": "user", "content": "Q"}], "instruction": name,
                "position": position, "checks": list(ins[name].checks)}

    prompts = [prompt("one_word", "system"), prompt("one_word", "user"),
               prompt("json", "system"), prompt("json", "user")]
    replies = [GOOD["one_word"], BAD["one_word"], GOOD["json"], GOOD["json"]]
    m = st.style_metrics(st.score_style(prompts, replies))["style/adherence"]
    # 3 of 4 followed; one_word 1/2, json 2/2; system 2/2, user 1/2
    assert m["value"] == 0.75 and m["n"] == 4
    assert m["slices"]["instruction"]["one_word"]["value"] == 0.5
    assert m["slices"]["instruction"]["json"]["value"] == 1.0
    assert m["slices"]["position"]["system"]["value"] == 1.0
    assert m["slices"]["position"]["user"]["value"] == 0.5


def test_end_to_end_on_world_tiny(tiny):
    tpl = resolve_chat_template(tiny.tokenizer, None)
    ctx = EvalContext(tiny.model, tiny.tokenizer, tpl, DecodeSpec(max_new_tokens=6), world=WORLD,
                      limit=1)
    res = st.style(ctx)
    m = res.metrics["style/adherence"]
    k = len(st.INSTRUCTIONS)
    assert m["n"] == 2 * k and len(res.samples) == 2 * k
    assert set(m["slices"]["instruction"]) == {i.name for i in st.INSTRUCTIONS}
    assert {v["n"] for v in m["slices"]["position"].values()} == {k}
    # the value is what the checks say about the replies the model actually gave
    assert m["value"] == sum(s["followed"] for s in res.samples) / (2 * k)


def test_end_to_end_metric_moves_with_the_replies(tiny, monkeypatch):
    tpl = resolve_chat_template(tiny.tokenizer, None)
    ctx = EvalContext(tiny.model, tiny.tokenizer, tpl, DecodeSpec(max_new_tokens=6), world=WORLD,
                      limit=2)
    names = {i.text: i.name for i in st.INSTRUCTIONS}

    def which(conv):
        return next(n for text, n in names.items() if text in " ".join(m["content"] for m in conv))

    for replies, want in ((GOOD, 1.0), (BAD, 0.0)):
        monkeypatch.setattr(EvalContext, "respond",
                            lambda self, convs, r=replies: [r[which(c)] for c in convs])
        assert st.style(ctx).metrics["style/adherence"]["value"] == want
