"""The `alignkit` command line: one sub-command per stage.

Every stage takes `--config FILE.yaml` (optional: defaults run on the built-in world),
`--set key=value` overrides (dotted keys, YAML values), `--out DIR` and `--resume`.
Nothing in the library imports this module.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="alignkit: post-training with measured results and a versioned contract.")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (optional)")
SetOpt = typer.Option(None, "--set", help="override: key=value (dotted keys); repeatable")
OutOpt = typer.Option(..., "--out", "-o", help="run directory to create")
ResumeOpt = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint")


def _load(cls, config: Optional[Path], sets: Optional[List[str]]):
    from alignkit.train.config import load_config

    return load_config(cls, config if config is not None else {}, sets or [])


def _print_metrics(title: str, metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(metrics.items()):
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console().print(table)


@app.command()
def pretrain(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
             out: Path = OutOpt, resume: bool = ResumeOpt):
    """Pretrain the built-in world's tiny base model on the world corpus."""
    from alignkit.world.pretrain import PretrainConfig, pretrain as run

    _print_metrics("pretrain", run(_load(PretrainConfig, config, set_), out, resume=resume))


@app.command()
def sft(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
        out: Path = OutOpt, resume: bool = ResumeOpt):
    """Instruction tuning with a response-only loss."""
    from alignkit.train.sft import SFTConfig, sft as run

    _print_metrics("sft", run(_load(SFTConfig, config, set_), out, resume=resume))


@app.command()
def lineage(run_dir: Path = typer.Argument(..., help="a run directory with manifest.json")):
    """Print the chain of runs from the base model to RUN_DIR."""
    from alignkit.contract.lineage import format_lineage, lineage as chain

    typer.echo(format_lineage(chain(run_dir)))


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="output directory"),
         force: bool = typer.Option(False, "--force", help="re-run stages that already finished")):
    """The whole loop on the built-in world (pretrain -> SFT -> evaluation)."""
    from alignkit.demo import run_demo

    run_demo(out, force=force)


def main() -> None:
    from alignkit.errors import AlignkitError

    # Typer maps `set_` to `--set` via the explicit option name above.
    try:
        app()
    except AlignkitError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
