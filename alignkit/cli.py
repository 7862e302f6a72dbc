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


@app.command("prefer")
def prefer(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
           out: Path = OutOpt, resume: bool = ResumeOpt):
    """Preference optimisation: sigmoid (DPO) | ipo | cdpo | robust | hinge | kto | orpo | simpo."""
    from alignkit.train.prefer import PreferConfig, prefer as run

    _print_metrics("prefer", run(_load(PreferConfig, config, set_), out, resume=resume))


@app.command("reward")
def reward(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
           out: Path = OutOpt, resume: bool = ResumeOpt):
    """Bradley-Terry reward model; writes OUT/eval.json (accuracy, margins, ECE, slices)."""
    from alignkit.train.reward import RewardConfig, reward as run

    _print_metrics("reward", run(_load(RewardConfig, config, set_), out, resume=resume))


@app.command("rl")
def rl(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
       out: Path = OutOpt, resume: bool = ResumeOpt):
    """Online RL against a reward: ppo | grpo | rloo, with a KL budget to the reference."""
    from alignkit.train.rl import RLConfig, rl as run

    _print_metrics("rl", run(_load(RLConfig, config, set_), out, resume=resume))


@app.command("classify-refusals")
def classify_refusals(
        input: Path = typer.Option(..., "--input", help="CSV or JSONL file of (prompt, completion) rows"),
        prompt_field: str = typer.Option("prompt", "--prompt-field"),
        completion_field: str = typer.Option("completion", "--completion-field"),
        out: Path = typer.Option(..., "--out", help="JSONL or CSV: one label per input row, in order"),
        method: str = typer.Option("rules", "--method", help="rules (default) | prefix (XSTest baseline)")):
    """Label completions as full_compliance / full_refusal / partial_refusal."""
    from collections import Counter

    from alignkit.evals.refusal import classify_file

    labels = classify_file(input, prompt_field, completion_field, out, method)
    counts = Counter(label.label for label in labels)
    _print_metrics(f"refusal labels ({method})", {k: v for k, v in sorted(counts.items())})


@app.command("eval")
def eval_(model: str = typer.Option(..., "--model", help="HF dir, .gguf file or builtin:NAME"),
          suite: str = typer.Option("world_tasks", "--suite",
                                    help="comma-separated suite names, or 'all'"),
          prompts: Optional[Path] = typer.Option(None, "--prompts",
                                                 help="extra prompts, e.g. an XSTest-format CSV"),
          reference: Optional[str] = typer.Option(None, "--reference",
                                                  help="reference model (drift, win rate)"),
          base: Optional[str] = typer.Option(None, "--base", help="base model (capability tax)"),
          judge: Optional[str] = typer.Option(None, "--judge",
                                              help="reward-model directory judging win rates"),
          template: Optional[str] = typer.Option(None, "--template", help="chat template override"),
          limit: Optional[int] = typer.Option(None, "--limit",
                                              help="at most N examples per slice (quick look)"),
          guard: Optional[Path] = typer.Option(None, "--guard",
                                               help="guard dir: evaluate model + input/output rails"),
          set_: Optional[List[str]] = SetOpt,
          out: Path = OutOpt):
    """Evaluate a model on suites; writes OUT/eval.json and OUT/samples.jsonl."""
    from alignkit.contract.specs import DecodeSpec
    from alignkit.evals.api import evaluate
    from alignkit.evals.suite import parse_suites
    from alignkit.train.config import apply_overrides

    names = parse_suites(suite)  # fail on a typo before loading any model
    decode = apply_overrides(DecodeSpec(max_new_tokens=24), set_ or [])
    report = evaluate(model, names, out, reference=reference, base=base, judge=judge,
                      prompts=prompts, template=template, decode=decode, limit=limit, guard=guard,
                      progress=lambda name: print(f"suite {name} ...", flush=True))
    _print_eval(report)
    print(f"wrote {out / 'eval.json'} and {out / 'samples.jsonl'}")


def _print_eval(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"eval {report['model']}")
    for col in ("metric", "value", "95% interval", "n"):
        table.add_column(col)
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for name, m in report["metrics"].items():
        table.add_row(name, fmt(m["value"]), f"[{fmt(m['lo'])}, {fmt(m['hi'])}]", str(m["n"]))
    Console().print(table)


@app.command()
def lineage(run_dir: Path = typer.Argument(..., help="a run directory with manifest.json")):
    """Print the chain of runs from the base model to RUN_DIR."""
    from alignkit.contract.lineage import format_lineage, lineage as chain

    typer.echo(format_lineage(chain(run_dir)))


@app.command()
def report(run_dirs: Optional[List[Path]] = typer.Argument(None, help="run directories, in display order"),
           out: Path = typer.Option(..., "--out", "-o", help="HTML file to write"),
           max_failures: int = typer.Option(20, "--max-failures", help="failed samples shown per run and suite"),
           title: Optional[str] = typer.Option(None, "--title", help="page title"),
           attack_metric: Optional[str] = typer.Option(None, "--attack-metric", help="suite/metric for the frontier's y axis"),
           refusal_metric: Optional[str] = typer.Option(None, "--refusal-metric", help="suite/metric for the frontier's x axis")):
    """One self-contained HTML report over run directories (curves, evals, gates, failures, lineage)."""
    from alignkit.report import build_report

    path = build_report(run_dirs or [], out, max_failures=max_failures, title=title,
                        attack_metric=attack_metric, refusal_metric=refusal_metric)
    typer.echo(f"wrote {path}")


@app.command()
def pipeline(file: Path = typer.Argument(..., help="pipeline YAML file (stages in order)"),
             out: Optional[Path] = typer.Option(None, "--out", "-o",
                                                help="root directory (default: `out:` in the file)"),
             dry_run: bool = typer.Option(False, "--dry-run", help="print the plan; run nothing"),
             force: Optional[str] = typer.Option(None, "--force",
                                                 help="re-run STAGE and every later stage")):
    """Run stages in order; each is reused, resumed or re-run by the digest of its config."""
    from alignkit.pipeline.run import run_pipeline

    run_pipeline(file, out=out, dry_run=dry_run, force=force)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="output directory"),
         force: bool = typer.Option(False, "--force", help="re-run stages that already finished"),
         quick: bool = typer.Option(False, "--quick",
                                    help="tiny world, a few steps per stage: checks the wiring")):
    """The loop on the built-in world: pretrain -> SFT -> reward model -> DPO [-> RL] -> every
    eval suite per model -> release gate -> report.html and summary.json."""
    from alignkit.demo import run_demo

    run_demo(out, force=force, quick=quick)


@app.command()
def gate(run: Path = typer.Option(..., "--run", help="run directory to judge (eval.json, manifest.json)"),
         gates: Path = typer.Option(..., "--gates", help="gate spec YAML (see docs/gates.md)"),
         baseline: Optional[Path] = typer.Option(None, "--baseline", help="baseline run for change rules"),
         card: bool = typer.Option(True, "--card/--no-card", help="also write RUN/MODEL_CARD.md"),
         guard_report: Optional[Path] = typer.Option(None, "--guard-report",
                                                     help="guard report.json (FPR/FNR for the card)")):
    """Release gate: writes RUN/gate.json; exit 0 pass, 1 fail, 2 usage or config error."""
    from alignkit.gates.command import run_gate

    raise typer.Exit(run_gate(run, gates, baseline, card=card, guard_report=guard_report))


# ---------------------------------------------------------------- cai (Constitutional AI)
cai_app = typer.Typer(no_args_is_help=True,
                      help="Constitutional AI: critique -> revise SFT data, AI preference labels.")
app.add_typer(cai_app, name="cai")


@cai_app.command("sl")
def cai_sl(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
           out: Path = OutOpt):
    """SL-CAI: critique and revise replies to red-team prompts; writes OUT/sl_data.jsonl."""
    from alignkit.cai.sl import SLConfig, sl as run

    _print_metrics("cai sl", run(_load(SLConfig, config, set_), out))


@cai_app.command("label")
def cai_label(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
              out: Path = OutOpt):
    """RL-CAI / RLAIF: A/B preference labels from a feedback model; writes OUT/preferences.jsonl."""
    from alignkit.cai.label import LabelConfig, label as run

    _print_metrics("cai label", run(_load(LabelConfig, config, set_), out))


# ---------------------------------------------------------------- guard (runtime guardrail)
guard_app = typer.Typer(no_args_is_help=True,
                        help="Runtime guardrail: train + calibrate to a target FPR, then check texts.")
app.add_typer(guard_app, name="guard")


@guard_app.command("calibrate")
def guard_calibrate(
        train: Optional[Path] = typer.Option(None, "--train", help="labelled training file (JSONL/JSON/CSV/Parquet)"),
        calib: Optional[Path] = typer.Option(None, "--calib", help="labelled calibration file (its benign rows set the threshold)"),
        test: Optional[Path] = typer.Option(None, "--test", help="labelled held-out test file: writes OUT/report.json + PNGs"),
        world: bool = typer.Option(False, "--world", help="use the built-in world's safety data for train/calib/test"),
        target_fpr: float = typer.Option(0.05, "--target-fpr", help="false-positive rate allowed on benign calibration texts"),
        method: str = typer.Option("empirical", "--method", help="empirical (smallest t with calib FPR <= target) | conformal"),
        text_field: str = typer.Option("prompt", "--text-field", help="text field(s), e.g. prompt or prompt+completion"),
        label_field: str = typer.Option("label", "--label-field", help="label field: unsafe/safe or 1/0"),
        slice_field: Optional[str] = typer.Option(None, "--slice-field", help="report FPR/FNR per value of this test field"),
        set_: Optional[List[str]] = SetOpt,
        out: Path = OutOpt):
    """Train the guard classifier, pick the threshold for --target-fpr, report on --test."""
    from alignkit.errors import ConfigError
    from alignkit.guard.build import build_guard, ensure_new_run_dir, guard_config
    from alignkit.guard.data import read_labelled, world_guard_data
    from alignkit.train.config import apply_overrides

    config = apply_overrides(guard_config(target_fpr=target_fpr, method=method, text_field=text_field,
                                          label_field=label_field), set_ or [])
    ensure_new_run_dir(out)  # before reading any data
    if world:
        if train or calib or test:
            raise ConfigError("--world supplies train, calib and test data; drop --train/--calib/--test")
        train_d, calib_d, test_d = world_guard_data()
    else:
        if train is None or calib is None:
            raise ConfigError("give --train and --calib (and optionally --test), or --world")
        train_d, calib_d = (read_labelled(p, text_field, label_field) for p in (train, calib))
        test_d = read_labelled(test, text_field, label_field, slice_field) if test else None
    res = build_guard(train_d, calib_d, test_d, config, out)
    metrics = {"threshold": res.calibration.threshold, "calib_fpr": res.calibration.fpr.value,
               "calib_benign_n": res.calibration.n_benign}
    if res.report is not None:
        r = res.report
        metrics.update({"test_fpr": r["fpr"]["value"], "test_fpr_95hi": r["fpr"]["hi"],
                        "test_fnr": r["fnr"]["value"], "test_fnr_95hi": r["fnr"]["hi"],
                        "test_auroc": r["auroc"], "test_auprc": r["auprc"]})
    _print_metrics(f"guard -> {out}", metrics)


@guard_app.command("check")
def guard_check(guard: Path = typer.Option(..., "--guard", help="guard directory (from guard calibrate --out)"),
                text: List[str] = typer.Option(..., "--text", help="text to check; repeatable"),
                as_json: bool = typer.Option(False, "--json", help="one JSON object per text")):
    """Score texts: prints score, threshold and verdict for each."""
    from alignkit.guard.runtime import Guard

    g = Guard.load(guard)
    for t, score in zip(text, g.score(text)):
        flagged = g.threshold is not None and score >= g.threshold
        verdict = "flagged" if flagged else ("allowed" if g.threshold is not None else "uncalibrated")
        if as_json:
            typer.echo(json.dumps({"text": t, "score": score, "threshold": g.threshold, "verdict": verdict}))
        else:
            typer.echo(f"score {score:.4f}  threshold {g.threshold:.4f}  verdict {verdict}"
                       if g.threshold is not None else f"score {score:.4f}  threshold none  verdict {verdict}")


# ---------------------------------------------------------------- synth (synthetic data)
synth_app = typer.Typer(no_args_is_help=True,
                        help="Synthetic instruction data: FLAN-style mixtures, filtering and quality.")
app.add_typer(synth_app, name="synth")


@synth_app.command("mix")
def synth_mix(spec: Path = typer.Option(..., "--spec", help="mixture spec YAML (see docs/synth.md)"),
              set_: Optional[List[str]] = SetOpt,
              out: Path = OutOpt):
    """Render tasks through templates (zero/few-shot, options) and mix them (capped proportional)."""
    from rich.console import Console
    from rich.table import Table

    from alignkit.synth.mix import MixSpec, run_mix
    from alignkit.train.config import load_config

    res = run_mix(load_config(MixSpec, spec, set_ or []), out, spec_path=spec)
    table = Table(title=f"synth mix -> {out}/data.jsonl")
    for col in ("task", "available", "rate", "rows", "epochs"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for s in res["summary"]:
        table.add_row(s["task"], str(s["available"]), f"{s['rate']:.4f}", str(s["rows"]),
                      f"{s['epochs']:.2f}")
    table.add_row("total", str(sum(s["available"] for s in res["summary"])), "1",
                  str(sum(s["rows"] for s in res["summary"])), "")
    Console().print(table)


@synth_app.command("filter")
def synth_filter(
        input: Path = typer.Option(..., "--input", help="JSONL/JSON rows (messages, prompt/completion, instruction/output, text)"),
        out: Path = OutOpt,
        decontaminate: Optional[List[Path]] = typer.Option(None, "--decontaminate", help="eval file whose n-grams training rows must not share; repeatable"),
        ngram: int = typer.Option(13, "--ngram", help="decontamination n-gram size in words"),
        min_ngram: Optional[int] = typer.Option(None, "--min-ngram", help="shorter eval rows are matched whole if at least this long (default min(8, ngram))"),
        exact_dedup: bool = typer.Option(True, "--exact-dedup/--no-exact-dedup", help="drop repeats of normalised text"),
        near_dup_threshold: float = typer.Option(0.8, "--near-dup-threshold", help="MinHash LSH Jaccard threshold"),
        no_near_dup: bool = typer.Option(False, "--no-near-dup", help="skip near-duplicate removal"),
        shingle: str = typer.Option("char", "--shingle", help="near-dup shingles: char | word"),
        shingle_size: int = typer.Option(5, "--shingle-size", help="n of the shingle n-grams"),
        scorer: str = typer.Option("none", "--scorer", help="quality scorer: none | hashed | reward"),
        good: Optional[List[Path]] = typer.Option(None, "--good", help="hashed scorer: file of good example rows; repeatable"),
        bad: Optional[List[Path]] = typer.Option(None, "--bad", help="hashed scorer: file of bad example rows; repeatable"),
        reward_model: Optional[Path] = typer.Option(None, "--reward-model", help="reward scorer: reward model directory"),
        template: Optional[str] = typer.Option(None, "--template", help="reward scorer: chat template override"),
        keep_threshold: Optional[float] = typer.Option(None, "--keep-threshold", help="keep rows with score >= this"),
        top_k: Optional[int] = typer.Option(None, "--top-k", help="keep the k best-scoring rows")):
    """Decontaminate, deduplicate (exact + MinHash) and quality-filter rows; rejects keep their reason."""
    from alignkit.synth.filter import filter_config, run_filter

    cfg = filter_config(
        exact_dedup=exact_dedup, near_dup_threshold=None if no_near_dup else near_dup_threshold,
        shingle=shingle, shingle_size=shingle_size, ngram=ngram,
        min_ngram=min_ngram if min_ngram is not None else min(8, ngram),
        decontaminate=[str(p) for p in decontaminate or []], scorer=scorer,
        good=[str(p) for p in good or []], bad=[str(p) for p in bad or []],
        reward_model=str(reward_model) if reward_model else None, template=template,
        keep_threshold=keep_threshold, top_k=top_k)
    counts = run_filter(cfg, input, out)["counts"]
    _print_metrics(f"synth filter -> {out}", {k: v for k, v in counts.items()})


@synth_app.command("self-instruct")
def synth_self_instruct(
        config: Path = typer.Option(..., "--config", "-c", help="Self-Instruct config YAML (see docs/synth.md)"),
        set_: Optional[List[str]] = SetOpt, out: Path = OutOpt,
        resume: bool = typer.Option(False, "--resume", help="continue the run in --out after its last finished round")):
    """Self-Instruct (Wang et al. 2022): grow an instruction pool from seed tasks; appends to OUT/pool.jsonl."""
    from alignkit.synth.self_instruct import SelfInstructConfig, self_instruct

    metrics = self_instruct(_load(SelfInstructConfig, config, set_), out, resume=resume)
    _print_metrics(f"synth self-instruct -> {out}/pool.jsonl",
                   {k: v for k, v in metrics.items() if not k.startswith("round_")})


# ---------------------------------------------------------------- study (measured experiments)
study_app = typer.Typer(no_args_is_help=True,
                        help="Measured studies built from the stages (e.g. reward over-optimisation).")
app.add_typer(study_app, name="study")


@study_app.command("overoptimization")
def study_overoptimization(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt,
                           out: Path = OutOpt):
    """Best-of-n and PPO against a weak proxy RM: proxy vs gold reward against sqrt(KL)."""
    from alignkit.studies.overoptimization import OveroptConfig, overoptimization

    metrics = overoptimization(_load(OveroptConfig, config, set_), out)
    typer.echo((out / "table.md").read_text(encoding="utf-8"))
    _print_metrics(f"study overoptimization -> {out}/overoptimization.json", metrics)


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
