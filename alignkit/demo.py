"""`alignkit demo`: the loop on the built-in world, end to end, with a table of results.

Stages so far: pretrain the tiny base model -> SFT -> held-out evaluation of both. A stage
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
    from alignkit.train.sft import SFTConfig, sft
    from alignkit.world.pretrain import PretrainConfig, pretrain

    console = Console()
    out = Path(out)
    t0 = time.time()
    pre_dir, sft_dir = out / "pretrain", out / "sft"
    base = _stage(console, "pretrain", pre_dir,
                  lambda resume: pretrain(PretrainConfig(), pre_dir, resume=resume), force=force)
    tuned = _stage(console, "sft", sft_dir,
                   lambda resume: sft(SFTConfig(model=str(pre_dir / "final")), sft_dir,
                                      resume=resume), force=force)
    rows = {"base": _eval_entry(pre_dir), "sft": _eval_entry(sft_dir)}
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
    summary = {"models": rows, "elapsed_s": time.time() - t0,
               "runs": {"base": str(pre_dir), "sft": str(sft_dir)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    console.print(f"summary: {out / 'summary.json'}   lineage: alignkit lineage {sft_dir}")
    return summary


def _eval_entry(run_dir: Path) -> dict:
    report = json.loads((run_dir / "eval.json").read_text())
    return report["heldout/exact_match"]
