"""`alignkit demo`: the alignment loop on the built-in world, end to end.

Stages (a pipeline, see `alignkit.pipeline`; completed stages are reused, an interrupted one is
resumed from its last checkpoint):

    pretrain the tiny base model -> SFT with the policy's refusal examples (and the rows that
    teach it to critique and revise, for the CAI round) -> reward model -> DPO -> GRPO (online
    RL on the world's verifiable reward) -> a Constitutional AI round (SL-CAI: the SFT model
    critiques and revises its own replies to red-team prompts, `cai_data`; SFT on those
    revisions and its own helpful replies, `cai`) -> every evaluation suite on each model
    -> release gate of the RL model against the SFT baseline -> HTML report

It ends with one table (one row per model: base, SFT, DPO, RL, CAI; helpfulness, attack
success, benign refusal, honesty, sycophancy, KL to SFT, capability tax, each with its 95%
interval) and the gate verdict, and writes OUT/summary.json and OUT/report.html. The numbers
are whatever the runs measure: the table exists to show trade-offs, not to flatter any stage.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Suites run on every model, and the columns of the summary table: (title, metric, better).
DEMO_SUITES = ["world_tasks", "safety", "over_refusal", "honesty", "sycophancy", "drift", "tax"]
COLUMNS = [
    ("helpful EM", "world_tasks/exact_match", "↑"),
    ("attack success", "safety/attack_success", "↓"),
    ("benign refusal", "over_refusal/benign_refusal", "↓"),
    ("honest abstain", "honesty/abstention", "↑"),
    ("syco-phancy", "sycophancy/adopts_false_premise", "↓"),
    ("KL to SFT", "drift/kl", "↓"),
    ("tax ΔEM vs base", "tax/exact_match_delta", "↑"),
]
# Evaluation examples per slice: the held-out sets are larger; the demo keeps to its time budget.
EVAL_LIMIT = 12
DEMO_GATES = Path(__file__).parent / "demo_gates.yaml"
# Seconds per stage (by name, else by kind) of the full demo on 2 idle CPU cores, measured
# 2026-11-23 (8 min 30 s in all; benchmarks/RESULTS.md): the pipeline's time-left display.
ESTIMATE_S = {"base": 165.0, "sft": 155.0, "reward": 45.0, "dpo": 40.0, "rl": 30.0,
              "cai_data": 5.0, "cai": 5.0, "eval": 16.0}
GATED = "rl"  # the model the release gate judges against SFT (named, not "the last row")
# World safety rows per slice whose CAI teaching rows SFT adds (6 rows each, 15 slices: 270 rows,
# about +19% of the SFT stage's tokens; docs/sft.md, `cai_teaching_per_slice`).
CAI_TEACHING_PER_SLICE = 3


def _train_stages() -> list[dict[str, Any]]:
    stages = [
        {"name": "base", "stage": "pretrain", "config": {}},
        {"name": "sft", "stage": "sft",
         "config": {"model": "${base.out}/final", "safety_per_slice": 20,
                    "cai_teaching_per_slice": CAI_TEACHING_PER_SLICE}},
        {"name": "reward", "stage": "reward",
         "config": {"model": "${sft.out}/final", "world_n_per_slice": 10}},
        {"name": "dpo", "stage": "prefer",
         "config": {"model": "${sft.out}/final", "world_n_per_slice": 10}},
    ]
    stages.append({"name": "rl", "stage": "rl", "config": {
        "model": "${sft.out}/final", "algo": "grpo", "iterations": 30}})
    # The CAI round (docs/cai.md): SL-CAI data from the SFT model on train-split red-team prompts
    # of every policy category (no few-shot demonstration, as in SFT's teaching rows), then SFT
    # of the same model on its final revisions and helpful replies, last assistant turn only.
    stages.append({"name": "cai_data", "stage": "cai_sl", "config": {
        "model": "${sft.out}/final", "constitution": "builtin:world",
        "world_red_team": {"split": "train", "types": ["unsafe_direct", "jailbreak/"]},
        "world_helpful": {"split": "train", "types": ["benign_lookalike/"], "tasks": 20},
        "max_red_team": 40, "max_helpful": 40, "rounds": 2, "prompts": {"few_shot": 0},
        "decode": {"max_new_tokens": 32}}})
    stages.append({"name": "cai", "stage": "sft", "config": {
        "model": "${sft.out}/final", "data": "${cai_data.out}/sl_data.jsonl", "train_on": "last",
        # file data: the world-only extras (replay, copy-family repeats, held-out EM) do not
        # apply; eval_cai measures the model
        "replay_docs": 0, "sampling_weights": {}, "heldout_eval": False,
        "train": {"epochs": 2, "micro_batch_size": 8, "eval_every": 0,
                  "optim": {"lr": 1e-4, "warmup_steps": 2}}}})
    return stages


# `alignkit demo --quick`: the same pipeline on a small world with a few steps per stage, to check
# the wiring in about a minute (its numbers mean nothing).
_QUICK_WORLD = {"corpus_passes": 1, "sft_per_family": 16, "heldout_per_family": 2, "n_people": 16}
_QUICK_TRAIN = {"max_steps": 12, "micro_batch_size": 8, "eval_every": 0, "progress": False}
QUICK: dict[str, dict[str, Any]] = {
    "pretrain": {"world": _QUICK_WORLD, "train": _QUICK_TRAIN},
    "sft": {"world": _QUICK_WORLD, "train": _QUICK_TRAIN, "safety_per_slice": 1,
            "cai_teaching_per_slice": 1},
    "reward": {"world": _QUICK_WORLD, "train": _QUICK_TRAIN, "world_n_per_slice": 1},
    "prefer": {"world": _QUICK_WORLD, "train": _QUICK_TRAIN, "world_n_per_slice": 1},
    "rl": {"world": _QUICK_WORLD, "iterations": 2, "prompts_per_iteration": 4,
           "rollout": {"temperature": 1.0, "max_new_tokens": 4}, "train": {"micro_batch_size": 8, "progress": False}},
    "eval": {"world": _QUICK_WORLD, "limit": 1, "decode": {"max_new_tokens": 4}},
    "cai_sl": {"world_red_team": {"world": _QUICK_WORLD, "n_per_slice": 1},
               "world_helpful": {"world": _QUICK_WORLD, "n_per_slice": 1, "tasks": 2},
               "max_red_team": 4, "max_helpful": 4, "rounds": 1,
               # sampled: greedy, the barely trained quick model replies with blanks (no rows)
               "decode": {"max_new_tokens": 4, "temperature": 1.0}},
}
# Stages whose quick settings are not those of their kind: `cai` is an SFT on a file of <= 8 rows.
QUICK_STAGES: dict[str, dict[str, Any]] = {
    "cai": {"train": {"max_steps": 2, "micro_batch_size": 2, "eval_every": 0, "progress": False}},
}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def demo_pipeline(quick: bool = False) -> dict[str, Any]:
    """The demo as a pipeline spec: training stages, then one eval stage per model."""
    stages = _train_stages()
    models = {"base": "${base.out}/final"}
    models.update({s["name"]: "${" + s["name"] + ".out}/final" for s in stages
                   if s["stage"] in ("sft", "prefer", "rl")})
    for name, path in models.items():
        stages.append({"name": f"eval_{name}", "stage": "eval", "config": {
            "model": path, "suites": DEMO_SUITES, "reference": "${sft.out}/final",
            "base": "${base.out}/final", "limit": EVAL_LIMIT}})
    if quick:
        for s in stages:
            quick_cfg = QUICK_STAGES.get(s["name"], QUICK.get(s["stage"], {}))
            s["config"] = _merge(s["config"], quick_cfg)
    else:  # quick runs have no measured estimates: their time left is not shown
        for s in stages:
            s["estimate_s"] = ESTIMATE_S.get(s["name"], ESTIMATE_S.get(s["stage"]))
    return {"stages": stages}


def _cell(m: dict | None) -> str:
    if m is None or m.get("value") is None:
        return "-"
    lo, hi = m.get("lo"), m.get("hi")
    ci = f"\n[{lo:.2f},{hi:.2f}]" if lo is not None and hi is not None else ""
    return f"{m['value']:.2f}{ci}"


def run_demo(out: Path, *, force: bool = False, quick: bool = False) -> dict:
    from alignkit.evals.suite import read_eval
    from alignkit.gates.command import run_gate
    from alignkit.pipeline.run import run_pipeline
    from alignkit.report import build_report

    console = Console()
    out = Path(out)
    t0 = time.time()
    spec = demo_pipeline(quick)
    run_pipeline(spec, out=out, force="base" if force else None)
    evals = [s["name"] for s in spec["stages"] if s["stage"] == "eval"]
    models = [e.removeprefix("eval_") for e in evals]
    reports = {m: read_eval(out / f"eval_{m}")["metrics"] for m in models}

    console.rule(f"release gate: {GATED} vs sft")
    code = run_gate(out / f"eval_{GATED}", DEMO_GATES, out / "eval_sft", card=True,
                    console=console)
    verdict = {0: "pass", 1: "fail"}.get(code, "error")

    table = Table(title="alignkit demo: built-in world, held-out sets (95% intervals)")
    table.add_column("model")
    for title, _, better in COLUMNS:
        # fold, not "…": on a narrow terminal (or a log, 80 columns) the interval wraps
        table.add_column(f"{title} {better}", justify="right", overflow="fold")
    for m in models:
        table.add_row(m, *(_cell(reports[m].get(metric)) for _, metric, _ in COLUMNS))
    console.print(table)
    console.print(f"gate ({GATED} vs sft, {DEMO_GATES.name}): [bold]{verdict}[/bold]")

    run_dirs = [out / name for name in ("base", "sft", "reward", "dpo", "rl", "cai_data", "cai")
                if (out / name).is_dir()]
    report = build_report(run_dirs + [out / e for e in evals], out / "report.html",
                          title="alignkit demo")
    summary = {
        "elapsed_s": time.time() - t0,
        "gate": {"run": GATED, "baseline": "sft", "verdict": verdict},
        "models": {m: {metric: reports[m].get(metric) for _, metric, _ in COLUMNS} for m in models},
        "runs": {p.name: str(p) for p in run_dirs}, "report": str(report)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    console.print(f"report: {report}\nsummary: {out / 'summary.json'}   "
                  f"lineage: alignkit lineage {out / 'dpo'}")
    return summary
