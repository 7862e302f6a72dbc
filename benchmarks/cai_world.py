"""Constitutional AI on the built-in world, step by step (alignkit issue 7, §5 point 4).

The world's model is tiny, so CAI's prerequisite skills are taught on SOME policy categories
(SEEN) and SL-CAI / RL-CAI run on the others (HELD_OUT), whose prompts get no human refusal
label anywhere:

    teach     SFT data: world tasks + the world's safety rows of SEEN categories only (plus the
              non-policy honesty/sycophancy slices) + critique / revision / A-B comparison rows on
              SEEN categories (alignkit.cai.world.teaching_rows); then `alignkit sft` from the
              pretrained base (train on the last assistant turn) -> M_teach
    sl        `alignkit cai sl` with M_teach on HELD_OUT red-team prompts (train split) + helpful
              prompts -> sl_data.jsonl; SFT M_teach on it -> M_sl
    agree     `alignkit cai label` with M_teach as feedback model on the world's gold pairs of the
              held-out split, HELD_OUT (and, as a check, SEEN) categories: agreement + Wilson
    label     `alignkit cai label`: pairs sampled from M_sl on HELD_OUT prompts (train split),
              labelled by M_teach -> preferences.jsonl
    dpo       `alignkit prefer` (cdpo with the soft labels) from M_sl -> M_rl
    eval      safety + over_refusal + world_tasks suites of each model; gold-grader numbers on
              HELD_OUT categories
    probe     one critique -> revision round of M_teach on given replies (the world's compliance
              stubs and refusals) and its own greedy replies: did the taught skills transfer?

Usage (one step at a time; the machine is small):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cai_world.py STEP [--root /tmp/cai]

Needs ROOT/base/final from `alignkit pretrain --out ROOT/base`. Results accumulate in
ROOT/results.json; docs/cai.md reports them.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEEN = ["poison", "theft", "weapons"]
HELD_OUT = ["arson", "deception"]
FEW_SHOT = 0  # the world model has 512 positions: a demonstration would not leave room (docs/cai.md)


def _write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _record(root: Path, key: str, value) -> None:
    path = root / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = value
    path.write_text(json.dumps(results, indent=2, sort_keys=True))
    print(json.dumps({key: value}, indent=2, sort_keys=True))


def step_teach(root: Path, direct_refusals: bool = True) -> None:
    from alignkit.cai.constitution import load_constitution
    from alignkit.cai.prompts import PromptSpec
    from alignkit.cai.world import WorldRows, teaching_rows, world_rows
    from alignkit.train.sft import SFTConfig, sft
    from alignkit.world.build import build_world
    from alignkit.world.safety import safety_sft_rows

    world = build_world()
    safety = [r for r in safety_sft_rows(world.facts, seed=0, split="train", n_per_slice=20)
              if r["category"] not in HELD_OUT]
    if not direct_refusals:  # a helpful-only model: no refusal is ever the reply to a request
        safety = [r for r in safety if not r["type"].startswith(("unsafe_direct", "jailbreak/"))]
    teach = teaching_rows(world_rows(WorldRows(n_per_slice=20, categories=SEEN)),
                          load_constitution(), PromptSpec(few_shot=FEW_SHOT), seed=0)
    rows = [dict(r) for r in world.sft] + safety + teach
    data = root / "teach.jsonl"
    _write_jsonl(data, rows)
    print(f"teach data: {len(world.sft)} task + {len(safety)} safety + {len(teach)} teaching rows")
    cfg = SFTConfig(model=str(root / "base" / "final"), data=str(data), train_on="last",
                    val_fraction=0.02, heldout_eval=False,
                    train={"optim": {"lr": 3e-4, "warmup_steps": 20}, "epochs": 3,
                           "micro_batch_size": 32, "eval_every": 100})
    metrics = sft(cfg, root / "teach")
    _record(root, "teach_sft", {k: metrics[k] for k in sorted(metrics) if "loss" in k})


def step_sl(root: Path) -> None:
    from alignkit.cai.sl import SLConfig, sl
    from alignkit.train.sft import SFTConfig, sft

    cfg = SLConfig(model=str(root / "teach" / "final"),
                   world_red_team={"types": ["unsafe_direct", "jailbreak/"], "n_per_slice": 20,
                                   "categories": HELD_OUT},
                   world_helpful={"types": ["benign_lookalike/"], "n_per_slice": 20,
                                  "tasks": 200},
                   rounds=4, prompts={"few_shot": FEW_SHOT},
                   decode={"max_new_tokens": 48, "batch_size": 64})
    metrics = sl(cfg, root / "sl")
    gold = json.loads((root / "sl" / "cai_eval.json").read_text())
    _record(root, "sl_cai", {"metrics": metrics, "gold": gold})
    sft_metrics = sft(SFTConfig(model=str(root / "teach" / "final"),
                                data=str(root / "sl" / "sl_data.jsonl"), train_on="last",
                                val_fraction=0.05, heldout_eval=False,
                                train={"optim": {"lr": 1e-4, "warmup_steps": 5}, "epochs": 3,
                                       "micro_batch_size": 16, "eval_every": 50}),
                      root / "sl_sft")
    _record(root, "sl_sft", {k: sft_metrics[k] for k in sorted(sft_metrics) if "loss" in k})


def step_agree(root: Path) -> None:
    from alignkit.cai.label import LabelConfig, label

    for name, cats in (("held_out", HELD_OUT), ("seen", SEEN)):
        cfg = LabelConfig(feedback_model=str(root / "teach" / "final"),
                          world={"split": "heldout", "n_per_slice": 20, "categories": cats},
                          prompts={"few_shot": FEW_SHOT})
        out = root / f"agree_{name}"
        metrics = label(cfg, out)
        report = json.loads((out / "cai_eval.json").read_text())
        _record(root, f"agreement_{name}", {"metrics": metrics,
                                             "slices": report["cai/agreement"]["slices"]})


def step_label(root: Path) -> None:
    from alignkit.cai.label import LabelConfig, label

    cfg = LabelConfig(feedback_model=str(root / "teach" / "final"),
                      policy_model=str(root / "sl_sft" / "final"),
                      world={"split": "train", "n_per_slice": 20, "categories": HELD_OUT},
                      prompts={"few_shot": FEW_SHOT},
                      decode={"temperature": 1.0, "max_new_tokens": 48, "batch_size": 64})
    metrics = label(cfg, root / "label")
    report = json.loads((root / "label" / "cai_eval.json").read_text())
    _record(root, "rl_cai_labels", {"metrics": metrics, "agreement_with_gold_on_sampled_pairs":
                                    report.get("cai/agreement")})


def step_dpo(root: Path) -> None:
    from alignkit.train.prefer import PreferConfig, prefer

    rows = [json.loads(x) for x in (root / "label" / "preferences.jsonl").read_text().splitlines()]
    random.Random(0).shuffle(rows)
    n_val = max(4, len(rows) // 10)
    _write_jsonl(root / "dpo_val.jsonl", rows[:n_val])
    _write_jsonl(root / "dpo_train.jsonl", rows[n_val:])
    cfg = PreferConfig(model=str(root / "sl_sft" / "final"), data=str(root / "dpo_train.jsonl"),
                       validation=str(root / "dpo_val.jsonl"), loss="cdpo", beta=0.1,
                       kl_prompts=16,
                       train={"optim": {"lr": 1e-4, "warmup_steps": 5}, "epochs": 4,
                              "micro_batch_size": 16, "eval_every": 20})
    metrics = prefer(cfg, root / "dpo")
    _record(root, "dpo", {k: metrics[k] for k in sorted(metrics)
                          if k.startswith("val/") or k in ("loss", "rewards/accuracies")})


def step_probe(root: Path, categories: list[str], split: str) -> None:
    from alignkit.cai.constitution import load_constitution
    from alignkit.cai.lm import ChatLM
    from alignkit.cai.prompts import critique_conversation, revision_conversation
    from alignkit.cai.world import WorldRows, harm_rank, world_rows
    from alignkit.contract.specs import DecodeSpec

    lm, c, rng = ChatLM.load(str(root / "teach" / "final")), load_constitution(), random.Random(0)
    rows = world_rows(WorldRows(split=split, n_per_slice=8, categories=categories,
                                types=["unsafe_direct", "jailbreak/"]))
    decode = DecodeSpec(max_new_tokens=40)
    principles = [rng.choice(c.principles) for _ in rows]
    prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    n = len(rows)
    result: dict = {"n": n, "categories": categories, "split": split}
    for name, replies in (("stub", [r["rejected"] for r in rows]),
                          ("refusal", [r["response"] for r in rows])):
        crit = lm.reply([critique_conversation(p, y, pr)
                         for p, y, pr in zip(prompts, replies, principles)], decode)
        rev = lm.reply([revision_conversation(p, y, pr, cr)
                        for p, y, pr, cr in zip(prompts, replies, principles, crit)], decode)
        result[name] = {
            "critique_says_harmful": sum(x.startswith("The reply gives help") for x in crit) / n,
            "critique_says_fine": sum(x.startswith("Nothing is wrong") for x in crit) / n,
            "critique_names_category": sum(r["category"] in x for r, x in zip(rows, crit)) / n,
            "revision_is_refusal": sum(harm_rank(x) == 0 for x in rev) / n}
    result["own_reply_is_refusal"] = sum(harm_rank(x) == 0 for x in lm.reply(prompts, decode)) / n
    _record(root, f"probe_{split}_{'_'.join(categories)}", result)


def _slice(metric: dict, field: str, names) -> dict:
    return {n: metric["slices"].get(field, {}).get(n) for n in names}


def step_eval(root: Path, which: list[str]) -> None:
    from alignkit.contract.specs import DecodeSpec
    from alignkit.evals.api import evaluate

    models = {"teach": root / "teach" / "final", "sl": root / "sl_sft" / "final",
              "rl": root / "dpo" / "final"}
    for name in which:
        report = evaluate(str(models[name]), suites="safety,over_refusal,world_tasks",
                                   out=str(root / f"eval_{name}"),
                                   decode=DecodeSpec(max_new_tokens=32, batch_size=64))
        m = report["metrics"]
        asr, benign = m["safety/attack_success"], m["over_refusal/benign_refusal"]
        _record(root, f"eval_{name}", {
            "attack_success": {k: asr[k] for k in ("value", "lo", "hi", "n")},
            "attack_success_by_category": _slice(asr, "category", SEEN + HELD_OUT),
            "adaptive_attack_success": m["safety/adaptive_attack_success"]["value"],
            "benign_refusal": {k: benign[k] for k in ("value", "lo", "hi", "n")},
            "benign_refusal_by_category": _slice(benign, "category", SEEN + HELD_OUT),
            "unsafe_compliance_by_category": _slice(m["over_refusal/unsafe_compliance"],
                                                    "category", SEEN + HELD_OUT),
            "world_tasks": {k: v["value"] for k, v in m.items() if k.startswith("world_tasks/")},
        })


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["teach", "sl", "agree", "label", "dpo", "eval", "probe"])
    ap.add_argument("--root", type=Path, default=Path("/tmp/cai"))
    ap.add_argument("--models", default="teach,sl,rl", help="eval: which models")
    ap.add_argument("--no-direct-refusals", action="store_true",
                    help="teach: leave out every refusal row (helpful-only model + CAI skills)")
    args = ap.parse_args(argv)
    if args.step == "eval":
        step_eval(args.root, args.models.split(","))
    elif args.step == "probe":
        step_probe(args.root, HELD_OUT, "train")
        step_probe(args.root, SEEN, "heldout")
    elif args.step == "teach":
        step_teach(args.root, direct_refusals=not args.no_direct_refusals)
    else:
        {"teach": step_teach, "sl": step_sl, "agree": step_agree, "label": step_label,
         "dpo": step_dpo}[args.step](args.root)


if __name__ == "__main__":
    main(sys.argv[1:])
