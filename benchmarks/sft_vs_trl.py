"""SFT speed, side by side: TRL's `SFTTrainer` against `alignkit sft` on the same model and data.

What runs. One randomly initialised Llama-architecture model (hidden 256, 4 layers, 4 heads,
intermediate 688, vocab 4,096, untied head; seed 0) and 512 seeded two-turn conversations
(user 10-60 words, assistant 20-120 words per turn) are written once to a work directory with
`save_pretrained`, next to a byte-level BPE tokenizer (vocab 4,096, trained here on the
conversations plus filler text) whose ChatML chat template marks assistant turns with
`{% generation %}`. Every run loads them from there and trains one epoch with assistant-only
loss (content + `<|im_end|>` of both assistant turns), micro-batch 8, fp32, AdamW, grad clip 1.0,
on 2 threads:

- ``trl-nopack``: `SFTTrainer`, `packing=False` (padded batches of 8 conversations);
- ``trl-bfd``: `SFTTrainer`, `packing=True` with its default strategy ``bfd`` (rows of
  `max_length` = 1024 tokens, padding-free: the 8 rows of a batch are flattened into one
  sequence and attention is kept inside each conversation through `position_ids`);
- ``alignkit``: `alignkit.train.sft.sft` with `packing=True` (each micro-batch of 8
  conversations is packed best-fit-decreasing into rows of `pack_length` tokens with a
  block-diagonal mask, which `TokenScorer` verifies and runs padding-free);
- ``alignkit-nopack`` (optional): the same with `packing=False`.

TRL's assistant-only loss uses `assistant_only_loss=True` on the conversational
(``messages``) rows, i.e. the tokenizer's `{% generation %}` masks; alignkit computes its
own masks by incremental rendering of the same template (where the tag is a no-op). The
token ids are identical; alignkit's labels also cover the newline after each assistant
`<|im_end|>` (its turn = everything the turn appended), i.e. 2 more trained tokens per
conversation (1% of them; tests/benchmarks/test_sft_vs_trl.py). The script warns if
full-epoch runs differ by more.

Fairness. Every run is its own child process (``--child MODE``), so peak RSS
(`ru_maxrss` at the end of the child) is per run; the children alternate mode by mode in
each round (A B C A B C ...), with `torch.set_num_threads(2)`, `OMP_NUM_THREADS=2`, the same
Python, torch and allocator. TRL runs without gradient checkpointing (its `SFTConfig` turns it
on by default; it only costs time here) and with its default fused AdamW; `bf16=False`.

Run length: one epoch (64 steps) for ``trl-nopack`` and the alignkit modes; ``trl-bfd`` steps
hold 8 rows x 1024 tokens each (~21 steps per epoch) and are slow, so its runs stop after
`--bfd-max-steps` (default 8: 3 warm-up + 5 measured steps, ~41k measured tokens).

Throughput = non-padding tokens of the conversations (prompt + response, all turns) per second
of steady-state training: the first `--warmup` optimizer steps (default 3) are skipped on
both sides, and the clock runs from the end of step `warmup` to the end of the last step. Step
end times come from a `TrainerCallback.on_step_end` (TRL) and from alignkit's per-step
`metrics.jsonl` `elapsed_s` (logged after each optimizer step, before any checkpoint): set-up
(loading, tokenising, packing, batch building) and the final save are outside the window on
both sides. Tokens per step are counted on the collated batches (TRL: attention mask sum, or
the flattened length when padding-free; alignkit: the packed rows' lengths, observed by
wrapping `alignkit.data.packing.collate_packed` / `pad_collate` in the child without changing
what they return).

    .venv/bin/python benchmarks/sft_vs_trl.py                  # 3 rounds, ~11 min idle
    .venv/bin/python benchmarks/sft_vs_trl.py --quick          # smoke run: 1 round, 128 rows
    .venv/bin/python benchmarks/sft_vs_trl.py --modes alignkit --rounds 1
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

THREADS = 2
VOCAB = 4096
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML with `{% generation %}` around what the assistant must learn to emit (its content and
# the end-of-turn token): TRL's `assistant_only_loss` reads these markers.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MODEL_SHAPE = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=4, intermediate_size=688, max_position_embeddings=2048,
                   tie_word_embeddings=False)
MODES = ("trl-nopack", "trl-bfd", "alignkit", "alignkit-nopack")
DEFAULT_MODES = ("trl-nopack", "trl-bfd", "alignkit")
LR = 1e-4  # same on both sides (speed does not depend on it)


# ------------------------------------------------------------------------------ arithmetic

def steady_state(step_end_s: list[float], step_tokens: list[int], warmup: int) -> dict:
    """Tokens/s over steps ``warmup+1 .. n``: their tokens / (end of step n - end of step warmup).

    ``step_end_s[k]`` is the clock at the end of step k+1 (any origin); ``step_tokens[k]`` the
    non-padding tokens step k+1 processed. Steps 1..warmup are excluded entirely (their tokens
    and their time). With ``warmup=0`` the window starts at the end of step 1 instead (there is
    no earlier mark), so step 1 is still excluded.

        >>> # 4 steps ending at 1.0, 2.0, 2.5, 3.0 s with 100, 200, 100, 100 tokens, warm-up 2:
        >>> # steps 3 and 4 -> (100 + 100) tokens / (3.0 - 2.0) s = 200 tokens/s
        >>> steady_state([1.0, 2.0, 2.5, 3.0], [100, 200, 100, 100], 2)["tokens_per_s"]
        200.0
    """
    if len(step_end_s) != len(step_tokens):
        raise ValueError(f"{len(step_end_s)} step times but {len(step_tokens)} token counts")
    first = max(warmup, 1)
    if len(step_end_s) <= first:
        raise ValueError(f"only {len(step_end_s)} steps; need more than the {first} warm-up steps")
    seconds = step_end_s[-1] - step_end_s[first - 1]
    tokens = sum(step_tokens[first:])
    return {"tokens_per_s": tokens / seconds, "steady_tokens": tokens, "steady_s": seconds,
            "steady_steps": len(step_end_s) - first, "warmup_steps": first}


def spread(values: list[float]) -> dict:
    """Median, min and max of repeated measurements.

        >>> spread([3.0, 1.0, 2.0])
        {'median': 2.0, 'min': 1.0, 'max': 3.0, 'n': 3}
    """
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def non_embedding_params(hidden: int, layers: int, intermediate: int, heads: int,
                         kv_heads: int) -> int:
    """Parameters of the transformer blocks of a Llama model (no embedding, head or final norm).

    Per layer: q and o projections hidden², k and v hidden·(hidden·kv_heads/heads) each, the
    SwiGLU MLP 3·hidden·intermediate, two RMSNorm weights of size hidden.

        >>> # 256 hidden, 688 intermediate, MHA: 4·256² + 3·256·688 + 2·256 = 262144 + 528384 + 512
        >>> non_embedding_params(256, 4, 688, 4, 4)  # x 4 layers
        3164160
    """
    kv = hidden * kv_heads // heads
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * intermediate + 2 * hidden
    return layers * per_layer


def model_flops_per_token(n_params: int) -> int:
    """Training FLOPs per token, 6·N (Kaplan et al. 2020, section 2.1: 2N forward, 4N backward).

        >>> model_flops_per_token(1000)
        6000
    """
    return 6 * n_params


# ------------------------------------------------------------------------------ inputs

_ONSETS = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "w",
           "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr"]
_NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "ee"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck"]


def _lexicon(rng: random.Random, size: int = 3000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        n_syll = rng.choices([1, 2, 3, 4], weights=[4, 5, 3, 1])[0]
        words.add("".join(rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)
                          for _ in range(n_syll)))
    return sorted(words)


def _sentence_text(rng: random.Random, lexicon: list[str], weights: list[float], n_words: int) -> str:
    """`n_words` Zipf-distributed words cut into sentences of 5-15 words with punctuation."""
    words = rng.choices(lexicon, weights=weights, k=n_words)
    out, i = [], 0
    while i < n_words:
        k = min(rng.randint(5, 15), n_words - i)
        sent = words[i:i + k]
        sent[0] = sent[0].capitalize()
        if k > 6 and rng.random() < 0.3:
            sent[k // 2] += ","
        out.append(" ".join(sent) + rng.choice([".", ".", ".", "?", "!"]))
        i += k
    return " ".join(out)


def make_conversations(n: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    """`n` two-turn conversations (user 10-60 words, assistant 20-120 words) and filler text."""
    rng = random.Random(seed)
    lexicon = _lexicon(rng)
    weights = [1.0 / (r + 1) for r in range(len(lexicon))]  # Zipf's law, exponent 1
    rng.shuffle(lexicon)
    rows = []
    for i in range(n):
        msgs = []
        for _ in range(2):
            msgs.append({"role": "user",
                         "content": _sentence_text(rng, lexicon, weights, rng.randint(10, 60))})
            msgs.append({"role": "assistant",
                         "content": _sentence_text(rng, lexicon, weights, rng.randint(20, 120))})
        rows.append({"id": f"conv-{i:04d}", "messages": msgs})
    filler = [_sentence_text(rng, lexicon, weights, 200) for _ in range(200)]
    return rows, filler


def build_tokenizer(texts: list[str]):
    """Byte-level BPE, vocab 4,096 (3 ChatML specials included), as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE)


def build_inputs(workdir: Path, n_rows: int, seed: int = 0) -> dict:
    """Write data.jsonl and model/ (random init + tokenizer) under `workdir`; return stats."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    workdir.mkdir(parents=True, exist_ok=True)
    rows, filler = make_conversations(n_rows, seed)
    texts = [m["content"] for r in rows for m in r["messages"]] + filler
    tokenizer = build_tokenizer(texts)
    with open(workdir / "data.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **MODEL_SHAPE)
    model = LlamaForCausalLM(config)
    model.save_pretrained(workdir / "model")
    tokenizer.save_pretrained(workdir / "model")
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True,
                                                 return_dict=True)["input_ids"]) for r in rows]
    n_params = sum(p.numel() for p in model.parameters())
    non_emb = non_embedding_params(MODEL_SHAPE["hidden_size"], MODEL_SHAPE["num_hidden_layers"],
                                   MODEL_SHAPE["intermediate_size"],
                                   MODEL_SHAPE["num_attention_heads"],
                                   MODEL_SHAPE["num_key_value_heads"])
    return {"n_rows": n_rows, "vocab": len(tokenizer), "tokens": sum(lengths),
            "len_min": min(lengths), "len_median": statistics.median(lengths),
            "len_max": max(lengths), "params": n_params, "non_embedding_params": non_emb,
            "head_params": config.vocab_size * config.hidden_size}


# ------------------------------------------------------------------------------ children

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _load_rows(workdir: Path) -> list[dict]:
    with open(workdir / "data.jsonl") as f:
        return [json.loads(line) for line in f]


def child_trl(workdir: Path, mode: str, warmup: int, max_steps: int | None) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    t_start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(workdir / "model")
    model = AutoModelForCausalLM.from_pretrained(workdir / "model", dtype=torch.float32,
                                                 attn_implementation="sdpa")
    rows = _load_rows(workdir)
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    args = SFTConfig(
        output_dir=str(workdir / f"trl-{mode}"), per_device_train_batch_size=8,
        num_train_epochs=1, max_steps=max_steps or -1, learning_rate=LR,
        lr_scheduler_type="cosine", warmup_steps=0,
        max_grad_norm=1.0, weight_decay=0.0, max_length=1024,
        packing=(mode == "trl-bfd"), assistant_only_loss=True,
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
        report_to=[], save_strategy="no", eval_strategy="no", logging_steps=10,
        dataloader_num_workers=0, seed=0, disable_tqdm=True)

    step_end: list[float] = []
    step_tokens: list[int] = []
    trained: list[int] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_end.append(time.perf_counter())

    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[StepClock()])
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)
        if "attention_mask" in batch:
            step_tokens.append(int(batch["attention_mask"].sum()))
        else:  # padding-free: one flattened row, no padding (pad_to_multiple_of is None)
            step_tokens.append(int(batch["input_ids"].numel()))
        trained.append(int((batch["labels"][:, 1:] != -100).sum()))
        return batch

    trainer.data_collator = counting_collator
    t_train = time.perf_counter()
    trainer.train()
    t_end = time.perf_counter()
    # The Accelerate dataloader fetches one batch ahead (one unused batch when max_steps stops
    # the epoch early); batches are consumed in order, one per step (no accumulation).
    if not len(step_end) <= len(step_tokens) <= len(step_end) + 1:
        raise RuntimeError(f"{len(step_tokens)} collated batches but {len(step_end)} steps")
    step_tokens, trained = step_tokens[:len(step_end)], trained[:len(step_end)]
    res = steady_state(step_end, step_tokens, warmup)
    res.update(side="trl", mode=mode, steps=len(step_end), total_tokens=sum(step_tokens),
               trained_tokens=sum(trained), setup_s=t_train - t_start,
               train_loop_s=step_end[-1] - t_train, child_wall_s=t_end - t_start,
               optim=str(args.optim), grad_ckpt=bool(args.gradient_checkpointing))
    return res


def child_alignkit(workdir: Path, mode: str, warmup: int, pack_length: int,
                   max_steps: int | None) -> dict:
    import alignkit.data.collate as collate_mod
    import alignkit.data.packing as packing_mod
    from alignkit.train.config import OptimConfig, TrainConfig
    from alignkit.train.sft import SFTConfig, sft

    step_tokens: list[int] = []
    trained: list[int] = []
    orig_packed, orig_pad = packing_mod.collate_packed, collate_mod.pad_collate

    def counting_packed(rows, **kw):  # observes the packed rows; returns what the original does
        step_tokens.append(sum(len(r) for r in rows))
        trained.append(sum(sum(1 for x in r.labels if x != -100) for r in rows))
        return orig_packed(rows, **kw)

    def counting_pad(examples, *a, **kw):
        out = orig_pad(examples, *a, **kw)
        step_tokens.append(int(out["attention_mask"].sum()))
        trained.append(int((out["labels"][:, 1:] != -100).sum()))
        return out

    packing_mod.collate_packed = counting_packed
    collate_mod.pad_collate = counting_pad

    t_start = time.perf_counter()
    out = workdir / f"ak-{mode}-{os.getpid()}"
    cfg = SFTConfig(
        model=str(workdir / "model"), data=str(workdir / "data.jsonl"), heldout_eval=False,
        val_fraction=0, packing=(mode == "alignkit"), max_length=1024, pack_length=pack_length,
        train=TrainConfig(optim=OptimConfig(lr=LR, warmup_steps=0, schedule="cosine"), epochs=1,
                          max_steps=max_steps,
                          micro_batch_size=8, max_grad_norm=1.0, progress=False,
                          eval_every=0, save_every=0, log_every=1))
    sft(cfg, out)
    t_end = time.perf_counter()
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    records = [r for r in records if "elapsed_s" in r]
    step_end = [r["elapsed_s"] for r in records]
    n = len(step_end)
    if len(step_tokens) < n:  # the epoch's batches are built up front, consumed in order
        raise RuntimeError(f"{len(step_tokens)} collated batches but {n} logged steps")
    step_tokens, trained = step_tokens[:n], trained[:n]
    res = steady_state(step_end, step_tokens, warmup)
    # Training starts `elapsed_s[0] - first step` after set-up; the total below includes both.
    res.update(side="alignkit", mode=mode, steps=n, total_tokens=sum(step_tokens),
               trained_tokens=sum(trained), pack_length=pack_length,
               train_loop_s=step_end[-1], child_wall_s=t_end - t_start,
               setup_and_save_s=(t_end - t_start) - step_end[-1])
    return res


def run_child(args) -> None:
    import torch

    torch.set_num_threads(THREADS)
    workdir = Path(args.workdir)
    if args.child.startswith("trl"):
        res = child_trl(workdir, args.child, args.warmup, args.max_steps)
    else:
        res = child_alignkit(workdir, args.child, args.warmup, args.pack_length, args.max_steps)
    res["peak_rss_mb"] = _peak_rss_mb()
    res["threads"] = torch.get_num_threads()
    Path(args.result).write_text(json.dumps(res))


# ------------------------------------------------------------------------------ parent

def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_mode(mode: str, workdir: Path, args) -> dict:
    result = workdir / f"result-{mode}.json"
    if result.exists():
        result.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, __file__, "--child", mode, "--workdir", str(workdir),
           "--result", str(result), "--warmup", str(args.warmup),
           "--pack-length", str(args.pack_length)]
    steps = args.bfd_max_steps if mode == "trl-bfd" and args.bfd_max_steps else args.max_steps
    if steps:
        cmd += ["--max-steps", str(steps)]
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
    by_mode: dict[str, list[dict]] = {}
    for r in runs:
        by_mode.setdefault(r["mode"], []).append(r)
    flops_per_token = model_flops_per_token(stats["non_embedding_params"])
    table = {}
    for mode, rs in by_mode.items():
        tps = spread([r["tokens_per_s"] for r in rs])
        table[mode] = {"tokens_per_s": tps, "peak_rss_mb": spread([r["peak_rss_mb"] for r in rs]),
                       "trained_tokens": rs[0]["trained_tokens"],
                       "total_tokens": rs[0]["total_tokens"], "steps": rs[0]["steps"],
                       "steady_steps": rs[0]["steady_steps"],
                       "mfu": (flops_per_token * tps["median"] / (peak_gflops * 1e9)
                               if peak_gflops else None)}
    trl = [m for m in table if m.startswith("trl")]
    best_trl = max(trl, key=lambda m: table[m]["tokens_per_s"]["median"]) if trl else None
    if best_trl:
        for m in table:
            table[m]["ratio_vs_best_trl"] = (table[m]["tokens_per_s"]["median"]
                                             / table[best_trl]["tokens_per_s"]["median"])
    verdict = None
    if best_trl and "alignkit" in table:
        # Strictest reading of "<= TRL's peak RSS": the leanest TRL mode's median.
        min_trl_rss = min(table[m]["peak_rss_mb"]["median"] for m in trl)
        ak = table["alignkit"]
        rounds = sorted({r["round"] for r in runs if "round" in r})
        per_round = [  # alignkit / best TRL mode, within each round (same machine state)
            next(r["tokens_per_s"] for r in runs if r["mode"] == "alignkit" and r["round"] == k)
            / next(r["tokens_per_s"] for r in runs if r["mode"] == best_trl and r["round"] == k)
            for k in rounds]
        verdict = {"best_trl_mode": best_trl, "speed_ratio": ak["ratio_vs_best_trl"],
                   "per_round_ratios": per_round,
                   "speed_target_met": ak["ratio_vs_best_trl"] >= 1.5,
                   "trl_peak_rss_mb": min_trl_rss,
                   "rss_target_met": ak["peak_rss_mb"]["max"] <= min_trl_rss}
    return {"table": table, "verdict": verdict, "flops_per_token": flops_per_token}


def print_report(summary: dict, stats: dict, peak: dict | None) -> None:
    print(f"\ndata: {stats['n_rows']} conversations, {stats['tokens']} tokens "
          f"(length min/median/max {stats['len_min']}/{stats['len_median']}/{stats['len_max']}); "
          f"model {stats['params'] / 1e6:.2f} M params, "
          f"{stats['non_embedding_params'] / 1e6:.2f} M non-embedding")
    if peak:
        print(f"fp32 GEMM peak on {THREADS} threads: {peak['peak_gflops']:.1f} GFLOP/s")
    print(f"\n{'mode':16s} {'tokens/s median [min-max]':>28s} {'ratio':>6s} "
          f"{'peak RSS MB median [min-max]':>30s} {'MFU':>6s} {'steps':>6s} {'trained tok':>11s}")
    for mode, row in summary["table"].items():
        t, m = row["tokens_per_s"], row["peak_rss_mb"]
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "-"
        ratio = f"{row.get('ratio_vs_best_trl', float('nan')):.2f}"
        print(f"{mode:16s} {t['median']:9.0f} [{t['min']:7.0f}-{t['max']:7.0f}] {ratio:>6s} "
              f"{m['median']:11.0f} [{m['min']:6.0f}-{m['max']:6.0f}] {mfu:>6s} "
              f"{row['steps']:6d} {row['trained_tokens']:11d}")
    v = summary["verdict"]
    if v:
        rounds = ", ".join(f"{x:.2f}" for x in v["per_round_ratios"])
        print(f"\nalignkit / best TRL ({v['best_trl_mode']}): {v['speed_ratio']:.2f}x "
              f"(ratio of medians; per round: {rounds}) "
              f"target >= 1.5x: {'met' if v['speed_target_met'] else 'NOT met'}; "
              f"peak RSS target (every alignkit run <= the leanest TRL mode's median, "
              f"{v['trl_peak_rss_mb']:.0f} MB): "
              f"{'met' if v['rss_target_met'] else 'NOT met'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="SFT speed: TRL SFTTrainer vs alignkit sft")
    p.add_argument("--rounds", type=int, default=3, help="A B C rounds (medians over rounds)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 128 conversations")
    p.add_argument("--rows", type=int, default=512, help="conversations")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(DEFAULT_MODES))
    p.add_argument("--warmup", type=int, default=3, help="optimizer steps skipped per run")
    p.add_argument("--pack-length", type=int, default=512, help="alignkit packed row length")
    p.add_argument("--max-steps", type=int, default=None,
                   help="optimizer steps per run (default: one epoch)")
    p.add_argument("--bfd-max-steps", type=int, default=8,
                   help="steps of trl-bfd runs (its steps hold 8 x 1024 tokens and are slow; "
                        "0 = one epoch, ~21 steps)")
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
        args.rounds, args.rows = 1, 128

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sft_vs_trl-"))
    print(f"work dir {workdir}; load average before set-up: {_load()}", flush=True)
    stats = build_inputs(workdir, args.rows)
    if stats["len_max"] > 1024:
        raise SystemExit(f"a conversation has {stats['len_max']} tokens > 1024 (would truncate)")
    if "alignkit" in args.modes and stats["len_max"] > args.pack_length:
        raise SystemExit(f"a conversation has {stats['len_max']} tokens > --pack-length "
                         f"{args.pack_length}")
    peak = None
    if not args.no_peak:
        sys.path.insert(0, str(Path(__file__).parent))
        from matmul_peak import measure

        peak = measure([1024, 1536, 2048], 7, THREADS)
    runs = []
    for rnd in range(args.rounds):
        for mode in args.modes:
            res = run_mode(mode, workdir, args)
            res["round"] = rnd
            runs.append(res)
            print(f"round {rnd + 1}/{args.rounds} {mode:16s} {res['tokens_per_s']:8.0f} tokens/s "
                  f"peak RSS {res['peak_rss_mb']:6.0f} MB  steps {res['steps']} "
                  f"(steady {res['steady_steps']})  process {res['process_s']:.0f} s  "
                  f"load {res['load_before']} -> {res['load_after']}", flush=True)
    summary = summarize(runs, stats, peak["peak_gflops"] if peak else None)
    # Full-epoch runs must train on the same tokens (alignkit also trains the "\n" after each
    # assistant <|im_end|>, which TRL's {% generation %} span leaves out: 2 per conversation).
    trained = {m: row["trained_tokens"] for m, row in summary["table"].items()
               if row["total_tokens"] == stats["tokens"]}
    if trained and max(trained.values()) - min(trained.values()) > 2 * stats["n_rows"]:
        print(f"WARNING: full-epoch modes train on different token counts: {trained}")
    print_report(summary, stats, peak)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"stats": stats, "peak": peak, "runs": runs, "summary": summary,
             "argv": sys.argv[1:]}, indent=2))


if __name__ == "__main__":
    main()
