"""DPO speed, side by side: TRL's `DPOTrainer` against `alignkit prefer` on the same model and data.

What runs (issue 3, section 4). The random Llama-architecture model of benchmarks/sft_vs_trl.py
(hidden 256, 4 layers, 4 heads, intermediate 688, vocab 4,096, untied head; seed 0) and 512
seeded preference rows in the conversational form ``{"prompt": [user], "chosen": [assistant],
"rejected": [assistant]}`` (prompt 20-29 words, each response 37-52 words: median 47 prompt
tokens with the ChatML template and 64 per response, printed at start) are written once to a work
directory, next to a byte-level BPE tokenizer (vocab 4,096, trained here on the rows plus filler
text). Every run loads them from there and trains one epoch (64 steps) of the sigmoid DPO loss,
β = 0.1, micro-batch 8 pairs, fp32, AdamW, grad clip 1.0, lr 1e-5 with a cosine schedule, on
`--threads` threads (default 2):

- ``trl-live``: `DPOTrainer` with its reference model (a second copy, loaded from the same
  directory, one extra forward per step);
- ``trl-precomputed``: `DPOTrainer` with ``precompute_ref_log_probs=True`` (reference
  log-probs of every row computed in the trainer's constructor, batch 8 pairs; its cache file
  sits in the process's temporary `datasets` directory, so every run computes them anew);
- ``alignkit-live``: `alignkit.train.prefer.prefer` with ``reference: frozen_copy``;
- ``alignkit-precomputed``: the same with ``reference: precomputed`` (log-probs of every row
  computed once before training, 16 sequences per batch, and written to a fresh on-disk cache
  under the run directory, so no run reuses another's cache).

Both sides tokenise the same way: prompt = the chat template with the generation prompt,
completion = what rendering the assistant message appends (its content, ``<|im_end|>`` and the
newline); tests/benchmarks/test_prefer_vs_trl.py checks that the ids and completion masks are
identical, and the script warns if full-epoch runs score different numbers of tokens.

Fairness. Every run is its own child process (``--child MODE``), so peak RSS (`ru_maxrss` at
the end of the child) is per run; children alternate mode by mode in each round (A B C D A B
C D ...), with `torch.set_num_threads`, `OMP_NUM_THREADS`, the same Python, torch and memory
allocator (``LD_PRELOAD`` is recorded; default glibc malloc). TRL runs without gradient
checkpointing (its config turns it on by default; it only costs time here), ``bf16=False``,
its default fused AdamW, no evaluation and no saving; alignkit evaluates nothing (no held-out
split, no KL prompts) and saves its final checkpoint and model after the last step (outside
the timed window, inside the whole-process time).

Measured:

- tokens/s (the issue's unit) = non-padding prompt + chosen + rejected tokens of a pair, the
  prompt counted once, summed over steady-state steps, divided by their time. The model
  actually processes the prompt twice (once with each response); that rate is printed as
  "processed tokens/s" and is what the FLOP count uses. Steady state = steps `--warmup`+1 ..
  N (default 3 warm-up steps skipped on both sides); the clock runs from the end of step
  `warmup` to the end of step N. Step ends: TRL `TrainerCallback.on_step_end`; alignkit the
  per-step ``elapsed_s`` of ``metrics.jsonl``. Tokens per step are counted on the collated
  batches (TRL: ``attention_mask`` and ``completion_mask`` sums; alignkit: ``seq_ids >= 0``
  and labelled positions, observed by wrapping `alignkit.train.prefer.make_batches`).
- peak RSS of each child, in MB.
- whole-process wall time of each child (interpreter start to exit: imports, loading,
  tokenising, reference precompute, training, alignkit's final save).
- precompute time (the reference scoring pass: TRL `_precompute_ref_logps`, alignkit
  `score_examples`).
- MFU = model FLOPs per second / the fp32 GEMM peak measured in the same invocation
  (benchmarks/matmul_peak.py, `--threads` threads). Two counts: ``MFU`` = 6 × non-embedding
  parameters × processed tokens (Kaplan et al. 2020, section 2.1; the count of
  benchmarks/sft_vs_trl.py), and ``MFU+`` which also counts the LM head at the completion
  positions (the only logits the loss needs) and, with a live reference, its forward pass
  (2 × parameters per token): see `step_flops`.

Targets (issue 3): tokens/s ≥ 1.8× TRL with a live reference and ≥ 1.5× with precomputed
reference log-probs; peak RSS ≤ 0.7× TRL's in both modes; whole-process wall time of the
one-epoch run ≤ 0.6× TRL's; MFU ≥ 55% (checked on the ``MFU`` count). Ratios are ratios of
medians over rounds; per-round ratios are printed too.

    .venv/bin/python benchmarks/prefer_vs_trl.py --rounds 4 --json-out /tmp/prefer_vs_trl.json
    .venv/bin/python benchmarks/prefer_vs_trl.py --quick --threads 1     # smoke run, ~2 min
    .venv/bin/python benchmarks/prefer_vs_trl.py --summarize /tmp/prefer_vs_trl.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sft_vs_trl as svt  # noqa: E402  (model shape, tokenizer, text generator, arithmetic)

MODES = ("trl-live", "trl-precomputed", "alignkit-live", "alignkit-precomputed")
STRATEGIES = ("live", "precomputed")
LR = 1e-5  # same on both sides (speed does not depend on it)
BETA = 0.1
BATCH = 8  # pairs per optimizer step
PROMPT_WORDS = (20, 29)
RESPONSE_WORDS = (37, 52)
TARGETS = {"speed_live": 1.8, "speed_precomputed": 1.5, "rss": 0.7, "wall": 0.6, "mfu": 0.55}


# ------------------------------------------------------------------------------ arithmetic

def pair_tokens(processed: int, completion: int) -> int:
    """Prompt + chosen + rejected tokens (prompt once) of a batch, from what it processed.

    A pair is processed as two sequences, prompt + chosen and prompt + rejected, so
    processed = 2·prompt + completion, with completion = chosen + rejected; hence
    prompt + completion = (processed + completion) / 2.

        >>> # prompt 48, chosen 64, rejected 60: processed 2·48 + 124 = 220, completion 124
        >>> pair_tokens(220, 124)
        172
    """
    if processed < completion or (processed - completion) % 2:
        raise ValueError(f"processed {processed} - completion {completion} must be a "
                         "non-negative even number (twice the prompt tokens)")
    return (processed + completion) // 2


def step_flops(non_embedding: int, head: int, processed: int, completion: int, *,
               live_reference: bool = False, full: bool = True) -> int:
    """Model FLOPs of one training step.

    Policy: forward 2·P + backward 4·P per token (Kaplan et al. 2020, section 2.1), where the
    transformer blocks (P = `non_embedding`) run at every processed token and the LM head
    (P = `head` = vocab × hidden) only where the loss needs logits, i.e. at the `completion`
    positions. A live reference adds one forward (2·P) over the same positions. With
    `full=False` the count is 6·non_embedding·processed only (benchmarks/sft_vs_trl.py's).

        >>> # blocks 1000, head 100, 10 tokens of which 4 completion, live reference:
        >>> # 6·1000·10 + 6·100·4 + 2·1000·10 + 2·100·4 = 60000 + 2400 + 20000 + 800
        >>> step_flops(1000, 100, 10, 4, live_reference=True)
        83200
    """
    if not full:
        return 6 * non_embedding * processed
    forward = 2 * non_embedding * processed + 2 * head * completion
    return 3 * forward + (forward if live_reference else 0)


# ------------------------------------------------------------------------------ inputs

def make_preference_rows(n: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    """`n` conversational preference rows and filler text for the tokenizer.

    Prompt: one user message of PROMPT_WORDS words; chosen and rejected: one assistant message
    each of RESPONSE_WORDS words, drawn independently (Zipf-distributed pseudo-words, as in
    benchmarks/sft_vs_trl.py).
    """
    rng = random.Random(seed)
    lexicon = svt._lexicon(rng)
    weights = [1.0 / (r + 1) for r in range(len(lexicon))]  # Zipf's law, exponent 1
    rng.shuffle(lexicon)
    text = lambda lo_hi: svt._sentence_text(rng, lexicon, weights, rng.randint(*lo_hi))  # noqa: E731
    rows = []
    for i in range(n):
        rows.append({"id": f"pair-{i:04d}",
                     "prompt": [{"role": "user", "content": text(PROMPT_WORDS)}],
                     "chosen": [{"role": "assistant", "content": text(RESPONSE_WORDS)}],
                     "rejected": [{"role": "assistant", "content": text(RESPONSE_WORDS)}]})
    filler = [svt._sentence_text(rng, lexicon, weights, 200) for _ in range(200)]
    return rows, filler


def trl_style_lengths(tokenizer, row: dict) -> tuple[int, int, int]:
    """(prompt, chosen, rejected) token counts the way TRL's DPO tokenisation splits them:
    prompt = the template with the generation prompt; a completion = the rest of the rendered
    prompt + response (the common prefix is the prompt)."""
    ids = lambda msgs, **kw: tokenizer.apply_chat_template(  # noqa: E731
        msgs, tokenize=True, return_dict=True, **kw)["input_ids"]
    prompt = ids(row["prompt"], add_generation_prompt=True)
    out = []
    for side in ("chosen", "rejected"):
        full = ids(row["prompt"] + row[side])
        if full[:len(prompt)] != prompt:
            raise ValueError(f"row {row['id']}: the prompt is not a token prefix of prompt+{side}")
        out.append(len(full) - len(prompt))
    return len(prompt), out[0], out[1]


def build_inputs(workdir: Path, n_rows: int, seed: int = 0) -> dict:
    """Write data.jsonl and model/ (random init + tokenizer) under `workdir`; return stats."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    workdir.mkdir(parents=True, exist_ok=True)
    rows, filler = make_preference_rows(n_rows, seed)
    texts = [m["content"] for r in rows for k in ("prompt", "chosen", "rejected")
             for m in r[k]] + filler
    tokenizer = svt.build_tokenizer(texts)
    with open(workdir / "data.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                         **svt.MODEL_SHAPE)
    model = LlamaForCausalLM(config)
    model.save_pretrained(workdir / "model")
    tokenizer.save_pretrained(workdir / "model")
    lengths = [trl_style_lengths(tokenizer, r) for r in rows]
    prompts = [p for p, _, _ in lengths]
    responses = [c for _, c, _ in lengths] + [r for _, _, r in lengths]
    shape = svt.MODEL_SHAPE
    return {"n_rows": n_rows, "vocab": len(tokenizer),
            "pair_tokens": sum(p + c + r for p, c, r in lengths),
            "processed_tokens": sum(2 * p + c + r for p, c, r in lengths),
            "completion_tokens": sum(responses),
            "prompt_median": statistics.median(prompts), "prompt_min": min(prompts),
            "prompt_max": max(prompts), "response_median": statistics.median(responses),
            "response_min": min(responses), "response_max": max(responses),
            "params": sum(p.numel() for p in model.parameters()),
            "non_embedding_params": svt.non_embedding_params(
                shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"],
                shape["num_attention_heads"], shape["num_key_value_heads"]),
            "head_params": config.vocab_size * config.hidden_size}


# ------------------------------------------------------------------------------ children

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _load_rows(workdir: Path) -> list[dict]:
    with open(workdir / "data.jsonl") as f:
        return [json.loads(line) for line in f]


def _measure(step_end: list[float], processed: list[int], completion: list[int],
             warmup: int) -> dict:
    """Steady-state rates in both token units, plus the totals of the run."""
    pairs = [pair_tokens(p, c) for p, c in zip(processed, completion)]
    res = svt.steady_state(step_end, pairs, warmup)
    res["processed_tokens_per_s"] = svt.steady_state(step_end, processed, warmup)["tokens_per_s"]
    res["steady_completion_tokens"] = sum(completion[res["warmup_steps"]:])
    res["steady_processed_tokens"] = sum(processed[res["warmup_steps"]:])
    res.update(steps=len(step_end), total_pair_tokens=sum(pairs),
               total_processed_tokens=sum(processed), total_completion_tokens=sum(completion))
    return res


def child_trl(workdir: Path, mode: str, warmup: int, max_steps: int | None) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    t_start = time.perf_counter()
    precompute_s = [0.0]
    original_precompute = DPOTrainer._precompute_ref_logps

    def timed_precompute(self, *a, **kw):  # times the reference pass; returns what it returns
        t0 = time.perf_counter()
        try:
            return original_precompute(self, *a, **kw)
        finally:
            precompute_s[0] += time.perf_counter() - t0

    DPOTrainer._precompute_ref_logps = timed_precompute
    tokenizer = AutoTokenizer.from_pretrained(workdir / "model")
    model = AutoModelForCausalLM.from_pretrained(workdir / "model", dtype=torch.float32,
                                                 attn_implementation="sdpa")
    rows = _load_rows(workdir)
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    args = DPOConfig(
        output_dir=str(workdir / f"trl-{mode}"), per_device_train_batch_size=BATCH,
        num_train_epochs=1, max_steps=max_steps or -1, learning_rate=LR,
        lr_scheduler_type="cosine", warmup_steps=0, max_grad_norm=1.0, weight_decay=0.0,
        beta=BETA, loss_type=["sigmoid"], max_length=1024,
        precompute_ref_log_probs=(mode == "trl-precomputed"),
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
        report_to=[], save_strategy="no", eval_strategy="no", logging_steps=10,
        dataloader_num_workers=0, seed=0, disable_tqdm=True)

    step_end: list[float] = []
    processed: list[int] = []
    completion: list[int] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_end.append(time.perf_counter())

    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[StepClock()])
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)
        processed.append(int(batch["attention_mask"].sum()))
        completion.append(int(batch["completion_mask"][:, 1:].sum()))
        return batch

    trainer.data_collator = counting_collator
    t_train = time.perf_counter()
    trainer.train()
    t_end = time.perf_counter()
    # The Accelerate dataloader fetches one batch ahead (one unused batch when max_steps stops
    # the epoch early); batches are consumed in order, one per step (no accumulation).
    if not len(step_end) <= len(processed) <= len(step_end) + 1:
        raise RuntimeError(f"{len(processed)} collated batches but {len(step_end)} steps")
    n = len(step_end)
    res = _measure(step_end, processed[:n], completion[:n], warmup)
    res.update(side="trl", mode=mode, strategy=mode.split("-", 1)[1],
               setup_s=t_train - t_start, precompute_s=precompute_s[0],
               train_loop_s=step_end[-1] - t_train, child_wall_s=t_end - t_start,
               optim=str(args.optim), grad_ckpt=bool(args.gradient_checkpointing),
               ref_model=trainer.ref_model is not None)
    return res


def child_alignkit(workdir: Path, mode: str, warmup: int, max_steps: int | None,
                   packing: bool, pack_length: int) -> dict:
    import torch

    import alignkit.models.reference as reference_mod
    import alignkit.train.prefer as prefer_mod
    from alignkit.train.config import OptimConfig, TrainConfig

    processed: list[int] = []
    completion: list[int] = []
    precompute_s = [0.0]
    orig_batches, orig_score = prefer_mod.make_batches, reference_mod.score_examples

    def counting_batches(*a, **kw):  # observes the epoch's batches; returns them unchanged
        batches = orig_batches(*a, **kw)
        for b in batches:
            processed.append(int((b["seq_ids"] >= 0).sum()))
            completion.append(int((b["labels"][:, 1:] != -100).sum()))
        return batches

    def timed_score(*a, **kw):
        t0 = time.perf_counter()
        try:
            return orig_score(*a, **kw)
        finally:
            precompute_s[0] += time.perf_counter() - t0

    prefer_mod.make_batches = counting_batches
    reference_mod.score_examples = timed_score

    t_start = time.perf_counter()
    out = workdir / f"ak-{mode}-{os.getpid()}"
    cfg = prefer_mod.PreferConfig(
        model=str(workdir / "model"), data=str(workdir / "data.jsonl"), val_fraction=0,
        kl_prompts=0, loss="sigmoid", beta=BETA,
        reference="frozen_copy" if mode == "alignkit-live" else "precomputed",
        ref_cache_dir="ref_cache",  # relative: under this run's fresh directory
        max_length=1024, packing=packing, pack_length=pack_length,
        train=TrainConfig(optim=OptimConfig(lr=LR, warmup_steps=0, schedule="cosine"),
                          epochs=1, max_steps=max_steps, micro_batch_size=BATCH,
                          max_grad_norm=1.0, progress=False, eval_every=0, save_every=0,
                          log_every=1))
    prefer_mod.prefer(cfg, out)
    t_end = time.perf_counter()
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    step_end = [r["elapsed_s"] for r in records if "elapsed_s" in r]
    n = len(step_end)
    if len(processed) < n:  # the epoch's batches are built up front, consumed in order
        raise RuntimeError(f"{len(processed)} collated batches but {n} logged steps")
    res = _measure(step_end, processed[:n], completion[:n], warmup)
    # Training starts `elapsed_s[0] - first step` after set-up; the total below includes both.
    res.update(side="alignkit", mode=mode, strategy=mode.split("-", 1)[1],
               precompute_s=precompute_s[0], packing=packing, train_loop_s=step_end[-1],
               child_wall_s=t_end - t_start,
               setup_and_save_s=(t_end - t_start) - step_end[-1])
    return res


def run_child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    if args.child.startswith("trl"):
        res = child_trl(workdir, args.child, args.warmup, args.max_steps)
    else:
        res = child_alignkit(workdir, args.child, args.warmup, args.max_steps, args.packing,
                             args.pack_length)
    res["peak_rss_mb"] = _peak_rss_mb()
    res["threads"] = torch.get_num_threads()
    res["ld_preload"] = os.environ.get("LD_PRELOAD", "")
    Path(args.result).write_text(json.dumps(res))


# ------------------------------------------------------------------------------ parent

def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_mode(mode: str, workdir: Path, args) -> dict:
    result = workdir / f"result-{mode}.json"
    if result.exists():
        result.unlink()
    t = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t,
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode,
           "--workdir", str(workdir), "--result", str(result), "--warmup", str(args.warmup),
           "--threads", t, "--pack-length", str(args.pack_length)]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    if args.packing:
        cmd.append("--packing")
    load_before = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"child {mode} failed with exit code {proc.returncode}")
    res = json.loads(result.read_text())
    res["process_s"] = time.perf_counter() - t0
    res["load_before"] = load_before
    res["load_after"] = _load()
    return res


def summarize(runs: list[dict], stats: dict, peak_gflops: float | None) -> dict:
    """Per-mode medians and spreads; per strategy, alignkit / TRL ratios and the targets."""
    by_mode: dict[str, list[dict]] = {}
    for r in runs:
        by_mode.setdefault(r["mode"], []).append(r)
    n_emb, head = stats["non_embedding_params"], stats["head_params"]
    table = {}
    for mode, rs in by_mode.items():
        row = {key: svt.spread([r[key] for r in rs]) for key in
               ("tokens_per_s", "processed_tokens_per_s", "peak_rss_mb", "process_s",
                "precompute_s")}
        row.update(steps=rs[0]["steps"], steady_steps=rs[0]["steady_steps"],
                   total_pair_tokens=rs[0]["total_pair_tokens"],
                   total_completion_tokens=rs[0]["total_completion_tokens"])
        mfu, mfu_full = [], []
        for r in rs:  # per run, from its own steady-state window
            live = r["strategy"] == "live"
            args = (n_emb, head, r["steady_processed_tokens"], r["steady_completion_tokens"])
            if peak_gflops:
                flops = step_flops(*args, live_reference=live, full=False)
                full = step_flops(*args, live_reference=live)
                mfu.append(flops / r["steady_s"] / (peak_gflops * 1e9))
                mfu_full.append(full / r["steady_s"] / (peak_gflops * 1e9))
        row["mfu"] = statistics.median(mfu) if mfu else None
        row["mfu_full"] = statistics.median(mfu_full) if mfu_full else None
        table[mode] = row

    def median(mode: str, key: str) -> float:
        return table[mode][key]["median"]

    verdicts = {}
    for strategy in STRATEGIES:
        ak, trl = f"alignkit-{strategy}", f"trl-{strategy}"
        if ak not in table or trl not in table:
            continue
        rounds = sorted({r["round"] for r in runs if r["mode"] in (ak, trl)})
        per_round = []
        for k in rounds:
            a = [r["tokens_per_s"] for r in by_mode[ak] if r["round"] == k]
            t = [r["tokens_per_s"] for r in by_mode[trl] if r["round"] == k]
            if a and t:
                per_round.append(a[0] / t[0])
        speed = median(ak, "tokens_per_s") / median(trl, "tokens_per_s")
        rss = median(ak, "peak_rss_mb") / median(trl, "peak_rss_mb")
        wall = median(ak, "process_s") / median(trl, "process_s")
        full_epoch = table[ak]["steps"] * BATCH >= stats["n_rows"] and \
            table[trl]["steps"] * BATCH >= stats["n_rows"]
        mfu = table[ak]["mfu"]
        verdicts[strategy] = {
            "speed_ratio": speed, "per_round_speed_ratios": per_round,
            "speed_target": TARGETS[f"speed_{strategy}"],
            "speed_target_met": speed >= TARGETS[f"speed_{strategy}"],
            "rss_ratio": rss, "rss_target_met": rss <= TARGETS["rss"],
            "wall_ratio": wall, "full_epoch": full_epoch,
            # whole-process time only means "a one-epoch run" when both ran the epoch
            "wall_target_met": (wall <= TARGETS["wall"]) if full_epoch else None,
            "mfu": mfu, "mfu_target_met": (mfu >= TARGETS["mfu"]) if mfu is not None else None}
    return {"table": table, "verdicts": verdicts}


def _fmt_spread(s: dict, width: int = 7, digits: int = 0) -> str:
    f = f"{{:{width}.{digits}f}}"
    return f"{f.format(s['median'])} [{f.format(s['min']).strip()}-{f.format(s['max']).strip()}]"


def print_report(summary: dict, stats: dict, peak: dict | None) -> None:
    print(f"\ndata: {stats['n_rows']} pairs; prompt tokens median {stats['prompt_median']} "
          f"[{stats['prompt_min']}-{stats['prompt_max']}], response tokens median "
          f"{stats['response_median']} [{stats['response_min']}-{stats['response_max']}]; "
          f"{stats['pair_tokens']} prompt+chosen+rejected tokens per epoch "
          f"({stats['processed_tokens']} processed); model {stats['params'] / 1e6:.2f} M params, "
          f"{stats['non_embedding_params'] / 1e6:.2f} M non-embedding")
    if peak:
        print(f"fp32 GEMM peak on {peak['threads']} threads: {peak['peak_gflops']:.1f} GFLOP/s")
    print(f"\n{'mode':21s} {'tokens/s median [min-max]':>27s} {'processed/s':>11s} "
          f"{'peak RSS MB':>22s} {'process s':>18s} {'precomp s':>9s} {'MFU':>6s} "
          f"{'MFU+':>6s} {'steps':>5s}")
    for mode in MODES:
        row = summary["table"].get(mode)
        if row is None:
            continue
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "-"
        mfu_full = f"{100 * row['mfu_full']:.1f}%" if row["mfu_full"] is not None else "-"
        print(f"{mode:21s} {_fmt_spread(row['tokens_per_s']):>27s} "
              f"{row['processed_tokens_per_s']['median']:11.0f} "
              f"{_fmt_spread(row['peak_rss_mb'], 6):>22s} "
              f"{_fmt_spread(row['process_s'], 5, 1):>18s} "
              f"{row['precompute_s']['median']:9.1f} {mfu:>6s} {mfu_full:>6s} "
              f"{row['steps']:5d}")
    for strategy, v in summary["verdicts"].items():
        ok = lambda x: "-" if x is None else ("met" if x else "NOT met")  # noqa: E731
        rounds = ", ".join(f"{x:.2f}" for x in v["per_round_speed_ratios"])
        mfu = f"{100 * v['mfu']:.1f}%" if v["mfu"] is not None else "-"
        print(f"\n{strategy} reference, alignkit / TRL (ratios of medians):"
              f"\n  tokens/s   {v['speed_ratio']:.2f}x (per round: {rounds}); "
              f"target >= {v['speed_target']}x: {ok(v['speed_target_met'])}"
              f"\n  peak RSS   {v['rss_ratio']:.2f}x; target <= {TARGETS['rss']}x: "
              f"{ok(v['rss_target_met'])}"
              f"\n  wall time  {v['wall_ratio']:.2f}x (whole process); target <= "
              f"{TARGETS['wall']}x: {ok(v['wall_target_met'])}"
              + ("" if v["full_epoch"] else " (not a full epoch: not judged)") +
              f"\n  MFU        {mfu} (6 x non-embedding params x processed tokens); target >= "
              f"{100 * TARGETS['mfu']:.0f}%: {ok(v['mfu_target_met'])}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="DPO speed: TRL DPOTrainer vs alignkit prefer")
    p.add_argument("--rounds", type=int, default=3, help="A B C D rounds (medians over rounds)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round, 64 pairs, 6 steps, 2 warm-up steps, no GEMM peak")
    p.add_argument("--rows", type=int, default=512, help="preference pairs")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads per child")
    p.add_argument("--warmup", type=int, default=3, help="optimizer steps skipped per run")
    p.add_argument("--max-steps", type=int, default=None,
                   help="optimizer steps per run (default: one epoch)")
    p.add_argument("--packing", action="store_true", help="alignkit: pack each micro-batch")
    p.add_argument("--pack-length", type=int, default=1024, help="alignkit packed row length")
    p.add_argument("--workdir", default=None, help="default: a fresh temporary directory")
    p.add_argument("--json-out", default=None, help="also write every run and the summary here")
    p.add_argument("--no-peak", action="store_true", help="skip the GEMM peak (no MFU)")
    p.add_argument("--summarize", metavar="JSON", help="re-print the report of a --json-out file")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return run_child(args)
    if args.summarize:
        saved = json.loads(Path(args.summarize).read_text())
        peak = saved["peak"]
        summary = summarize(saved["runs"], saved["stats"], peak["peak_gflops"] if peak else None)
        return print_report(summary, saved["stats"], peak)
    if args.quick:
        args.rounds, args.rows, args.max_steps, args.warmup, args.no_peak = 1, 64, 6, 2, True

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="prefer_vs_trl-"))
    print(f"work dir {workdir}; load average before set-up: {_load()}", flush=True)
    stats = build_inputs(workdir, args.rows)
    print(f"prompt tokens median {stats['prompt_median']}, response tokens median "
          f"{stats['response_median']}", flush=True)
    peak = None
    if not args.no_peak:
        from matmul_peak import measure

        peak = measure([1024, 1536, 2048], 7, args.threads)
    runs = []
    for rnd in range(args.rounds):
        for mode in args.modes:
            res = run_mode(mode, workdir, args)
            res["round"] = rnd
            runs.append(res)
            print(f"round {rnd + 1}/{args.rounds} {mode:21s} {res['tokens_per_s']:7.0f} tokens/s "
                  f"peak RSS {res['peak_rss_mb']:6.0f} MB  steps {res['steps']} "
                  f"(steady {res['steady_steps']})  precompute {res['precompute_s']:.1f} s  "
                  f"process {res['process_s']:.0f} s  "
                  f"load {res['load_before']} -> {res['load_after']}", flush=True)
    summary = summarize(runs, stats, peak["peak_gflops"] if peak else None)
    # Full-epoch runs must score the same completion tokens on both sides.
    scored = {m: row["total_completion_tokens"] for m, row in summary["table"].items()
              if row["total_pair_tokens"] == stats["pair_tokens"]}
    if len(set(scored.values())) > 1:
        print(f"WARNING: full-epoch modes score different completion token counts: {scored}")
    print_report(summary, stats, peak)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"stats": stats, "peak": peak, "runs": runs, "summary": summary,
             "argv": sys.argv[1:]}, indent=2))


if __name__ == "__main__":
    main()
