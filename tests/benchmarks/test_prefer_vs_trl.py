"""The arithmetic and the data set-up of benchmarks/prefer_vs_trl.py.

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


pvt = _load("prefer_vs_trl")


def test_pair_tokens_by_hand():
    """Prompt 10, chosen 7, rejected 5: the batch processes (10 + 7) + (10 + 5) = 32 tokens, of
    which 12 are completion; prompt + chosen + rejected = 22 = (32 + 12) / 2."""
    assert pvt.pair_tokens(32, 12) == 22
    with pytest.raises(ValueError, match="even"):
        pvt.pair_tokens(33, 12)  # 21 prompt tokens cannot be two equal copies
    with pytest.raises(ValueError, match="non-negative"):
        pvt.pair_tokens(10, 12)


def test_step_flops_by_hand():
    """Blocks 500 params, head 40, 20 processed tokens of which 6 completion.
    SFT-style count: 6·500·20 = 60000.
    Full, precomputed: forward = 2·500·20 + 2·40·6 = 20000 + 480 = 20480; x3 = 61440.
    Full, live reference: one more forward, 4 x 20480 = 81920."""
    assert pvt.step_flops(500, 40, 20, 6, full=False) == 60000
    assert pvt.step_flops(500, 40, 20, 6, live_reference=True, full=False) == 60000
    assert pvt.step_flops(500, 40, 20, 6) == 61440
    assert pvt.step_flops(500, 40, 20, 6, live_reference=True) == 81920


def test_preference_rows_are_seeded_and_in_range():
    rows, filler = pvt.make_preference_rows(20, seed=3)
    again, _ = pvt.make_preference_rows(20, seed=3)
    other, _ = pvt.make_preference_rows(20, seed=4)
    assert rows == again and rows != other
    lo_p, hi_p = pvt.PROMPT_WORDS
    lo_r, hi_r = pvt.RESPONSE_WORDS
    for r in rows:
        assert [m["role"] for m in r["prompt"]] == ["user"]
        assert [m["role"] for m in r["chosen"]] == [m["role"] for m in r["rejected"]] == ["assistant"]
        assert lo_p <= len(r["prompt"][0]["content"].split()) <= hi_p
        for side in ("chosen", "rejected"):
            assert lo_r <= len(r[side][0]["content"].split()) <= hi_r
        assert r["chosen"] != r["rejected"]
    assert len(filler) == 200


def test_both_sides_tokenise_and_count_the_same():
    """On the benchmark's tokenizer: alignkit's encoding of each pair is TRL's (prompt ids from
    the template with the generation prompt, completion = the rest of prompt + response), and a
    collated micro-batch gives the same processed and completion token counts on both sides,
    whose `pair_tokens` is prompt + chosen + rejected."""
    from trl.data_utils import _tokenize, common_prefix_length
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from alignkit.data.encode import encode_preference
    from alignkit.data.templates import resolve_chat_template
    from alignkit.train.prefer import Encoded, make_batches

    rows, filler = pvt.make_preference_rows(6, seed=0)
    tok = pvt.svt.build_tokenizer([m["content"] for r in rows for k in ("prompt", "chosen", "rejected")
                                   for m in r[k]] + filler)
    template = resolve_chat_template(tok, None)
    trl_examples, seqs, expected_pair_tokens = [], [], 0
    for r in rows:
        prompt = _tokenize(tok, r["prompt"], add_generation_prompt=True)["input_ids"]
        full = {s: _tokenize(tok, r["prompt"] + r[s])["input_ids"] for s in ("chosen", "rejected")}
        n = min(common_prefix_length(prompt, full[s]) for s in full)  # as TRL's tokenize_fn
        assert n == len(prompt)  # the prompt is a token prefix: nothing is cut
        trl = {"prompt_ids": prompt[:n], "chosen_ids": full["chosen"][n:],
               "rejected_ids": full["rejected"][n:]}
        trl_examples.append(trl)
        c, rj = encode_preference(tok, template, r["prompt"], r["chosen"], r["rejected"])
        for ours, side in ((c, "chosen"), (rj, "rejected")):
            assert ours.input_ids == full[side]
            assert [i for i, x in enumerate(ours.labels) if x != -100] == \
                list(range(n, len(full[side])))
        seqs += [c, rj]
        assert pvt.trl_style_lengths(tok, r) == tuple(len(trl[k]) for k in trl)
        expected_pair_tokens += sum(len(v) for v in trl.values())

    theirs = DataCollatorForPreference(pad_token_id=tok.pad_token_id)(trl_examples)
    ours = make_batches(Encoded(seqs, [], ["x"] * len(rows)), micro_batch_size=len(rows),
                        pad_token_id=tok.pad_token_id, packing=False, pack_length=1024, rng=None)[0]
    processed = int(theirs["attention_mask"].sum())
    completion = int(theirs["completion_mask"][:, 1:].sum())
    assert processed == int((ours["seq_ids"] >= 0).sum())
    assert completion == int((ours["labels"][:, 1:] != -100).sum())
    assert pvt.pair_tokens(processed, completion) == expected_pair_tokens


def _run(mode, rnd, tps, rss, process_s, steps=2):
    return {"mode": mode, "strategy": mode.split("-", 1)[1], "round": rnd, "tokens_per_s": tps,
            "processed_tokens_per_s": 2 * tps, "peak_rss_mb": rss, "process_s": process_s,
            "precompute_s": 0.0, "steps": steps, "steady_steps": 1, "total_pair_tokens": 10,
            "total_completion_tokens": 4, "steady_processed_tokens": 1000,
            "steady_completion_tokens": 400, "steady_s": 2.0}


def test_summary_ratios_targets_and_mfu_by_hand():
    """Two rounds, 16 pairs (2 steps of 8 = a full epoch).
    Live: TRL 100, 300 tokens/s (median 200), alignkit 400, 500 (450) -> 2.25x >= 1.8 met;
    per round 400/100 = 4.0, 500/300 = 1.667. RSS 750 / 1100 = 0.682 <= 0.7 met; wall
    65 / 110 = 0.591 <= 0.6 met.
    Precomputed: TRL 200, 200; alignkit 250, 350 (300) -> 1.5x >= 1.5 met; RSS 800 / 1000 = 0.8
    not met; wall 70 / 100 = 0.7 not met.
    MFU with 1000 block params, 100 head params, 1000 processed / 400 completion tokens in 2 s,
    peak 5e-3 GFLOP/s = 5e6 FLOP/s: 6·1000·1000 / 2 / 5e6 = 0.6 (met); full count, live:
    4·(2·1000·1000 + 2·100·400) / 2 / 5e6 = 4·2.08e6 / 1e7 = 0.832; precomputed 3·2.08e6 / 1e7
    = 0.624."""
    runs = [_run("trl-live", 0, 100, 1000, 100), _run("trl-precomputed", 0, 200, 1000, 100),
            _run("alignkit-live", 0, 400, 700, 60), _run("alignkit-precomputed", 0, 250, 800, 70),
            _run("trl-live", 1, 300, 1200, 120), _run("trl-precomputed", 1, 200, 1000, 100),
            _run("alignkit-live", 1, 500, 800, 70), _run("alignkit-precomputed", 1, 350, 800, 70)]
    stats = {"non_embedding_params": 1000, "head_params": 100, "n_rows": 16}
    s = pvt.summarize(runs, stats, 5e-3)
    live, pre = s["verdicts"]["live"], s["verdicts"]["precomputed"]
    assert live["speed_ratio"] == pytest.approx(2.25) and live["speed_target_met"]
    assert live["per_round_speed_ratios"] == pytest.approx([4.0, 5 / 3])
    assert live["rss_ratio"] == pytest.approx(750 / 1100) and live["rss_target_met"]
    assert live["wall_ratio"] == pytest.approx(65 / 110) and live["wall_target_met"] is True
    assert pre["speed_ratio"] == pytest.approx(1.5) and pre["speed_target_met"]
    assert pre["rss_ratio"] == pytest.approx(0.8) and not pre["rss_target_met"]
    assert pre["wall_ratio"] == pytest.approx(0.7) and pre["wall_target_met"] is False
    assert live["mfu"] == pytest.approx(0.6) and live["mfu_target_met"]
    assert s["table"]["alignkit-live"]["mfu_full"] == pytest.approx(0.832)
    assert s["table"]["alignkit-precomputed"]["mfu_full"] == pytest.approx(0.624)
    assert s["table"]["trl-live"]["tokens_per_s"] == {"median": 200.0, "min": 100, "max": 300, "n": 2}


def test_summary_does_not_judge_wall_time_of_partial_runs():
    """One step of 8 pairs out of 16 is not "a one-epoch run": the wall-time target is not
    judged (None), and without a GEMM peak there is no MFU."""
    runs = [_run("trl-live", 0, 100, 1000, 100, steps=1),
            _run("alignkit-live", 0, 300, 500, 10, steps=1)]
    v = pvt.summarize(runs, {"non_embedding_params": 1, "head_params": 1, "n_rows": 16},
                      None)["verdicts"]
    assert set(v) == {"live"}
    assert v["live"]["wall_target_met"] is None and not v["live"]["full_epoch"]
    assert v["live"]["mfu"] is None and v["live"]["mfu_target_met"] is None
    assert v["live"]["speed_ratio"] == pytest.approx(3.0)
