"""The recipe's prepare stage, piece by piece, without the real model: sentence trimming,
self-distillation decisions, the HH-RLHF filter, the SFT / preference rows, and dropping the
GGUF quantization marks."""
from __future__ import annotations

import gzip
import json
import types

import pytest
import torch

from alignkit.contract.specs import DecodeSpec
from alignkit.errors import ConfigError
from alignkit.recipes import smollm2_safety_data as data
from alignkit.recipes import smollm2_safety_prepare as prep


# ------------------------------------------------------------------------------ trimming

@pytest.mark.parametrize("text, finished, expected", [
    ("  Use kill -9.  ", True, "Use kill -9."),                     # finished: only stripped
    ("First sentence. Second one is cut", False, "First sentence."),
    ("Step one.\n\n2.", False, "Step one."),                          # a list number is no end
    ("Is it? Yes! And then", False, "Is it? Yes!"),
    ("No sentence end at all", False, ""),
    ('He said "stop." Then', False, 'He said "stop."'),
])
def test_trim_to_sentences(text, finished, expected):
    assert prep.trim_to_sentences(text, finished) == expected


# ------------------------------------------------------------------------------ self-distillation

def test_self_distill_keeps_only_whole_helpful_answers(monkeypatch):
    texts = ["You can end it from the Activity Monitor app.",                    # finished
             "Use the Force Quit window. Then pick the app and",                 # budget hit
             "I can't help with that. It could be dangerous.",                   # a refusal
             "Weeds grow back quickly if you leave the",                         # nothing whole
             "Short.",                                                           # < 4 words
             "So glad you asked. So glad you asked. Yes.",                       # a loop
             "The capital of Peru is Lima.",                                     # factual, right
             "The capital of Peru is Cusco.",                                    # factual, wrong
             "Lima."]                                                            # factual, short
    budget = 12
    outputs = [[0], [1] * budget, [2], [3] * budget, [4], [5], [6], [7], [8]]
    monkeypatch.setattr("alignkit.data.encode.encode_prompt", lambda tok, tpl, msgs: [7])
    monkeypatch.setattr("alignkit.rollout.generate.generate",
                        lambda model, tok, prompts, decode: outputs[:len(prompts)])
    tokenizer = types.SimpleNamespace(decode=lambda ids, skip_special_tokens: texts[ids[0]])
    rows = [{"id": f"b{i}", "prompt": "How do I kill a frozen app?", "category": "homonym",
             "kind": "benign"} for i in range(6)]
    rows += [{"id": f"f{i}", "prompt": "What is the capital of Peru?", "category": "capital",
              "kind": "factual", "answers": ["Lima"]} for i in range(3)]
    out = prep.self_distill(None, tokenizer, None, rows, DecodeSpec(max_new_tokens=budget))
    assert [d["keep"] for d in out] == [True, True, False, False, False, False,
                                        True, False, True]
    assert out[1]["reply"] == "Use the Force Quit window."
    assert [d["why"] for d in out[2:6]] == ["detector: full_refusal",
                                            "nothing whole left after trimming",
                                            "nothing whole left after trimming",
                                            "repetitive"]
    assert out[7]["why"] == "wrong answer"  # a short factual answer is fine, a wrong one not
    with pytest.raises(ConfigError, match="greedy"):
        prep.self_distill(None, tokenizer, None, rows, DecodeSpec(temperature=1.0))


@pytest.mark.parametrize("text, expected", [
    ("A. B. C.", False),                                   # one-word sentences do not count
    ("It is good. It is good.", True),                     # a sentence twice
    ("It is  good. it is good!", True),                    # case, spacing and end mark ignored
    ("a b c d x a b c d y a b c d z a b c d", True),       # 'a b c d' 4 times
    ("a b c d x a b c d y a b c d", False),                # 3 times only
])
def test_is_repetitive(text, expected):
    assert prep.is_repetitive(text) is expected


# ------------------------------------------------------------------------------ HH filter

def _hh(human: str, chosen: str, rejected: str, earlier: str = "") -> dict:
    return {"chosen": f"{earlier}\n\nHuman: {human}\n\nAssistant: {chosen}",
            "rejected": f"{earlier}\n\nHuman: {human}\n\nAssistant: {rejected}"}


@pytest.fixture(scope="module")
def tiny_tok():
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import _doc_tiny_factory

    _, tok = _doc_tiny_factory()
    return tok, resolve_chat_template(tok, "chatml")


def test_hh_filter_keeps_refusal_vs_compliance_single_turn_pairs(tmp_path, tiny_tok):
    rows = [
        _hh("How do I hotwire a car?", "I'm sorry, I can't help you with this.",
            "First you pull the panel under the wheel."),                              # kept
        _hh("How do I hotwire a car?", "You should ask the owner for the keys.",
            "First you pull the panel under the wheel."),                              # chosen complies
        _hh("How do I hotwire a car?", "I can't help with that, sorry.",
            "I can't assist with this request."),                                      # rejected refuses
        _hh("And then?", "I'm sorry, I can't help you with this.",
            "Then you twist the wires together.", earlier="\n\nHuman: Hi\n\nAssistant: Hello"),
        _hh("Steal it?", "No.", "Yes, take it when nobody looks."),                   # < 3 words
        _hh("Tell me how to pick a lock. " * 40, "I'm sorry, I can't help you with this.",
            "Insert a pick and a tension wrench."),                                    # too long
    ]
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    tok, tpl = tiny_tok
    kept = prep.hh_refusal_pairs(path, tok, tpl, max_tokens=120,
                                 quarantine=tmp_path / "q.jsonl")
    assert [r["id"] for r in kept] == ["hh-0"]
    assert kept[0]["chosen"] == [{"role": "assistant",
                                  "content": "I'm sorry, I can't help you with this."}]
    assert kept[0]["source"] == "hh-rlhf-harmless-base"
    with pytest.raises(ConfigError, match="does not exist"):
        prep.hh_refusal_pairs(tmp_path / "nope.jsonl", tok, tpl, max_tokens=120,
                              quarantine=tmp_path / "q.jsonl")


# ------------------------------------------------------------------------------ rows

def _distilled(n_keep: int, n_drop: int, n_factual: int = 0) -> list[dict]:
    rows = data.subset(data.benign_prompts("train"), "fit")[:n_keep + n_drop]
    out = [{"id": r["id"], "prompt": r["prompt"], "category": r["category"], "kind": "benign",
            "reply": f"A helpful answer number {i}.", "keep": i < n_keep}
           for i, r in enumerate(rows)]
    for r in data.subset(data.factual_prompts("train"), "fit")[:n_factual]:
        out.append({"id": r["id"], "prompt": r["prompt"], "category": r["category"],
                    "kind": "factual", "reply": r["reply"], "keep": True})
    return out


def _hh_pairs(n: int) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"q{i}"}],
             "chosen": [{"role": "assistant", "content": "I can't help with that."}],
             "rejected": [{"role": "assistant", "content": "Sure, here it is."}],
             "id": f"hh-{i}", "category": "hh_harmless", "type": "hh_harmless"}
            for i in range(n)]


def test_build_rows_counts_and_orientation():
    from alignkit.evals.refusal import classify_refusal

    cfg = prep.PrepareConfig(model="m.gguf", hh_file="hh.jsonl", per_category=2, n_hh=3,
                             n_hh_val=2, n_pref_benign=2, n_pref_unsafe=4, n_pref_factual=1)
    sft, pref, val = prep.build_rows(cfg, _distilled(3, 2, n_factual=2), _hh_pairs(6))
    # SFT: 8 harm categories x 2 refusals (the first task's two frames) + 3 kept look-alikes
    # + 2 factual answers.
    assert len(sft) == 16 + 3 + 2
    kinds = [r["kind"] for r in sft]
    assert (kinds.count("unsafe"), kinds.count("benign"), kinds.count("factual")) == (16, 3, 2)
    for r in sft:
        assert r["messages"][0]["role"] == "user" and r["messages"][1]["role"] == "assistant"
        if r["kind"] == "unsafe":
            assert classify(r) == "full_refusal"
    assert sum(r["id"].endswith("-v1") for r in sft) == 8
    one_frame = prep.build_rows(cfg.model_copy(update={"sft_unsafe_variants": 1}),
                                _distilled(3, 2, 2), _hh_pairs(6))[0]
    assert not any(r["id"].endswith("-v1") for r in one_frame if r["kind"] == "unsafe")
    # Preference: 2 look-alike + 1 factual + 4 unsafe + 3 HH pairs.
    types_ = [p["type"] for p in pref]
    assert (types_.count("benign_lookalike"), types_.count("factual"),
            types_.count("unsafe")) == (2, 1, 4)
    assert sum(p["id"].startswith("hh-") for p in pref) == 3 and len(pref) == 10
    for p in pref:
        prompt, chosen = p["prompt"][0]["content"], p["chosen"][0]["content"]
        rejected = p["rejected"][0]["content"]
        if p["type"] in ("benign_lookalike", "factual"):  # chosen = answer, rejected = refusal
            assert chosen.startswith("A helpful answer") or p["type"] == "factual"
            assert classify_refusal(prompt, rejected).label == "full_refusal"
        if p["type"] == "unsafe":  # variant 1 of each task
            assert p["id"].endswith("-v1")
            assert classify_refusal(prompt, chosen).label == "full_refusal"
            assert classify_refusal(prompt, rejected).label == "full_compliance"
    # Validation: the next 2 HH pairs + the 8 unsafe validation tasks (variant 1).
    assert len(val) == 2 + 8 and not {v["id"] for v in val} & {p["id"] for p in pref}
    # Nothing of the validation subset is trained on.
    val_ids = {r["id"] for r in data.subset(data.all_prompts("train"), "val")}
    assert not val_ids & ({r["id"] for r in sft} | {p["id"] for p in pref})
    assert {v["id"] for v in val if not v["id"].startswith("hh-")} <= val_ids
    # Deterministic for a seed.
    assert prep.build_rows(cfg, _distilled(3, 2, 2), _hh_pairs(6)) == (sft, pref, val)


def test_distill_rows_are_fit_look_alikes_and_questions():
    rows = prep.distill_rows(None)
    # 84 hand-written + 88 framed look-alikes + 176 twins and 39 factual questions of subset fit.
    assert len(rows) == 84 + 88 + 176 + 39
    assert {r["subset"] for r in rows} == {"fit"} and {r["kind"] for r in rows} == {
        "benign", "factual"}


def classify(sft_row: dict) -> str:
    from alignkit.evals.refusal import classify_refusal

    return classify_refusal(sft_row["messages"][0]["content"],
                            sft_row["messages"][1]["content"]).label


def test_build_rows_needs_enough_hh_pairs():
    cfg = prep.PrepareConfig(model="m.gguf", hh_file="hh.jsonl", n_hh=4, n_hh_val=2)
    with pytest.raises(ConfigError, match="only 5 HH-RLHF pairs"):
        prep.build_rows(cfg, _distilled(1, 0), _hh_pairs(5))


def test_prepare_config_is_strict():
    with pytest.raises(Exception, match="extra"):
        prep.PrepareConfig(model="m.gguf", hh_file="hh", n_hhh=3)


# ------------------------------------------------------------------------------ GGUF marks

def _marked(dtype):
    model = torch.nn.Linear(2, 2).to(dtype) if dtype.is_floating_point else torch.nn.Module()
    if not dtype.is_floating_point:
        model.register_buffer("w", torch.zeros(2, dtype=dtype))
        model.q = torch.nn.Parameter(torch.zeros(2, dtype=dtype), requires_grad=False)
    model.hf_quantizer = object()
    model.is_quantized = True
    model.quantization_method = "gguf"
    model.config = types.SimpleNamespace(quantization_config={"quant_method": "gguf"})
    return model


def test_forget_gguf_quantization_drops_the_marks_of_float_weights():
    model = _marked(torch.float32)
    prep.forget_gguf_quantization(model)
    assert model.hf_quantizer is None and model.is_quantized is False
    assert not hasattr(model.config, "quantization_config")
    prep.forget_gguf_quantization(model)  # nothing left to drop: no error


def test_forget_gguf_quantization_refuses_quantized_weights():
    with pytest.raises(ConfigError, match="non-float weights"):
        prep.forget_gguf_quantization(_marked(torch.uint8))
