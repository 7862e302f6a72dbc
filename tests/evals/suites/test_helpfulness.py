"""`helpfulness` suite: win-rate arithmetic, both-order judging, and end-to-end runs."""
import math

import pytest

from alignkit.contract.specs import DecodeSpec
from alignkit.data.templates import resolve_chat_template
from alignkit.evals.judges import exact_match_judge, prompt_text
from alignkit.evals.suite import EvalContext
from alignkit.evals.suites import helpfulness as hp
from alignkit.models.loading import load_model
from alignkit.world.build import WorldConfig, build_world

WORLD = WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2)


@pytest.fixture(scope="module")
def tiny():
    return load_model("builtin:world-tiny")


def make_ctx(tiny, **kw):
    tpl = resolve_chat_template(tiny.tokenizer, None)
    return EvalContext(tiny.model, tiny.tokenizer, tpl, DecodeSpec(max_new_tokens=4), world=WORLD,
                       limit=1, **kw)


def test_win_rate_by_hand_with_family_slices():
    # verdicts a, a, b, tie: (1 + 1 + 0 + 0.5) / 4 = 0.625; family x: a, a -> 1.0; y: b, tie -> 0.25
    m = hp.win_rate_metrics(["a", "a", "b", "tie"], [5, 5, 5, 5], [5, 5, 5, 5], ["x", "x", "y", "y"],
                            n_inconsistent=1)
    wr = m["helpfulness/win_rate"]
    assert wr["value"] == pytest.approx(0.625) and wr["n"] == 4
    assert wr["slices"]["family"]["x"]["value"] == 1.0
    assert wr["slices"]["family"]["y"]["value"] == pytest.approx(0.25)
    assert wr["lo"] < 0.625 < wr["hi"]
    # equal lengths: the LC fit has only the intercept, σ(θ) = raw win rate 0.625 (the ridge
    # penalty 1e-3 moves it by about l2·θ/(n·p(1-p)) = 1e-3·0.51/(4·0.234) ≈ 5e-4)
    assert m["helpfulness/lc_win_rate"]["value"] == pytest.approx(0.625, abs=1e-3)
    assert m["helpfulness/judge_inconsistency"]["value"] == pytest.approx(0.25)


def test_lc_win_rate_by_hand_two_length_groups():
    """Two equal groups, Δlen = +10 and −10: sd(Δ) = 10, feature ±t with t = tanh(1).

    The fit is saturated: σ(θ + φt) = 3/4 (model longer: 3 of 4 won), σ(θ − φt) = 2/4, so
    θ = (logit 0.75 + logit 0.5) / 2 = ln(3)/2 and LC = σ(θ) = √3 / (1 + √3) = 0.63397,
    while the raw win rate is 5/8 = 0.625 (l2 = 1e-3 moves θ by ~1e-4).
    """
    verdicts = ["a", "a", "a", "b"] + ["a", "a", "b", "b"]
    len_model = [20] * 4 + [10] * 4
    len_ref = [10] * 4 + [20] * 4
    m = hp.win_rate_metrics(verdicts, len_model, len_ref)
    assert m["helpfulness/win_rate"]["value"] == pytest.approx(0.625)
    want = math.sqrt(3) / (1 + math.sqrt(3))
    lc = m["helpfulness/lc_win_rate"]
    assert lc["value"] == pytest.approx(want, abs=5e-4) and lc["n"] == 8
    assert lc["lo"] <= lc["value"] <= lc["hi"]


def test_position_biased_judge_gives_only_ties():
    always_first = lambda p, x, y: "a"  # noqa: E731
    res = hp.judge_both_orders(always_first, ["q1", "q2", "q3"], ["A1", "A2", "A3"], ["B1", "B2", "B3"])
    assert res.verdicts == ["tie", "tie", "tie"] and res.n_inconsistent == 3
    assert res.ab == ["first"] * 3 and res.ba == ["first"] * 3


def test_end_to_end_position_biased_judge_win_rate_one_half(tiny):
    ref = load_model("builtin:world-tiny")
    ctx = make_ctx(tiny, reference=ref, judge=lambda p, x, y: "a")
    res = hp.helpfulness(ctx)
    n = len(build_world(WORLD).families)  # limit 1 per family
    assert res.metrics["helpfulness/exact_match"]["n"] == n
    assert res.metrics["helpfulness/win_rate"]["value"] == 0.5
    assert res.metrics["helpfulness/win_rate"]["n"] == n
    assert res.metrics["helpfulness/judge_inconsistency"]["value"] == 1.0
    assert res.metrics["helpfulness/lc_win_rate"]["value"] == pytest.approx(0.5, abs=1e-9)
    judged = [s for s in res.samples if s.get("kind") == "win_rate"]
    assert len(judged) == n and {s["judgment"] for s in judged} == {"tie"}


def test_end_to_end_win_rate_moves_with_correctness(tiny, monkeypatch):
    """The model answers every row correctly, the reference never: win rate 1, EM 1."""
    rows = [r for r in build_world(WORLD).heldout]
    answer_of = {prompt_text(r["messages"][:-1]): r["answer"] for r in rows}
    ref = load_model("builtin:world-tiny")
    real = hp.exact_match_eval

    def fake_eval(model, tokenizer, template, rows, decode):
        out = real(model, tokenizer, template, rows, decode)
        for s, r in zip(out["samples"], rows):
            s["response"] = r["answer"] if model is tiny.model else "no idea"
            s["correct"] = model is tiny.model
        return out

    monkeypatch.setattr(hp, "exact_match_eval", fake_eval)
    ctx = make_ctx(tiny, reference=ref, judge=exact_match_judge(answer_of))
    res = hp.helpfulness(ctx)
    assert res.metrics["helpfulness/exact_match"]["value"] == 1.0
    assert res.metrics["helpfulness/win_rate"]["value"] == 1.0
    assert res.metrics["helpfulness/judge_inconsistency"]["value"] == 0.0
    # separable verdicts: the ridge keeps θ finite, LC stays close to 1
    assert res.metrics["helpfulness/lc_win_rate"]["value"] > 0.9


def test_without_reference_or_judge_win_rates_are_skipped_with_a_note(tiny):
    res = hp.helpfulness(make_ctx(tiny))
    assert set(res.metrics) == {"helpfulness/exact_match"}
    notes = [s for s in res.samples if s.get("kind") == "note"]
    assert len(notes) == 1 and "--reference" in notes[0]["note"] and "--judge" in notes[0]["note"]
    res = hp.helpfulness(make_ctx(tiny, reference=tiny))
    notes = [s["note"] for s in res.samples if s.get("kind") == "note"]
    assert set(res.metrics) == {"helpfulness/exact_match"} and "--judge" in notes[0] \
        and "--reference" not in notes[0]
