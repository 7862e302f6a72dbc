"""`alignkit demo`: the loop on the built-in world, end to end, with a table of results.

Stages so far: pretrain the tiny base model -> SFT -> DPO and a reward model from the SFT
model -> held-out evaluation of base, SFT and DPO. A stage
whose run directory already holds a completed manifest is reused (delete it or pass --force
to re-run); one that was interrupted is resumed from its last checkpoint.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _stage(console: Console, name: str, out: Path, run, *, force: bool) -> dict:
    from alignkit.contract.manifest import read_manifest

    manifest = out / "manifest.json"
    if manifest.exists() and force:
        shutil.rmtree(out)
    if manifest.exists():
        m = read_manifest(out)
        if m.status == "completed":
            console.print(f"[green]reuse[/green] {name}: {out} (completed {m.finished_at})")
            return dict(m.metrics)
        console.print(f"[yellow]resume[/yellow] {name}: {out} (status {m.status})")
        return run(resume=True)
    console.print(f"[bold]run[/bold] {name} -> {out}")
    t0 = time.time()
    metrics = run(resume=False)
    console.print(f"  {name} done in {time.time() - t0:.0f} s")
    return metrics


def run_demo(out: Path, *, force: bool = False) -> dict:
    from alignkit.train.prefer import PreferConfig, prefer
    from alignkit.train.reward import RewardConfig, reward
    from alignkit.train.sft import SFTConfig, sft
    from alignkit.world.pretrain import PretrainConfig, pretrain

    console = Console()
    out = Path(out)
    t0 = time.time()
    pre_dir, sft_dir, dpo_dir, rm_dir = out / "pretrain", out / "sft", out / "dpo", out / "reward"
    _stage(console, "pretrain", pre_dir,
           lambda resume: pretrain(PretrainConfig(), pre_dir, resume=resume), force=force)
    _stage(console, "sft", sft_dir,
           lambda resume: sft(SFTConfig(model=str(pre_dir / "final")), sft_dir, resume=resume),
           force=force)
    dpo = _stage(console, "dpo", dpo_dir,
                 lambda resume: prefer(PreferConfig(model=str(sft_dir / "final")), dpo_dir,
                                       resume=resume), force=force)
    rm = _stage(console, "reward", rm_dir,
                lambda resume: reward(RewardConfig(model=str(sft_dir / "final")), rm_dir,
                                      resume=resume), force=force)
    dpo_eval = dpo_dir / "task_eval"  # the prefer stage's own eval.json holds preference metrics
    if force or not (dpo_eval / "eval.json").exists():
        _evaluate_saved(dpo_dir / "final", dpo_eval)
    rows = {"base": _eval_entry(pre_dir), "sft": _eval_entry(sft_dir), "dpo": _eval_entry(dpo_eval)}
    table = Table(title="alignkit demo: built-in world, held-out split (greedy, chat template)")
    table.add_column("model")
    table.add_column("held-out exact match [95% CI]", justify="right")
    table.add_column("n", justify="right")
    for name, e in rows.items():
        table.add_row(name, f"{e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]", str(e["n"]))
    console.print(table)
    families = sorted(rows["sft"]["per_slice"])
    fam = Table(title="per task family (exact match)")
    fam.add_column("family")
    for name in rows:
        fam.add_column(name, justify="right")
    for f in families:
        fam.add_row(f, *(f"{rows[n]['per_slice'].get(f, float('nan')):.2f}" for n in rows))
    console.print(fam)
    console.print(f"DPO: held-out implicit-reward accuracy {dpo.get('val/rewards/accuracies', float('nan')):.3f}, "
                  f"KL(pi||ref) {dpo.get('val/kl', float('nan')):.3f} nats   |   reward model: held-out "
                  f"accuracy {rm.get('heldout/accuracy', float('nan')):.3f}, ECE "
                  f"{rm.get('heldout/ece', float('nan')):.3f} -> {rm.get('heldout/ece_temp', float('nan')):.3f} "
                  "after temperature")
    summary = {"models": rows, "elapsed_s": time.time() - t0,
               "dpo": {k: dpo.get(k) for k in ("val/rewards/accuracies", "val/kl")},
               "reward_model": {k: rm.get(k) for k in ("heldout/accuracy", "heldout/ece",
                                                       "heldout/ece_temp")},
               "runs": {"base": str(pre_dir), "sft": str(sft_dir), "dpo": str(dpo_dir),
                        "reward": str(rm_dir)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    console.print(f"summary: {out / 'summary.json'}   lineage: alignkit lineage {sft_dir}")
    return summary


def _evaluate_saved(model_dir: Path, out: Path) -> None:
    """World held-out exact match of a saved model (for stages that do not measure it)."""
    from alignkit.contract.specs import DecodeSpec
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model
    from alignkit.train.sft import world_heldout_eval

    loaded = load_model(str(model_dir))
    template = resolve_chat_template(loaded.tokenizer, None)
    world_heldout_eval(loaded.model, loaded.tokenizer, template, DecodeSpec(max_new_tokens=16), out)


def _eval_entry(eval_dir: Path) -> dict:
    from alignkit.evals.suite import read_eval

    em = read_eval(eval_dir)["metrics"]["world_tasks/exact_match"]
    return {**em, "per_slice": {k: v["value"] for k, v in em["slices"].get("family", {}).items()}}
