"""The arithmetic and the data set-up of benchmarks/sft_vs_trl.py and benchmarks/matmul_peak.py.

Nothing here is timed; the benchmark itself is run by hand (see benchmarks/RESULTS.md).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


svt = _load("sft_vs_trl")
peak = _load("matmul_peak")


def test_steady_state_by_hand():
    """Steps end at 1, 3, 4, 6, 7 s with 50, 100, 100, 200, 100 tokens; warm-up 2 skips steps 1-2.
    Window: end of step 2 (3 s) to end of step 5 (7 s) = 4 s; tokens 100 + 200 + 100 = 400
    -> 100 tokens/s over 3 steps."""
    r = svt.steady_state([1.0, 3.0, 4.0, 6.0, 7.0], [50, 100, 100, 200, 100], 2)
    assert r == {"tokens_per_s": 100.0, "steady_tokens": 400, "steady_s": 4.0,
                 "steady_steps": 3, "warmup_steps": 2}
    # warmup 0 still needs a start mark: the window opens at the end of step 1
    # (6 s for steps 2-5, 500 tokens -> 83.33 tokens/s)
    assert svt.steady_state([1.0, 3.0, 4.0, 6.0, 7.0], [50, 100, 100, 200, 100], 0)[
        "tokens_per_s"] == pytest.approx(500 / 6)


def test_steady_state_refuses_bad_input():
    with pytest.raises(ValueError, match="2 step times but 3 token counts"):
        svt.steady_state([1.0, 2.0], [1, 2, 3], 0)
    with pytest.raises(ValueError, match="warm-up"):
        svt.steady_state([1.0, 2.0, 3.0], [1, 2, 3], 3)


def test_spread_by_hand():
    assert svt.spread([5.0, 1.0, 3.0, 9.0]) == {"median": 4.0, "min": 1.0, "max": 9.0, "n": 4}


def test_flop_counts_by_hand():
    """Llama layer, hidden 8, intermediate 16, 4 heads, 2 KV heads (kv width 4):
    q, o 8·8 each = 128; k, v 8·4 each = 64; MLP 3·8·16 = 384; norms 2·8 = 16 -> 592 per layer,
    x 3 layers = 1776. Training FLOPs per token: 6 x 1776 = 10656."""
    n = svt.non_embedding_params(8, 3, 16, 4, 2)
    assert n == 1776
    assert svt.model_flops_per_token(n) == 10656


def test_non_embedding_params_match_the_real_model():
    """The formula against transformers' own Llama: all parameters minus embedding, head and
    final norm."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32, **{**svt.MODEL_SHAPE, "num_hidden_layers": 2})
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    total = sum(p.numel() for p in model.parameters())
    outside = 2 * 32 * cfg.hidden_size + cfg.hidden_size  # embedding, head, final norm
    assert svt.non_embedding_params(cfg.hidden_size, 2, cfg.intermediate_size,
                                    cfg.num_attention_heads, cfg.num_key_value_heads) == total - outside


def test_gemm_gflops_by_hand():
    """n = 500: 2·500³ = 2.5e8 FLOPs; in 0.025 s that is 1e10 FLOP/s = 10 GFLOP/s."""
    assert peak.gemm_gflops(500, 0.025) == pytest.approx(10.0)


def _run(mode, rnd, tps, rss):
    return {"mode": mode, "round": rnd, "tokens_per_s": tps, "peak_rss_mb": rss,
            "trained_tokens": 10, "total_tokens": 20, "steps": 4, "steady_steps": 1}


def test_summary_ratio_rss_verdict_and_mfu_by_hand():
    """Two rounds. TRL nopack 100 and 300 tokens/s (median 200), bfd 50 and 70 (median 60):
    best TRL = nopack. alignkit 500 and 700 (median 600) -> ratio 600 / 200 = 3.0; per round
    500/100 = 5.0 and 700/300 = 2.333. RSS: leanest TRL median = nopack (1000 + 1200)/2 = 1100;
    alignkit's worst run 1150 > 1100 -> RSS target not met. MFU with 1000 non-embedding params
    and a 1.2 MFLOP/s peak (1.2e-3 GFLOP/s): 6·1000·600 / 1.2e6 = 3.0."""
    runs = [_run("trl-nopack", 0, 100, 1000), _run("trl-bfd", 0, 50, 3000),
            _run("alignkit", 0, 500, 900), _run("trl-nopack", 1, 300, 1200),
            _run("trl-bfd", 1, 70, 3100), _run("alignkit", 1, 700, 1150)]
    s = svt.summarize(runs, {"non_embedding_params": 1000}, 1.2e-3)
    v = s["verdict"]
    assert v["best_trl_mode"] == "trl-nopack"
    assert v["speed_ratio"] == pytest.approx(3.0) and v["speed_target_met"]
    assert v["per_round_ratios"] == pytest.approx([5.0, 7 / 3])
    assert v["trl_peak_rss_mb"] == 1100 and not v["rss_target_met"]
    assert s["table"]["alignkit"]["mfu"] == pytest.approx(3.0)
    assert s["table"]["trl-bfd"]["ratio_vs_best_trl"] == pytest.approx(60 / 200)


def test_conversations_are_seeded_and_in_range():
    rows, filler = svt.make_conversations(20, seed=3)
    again, _ = svt.make_conversations(20, seed=3)
    other, _ = svt.make_conversations(20, seed=4)
    assert rows == again and rows != other
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
        for m in r["messages"]:
            n = len(m["content"].split())
            assert (10 <= n <= 60) if m["role"] == "user" else (20 <= n <= 120)
    assert len(filler) == 200


def test_both_sides_train_the_same_tokens():
    """On the benchmark's tokenizer and template, alignkit's assistant labels are exactly
    transformers' `{% generation %}` assistant mask (what TRL's assistant_only_loss uses)
    plus the newline after each assistant <|im_end|> (2 tokens per two-turn conversation);
    the token ids are identical."""
    from alignkit.data.encode import encode_messages
    from alignkit.data.templates import resolve_chat_template

    rows, filler = svt.make_conversations(6, seed=0)
    tok = svt.build_tokenizer([m["content"] for r in rows for m in r["messages"]] + filler)
    assert len(tok) == svt.VOCAB
    template = resolve_chat_template(tok, None)
    for r in rows:
        ex = encode_messages(tok, template, r["messages"], train_on="all", max_length=4096)
        hf = tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True,
                                     return_assistant_tokens_mask=True)
        assert ex.input_ids == hf["input_ids"]
        ours = {i for i, label in enumerate(ex.labels) if label != -100}
        theirs = {i for i, m in enumerate(hf["assistant_masks"]) if m}
        assert theirs < ours
        assert [tok.convert_ids_to_tokens(ex.input_ids[i]) for i in sorted(ours - theirs)] == ["Ċ", "Ċ"]
