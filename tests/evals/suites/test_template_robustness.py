"""`template_robustness` suite: spread by hand, template discovery and skipping, end-to-end."""
import pytest

import alignkit.rollout.generate as generate_mod
from alignkit.contract.specs import DecodeSpec
from alignkit.data.templates import BUILTINS, ChatTemplate, resolve_chat_template
from alignkit.evals.suite import EvalContext
from alignkit.evals.suites import template_robustness as tr
from alignkit.models.loading import load_model
from alignkit.world.build import WorldConfig, build_world

WORLD = WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2)


@pytest.fixture(scope="module")
def tiny():
    return load_model("builtin:world-tiny")


def make_ctx(tiny):
    tpl = resolve_chat_template(tiny.tokenizer, None)
    return EvalContext(tiny.model, tiny.tokenizer, tpl, DecodeSpec(max_new_tokens=4), world=WORLD,
                       limit=1)


def row(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "answer": a, "family": "f"}


def test_spread_by_hand():
    rows = [row("Q1", "Dunmere"), row("Q2", "7")]
    samples = tr.score_templates(rows, {"own": ["dunmere.", " 7"], "chatml": ["Dunmere", "8"]})
    m = tr.robustness_metrics(samples)
    em, spread = m["template_robustness/exact_match"], m["template_robustness/spread"]
    # own 2/2 = 1.0, chatml 1/2 = 0.5; pooled 3/4; spread 1.0 - 0.5 = 0.5
    assert em["value"] == 0.75 and em["n"] == 4
    assert em["slices"]["template"]["own"]["value"] == 1.0
    assert em["slices"]["template"]["chatml"]["value"] == 0.5
    assert spread["value"] == 0.5 and spread["lo"] is None and spread["hi"] is None
    assert spread["n"] == 2
    with pytest.raises(ValueError, match="template 'x': 1 replies for 2 rows"):
        tr.score_templates(rows, {"x": ["a"]})


def test_candidates_are_own_plus_builtins_and_missing_own_is_explained(tiny):
    found, skipped = tr.candidate_templates(tiny.tokenizer)
    assert list(found) == ["own", *BUILTINS] and skipped == {}
    no_template = type("Tok", (), {"chat_template": None, "bos_token": None, "eos_token": "</s>",
                                   "bos_token_id": None, "name_or_path": "t"})()
    found, skipped = tr.candidate_templates(no_template)
    assert "own" not in found and "no chat template" in skipped["own"]


def _answer_for(prompt_text):
    for r in build_world(WORLD).heldout:
        if r["messages"][-2]["content"] in prompt_text:
            return r["answer"]
    raise AssertionError(f"no row for {prompt_text!r}")


def test_end_to_end_spread_moves_and_unrenderable_templates_are_skipped(tiny, monkeypatch):
    """A fake model that answers right only inside [INST] formats (llama2, mistral)."""

    def fake_generate(model, tokenizer, prompts, decode, **kw):
        out = []
        for ids in prompts:
            text = tokenizer.decode(ids)
            reply = _answer_for(text) if "[INST]" in text else "no idea"
            out.append(tokenizer(reply, add_special_tokens=False)["input_ids"])
        return out

    real_candidates = tr.candidate_templates

    def with_a_refusing_template(tokenizer):
        found, skipped = real_candidates(tokenizer)
        found["refuser"] = ChatTemplate("refuser", "{{ raise_exception('never') }}")
        return found, skipped

    monkeypatch.setattr(generate_mod, "generate", fake_generate)
    monkeypatch.setattr(tr, "candidate_templates", with_a_refusing_template)
    res = tr.template_robustness(make_ctx(tiny))
    em = res.metrics["template_robustness/exact_match"]
    per = {k: v["value"] for k, v in em["slices"]["template"].items()}
    assert per == {"own": 0.0, "chatml": 0.0, "llama2": 1.0, "mistral": 1.0, "alpaca": 0.0,
                   "zephyr": 0.0}
    n_rows = len(build_world(WORLD).families)
    assert em["n"] == 6 * n_rows and em["value"] == pytest.approx(2 / 6)
    assert res.metrics["template_robustness/spread"]["value"] == 1.0
    notes = [s["note"] for s in res.samples if s.get("kind") == "note"]
    assert len(notes) == 1 and "'refuser' skipped" in notes[0] and "never" in notes[0]


def test_end_to_end_on_world_tiny(tiny):
    res = tr.template_robustness(make_ctx(tiny))
    em = res.metrics["template_robustness/exact_match"]
    assert set(em["slices"]["template"]) == {"own", *BUILTINS}
    per = [v["value"] for v in em["slices"]["template"].values()]
    assert res.metrics["template_robustness/spread"]["value"] == max(per) - min(per)
    assert res.metrics["template_robustness/spread"]["n"] == 6
