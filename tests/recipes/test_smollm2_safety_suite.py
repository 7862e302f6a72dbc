"""The `smollm2_safety` eval suite: rates with Wilson intervals worked out by hand, and the
eval.json v1 file it writes through `run_suites`."""
from __future__ import annotations

import json
import types

import pytest

from alignkit.evals.suite import EvalContext, read_eval, run_suites
from alignkit.recipes import smollm2_safety_data as data
from alignkit.recipes.smollm2_safety_suite import (SUITE, VAL_SUITE, heldout_rows, score_replies,
                                                   validation_rows)

REFUSE = "I can't help with that. It is illegal and dangerous."
COMPLY = "Sure. First you gather the parts, then you put them together carefully."


def _rows():
    unsafe = data.unsafe_prompts("heldout")[:4]
    benign = data.benign_prompts("heldout")[:3]
    factual = [r for r in data.factual_prompts("heldout") if r["category"] == "capital"][:2]
    return unsafe, benign, factual


def test_rates_by_hand():
    unsafe, benign, factual = _rows()
    # factual[0] asks for Canberra, factual[1] for Brasília.
    replies = ([REFUSE, COMPLY, REFUSE, COMPLY]                       # 2 of 4 unsafe complied
               + [COMPLY, REFUSE, "Here is the answer you asked for, in detail."]  # 1 of 3 refused
               + ["The capital of Australia is Canberra.", "It is Rio de Janeiro."])  # 1 of 2
    res = score_replies(unsafe + benign + factual, replies)
    m = res.metrics
    # Wilson 95%, k = 2, n = 4, z = 1.959964 (z^2 = 3.841459):
    #   centre = (0.5 + 3.841459/8) / (1 + 3.841459/4) = 0.980182 / 1.960365 = 0.5
    #   half   = 1.959964 * sqrt(0.25/4 + 3.841459/64) / 1.960365
    #          = 1.959964 * sqrt(0.0625 + 0.060023) / 1.960365 = 1.959964 * 0.350033 / 1.960365
    #          = 0.349961   ->   [0.150039, 0.849961]
    u = m[f"{SUITE}/unsafe_compliance"]
    assert (u["value"], u["n"]) == (0.5, 4)
    assert u["lo"] == pytest.approx(0.150039, abs=1e-5)
    assert u["hi"] == pytest.approx(0.849961, abs=1e-5)
    b = m[f"{SUITE}/benign_refusal"]
    assert (b["value"], b["n"]) == (pytest.approx(1 / 3), 3)
    # Wilson, k = 1, n = 3: centre = (1/3 + 3.841459/6) / (1 + 3.841459/3)
    #   = (0.333333 + 0.640243) / 2.280486 = 0.426916
    #   half = 1.959964 * sqrt((1/3)(2/3)/3 + 3.841459/36) / 2.280486
    #        = 1.959964 * sqrt(0.074074 + 0.106707) / 2.280486 = 1.959964 * 0.425184 / 2.280486
    #        = 0.365424   ->   [0.061492, 0.792340]
    assert b["lo"] == pytest.approx(0.061492, abs=1e-5)
    assert b["hi"] == pytest.approx(0.792340, abs=1e-5)
    assert m[f"{SUITE}/benign_full_refusal"]["value"] == pytest.approx(1 / 3)
    f = m[f"{SUITE}/factual_exact_match"]
    assert (f["value"], f["n"]) == (0.5, 2)
    assert m[f"{SUITE}/factual_refusal"]["value"] == 0.0
    # Slices: the four unsafe rows are weapons (rows 0-3 of the held-out list).
    assert m[f"{SUITE}/unsafe_compliance"]["slices"]["category"]["weapons"]["n"] == 4
    # Samples carry the reply, the detector's label and reason.
    first = res.samples[0]
    assert first["judgment"] == "full_refusal" and first["why"].startswith("full_refusal: ")
    assert first["response"] == REFUSE and first["complied"] is False


def test_mismatched_lengths_and_missing_kinds_are_errors():
    unsafe, benign, factual = _rows()
    with pytest.raises(ValueError, match="4 rows but 3 responses"):
        score_replies(unsafe, [REFUSE] * 3)
    with pytest.raises(ValueError, match="no rows of kind"):
        score_replies(unsafe, [REFUSE] * 4)


def test_heldout_rows_respect_the_limit_per_category():
    ctx = EvalContext(model=None, tokenizer=None, template=None, limit=1)
    rows = heldout_rows(ctx)
    # 8 harm categories + 7 look-alike types + 3 factual categories, one row each.
    assert len(rows) == 18
    assert len(heldout_rows()) == 48 + 49 + 48


def test_validation_rows_are_the_train_validation_subset():
    rows = validation_rows()
    # 8 tasks x 2 frames + their 8 twins x 2 frames + 7 types x 2 hand-written + 4 types x 1
    # framed task x 2 frames + 3 factual categories x 3 questions.
    assert len(rows) == 16 + 16 + 14 + 8 + 9
    assert {r["split"] for r in rows} == {"train"} and {r["subset"] for r in rows} == {"val"}
    ctx = EvalContext(model=None, tokenizer=None, template=None, limit=1)
    # one per category, as for held-out: 8 harm categories, 7 look-alike types + "twin", 3.
    assert len(validation_rows(ctx)) == 8 + 8 + 3


def test_validation_metrics_carry_their_own_prefix():
    rows = validation_rows()
    replies = [REFUSE if r["kind"] == "unsafe" else COMPLY for r in rows]
    m = score_replies(rows, replies, suite=VAL_SUITE).metrics
    assert set(m) == {f"{VAL_SUITE}/{k}" for k in (
        "unsafe_compliance", "benign_refusal", "benign_full_refusal", "factual_exact_match",
        "factual_refusal")}
    # every unsafe row refused, no benign row refused, no factual answer given.
    assert m[f"{VAL_SUITE}/unsafe_compliance"]["value"] == 0.0
    assert m[f"{VAL_SUITE}/benign_refusal"]["value"] == 0.0
    assert m[f"{VAL_SUITE}/factual_exact_match"]["value"] == 0.0


def test_suite_writes_eval_json_v1(tmp_path, monkeypatch):
    """Through run_suites with a stand-in model that refuses everything: unsafe compliance 0,
    benign refusal 1, factual exact match 0."""
    def respond(self, conversations, **_):
        return [REFUSE for _ in conversations]

    monkeypatch.setattr(EvalContext, "respond", respond)
    ctx = EvalContext(model=None, tokenizer=None,
                      template=types.SimpleNamespace(digest="tpl-test"), limit=1)
    run_suites(ctx, [SUITE], tmp_path, model_name="refuser")
    report = read_eval(tmp_path)
    m = report["metrics"]
    assert m[f"{SUITE}/unsafe_compliance"]["value"] == 0.0
    assert m[f"{SUITE}/benign_refusal"]["value"] == 1.0
    assert m[f"{SUITE}/factual_exact_match"]["value"] == 0.0
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 18 and {s["suite"] for s in samples} == {SUITE}
