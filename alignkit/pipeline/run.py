"""Run a pipeline: resolve, plan, then execute the stages in order with progress and a summary.

    alignkit pipeline examples/pipeline_world.yaml [--out DIR] [--dry-run] [--force STAGE]

Python: ``run_pipeline("examples/pipeline_world.yaml", dry_run=True)``.

Order of work for a stage that runs: move the old directory aside (if the plan says so),
record a forced start in OUT/pipeline_force.json, write the key file, call the stage function
(``resume=True`` for an interrupted run with the same key), then require a completed manifest.
Each step leaves the directory in a state the planner reads correctly if the process dies
right after it, so a failure or SIGKILL at any moment is continued by running the same
command again. OUT/pipeline_summary.json records what happened (also after a failure).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from alignkit.contract.manifest import atomic_write_bytes, read_manifest, utc_now
from alignkit.errors import AlignkitError
from alignkit.pipeline.cache import (ForceRecord, clear_force_record, move_aside, output_digests,
                                     pipeline_lock, read_force_record, write_force_record,
                                     write_key_file)
from alignkit.pipeline.display import fmt_seconds, plan_table, summary_table, time_left
from alignkit.pipeline.plan import PlannedStage, plan_stages
from alignkit.pipeline.registry import main_metrics_of
from alignkit.pipeline.resolve import resolve_stages
from alignkit.pipeline.spec import Pipeline, load_pipeline

SUMMARY_FILE = "pipeline_summary.json"


@dataclass
class StageResult:
    name: str
    kind: str
    action: str  # run | resume | reuse | failed | not run
    key: str
    out: str
    seconds: float | None  # wall time of the stage function; None when it did not run
    metrics: dict[str, Any] = field(default_factory=dict)
    main_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineRun:
    root: Path
    plan: list[PlannedStage]
    results: list[StageResult]  # empty for a dry run
    dry_run: bool = False


def default_root(pipeline: Pipeline) -> Path:
    """`out:` from the file, else runs/<file stem>."""
    if pipeline.spec.out:
        return Path(pipeline.spec.out)
    stem = Path(pipeline.source).stem if pipeline.source != "<pipeline dict>" else "pipeline"
    return Path("runs") / stem


def run_pipeline(pipeline: Pipeline | str | Path | dict, *, out: str | Path | None = None,
                 dry_run: bool = False, force: str | None = None,
                 console: Console | None = None) -> PipelineRun:
    """Resolve and plan the pipeline; unless `dry_run`, run it. Returns the plan and results.

    Raises ConfigError for a bad file before anything runs; a failing stage's exception
    propagates after the summary is printed (its manifest says `failed`; run again to resume).
    """
    if not isinstance(pipeline, Pipeline):
        pipeline = load_pipeline(pipeline)
    console = console or Console()
    root = Path(out) if out is not None else default_root(pipeline)
    stages = resolve_stages(pipeline, root)
    root = root.resolve()
    if dry_run:
        plan = plan_stages(stages, force=force, force_record=read_force_record(root))
        console.print(plan_table(plan, str(root)))
        console.print("dry run: nothing was run, moved or written")
        return PipelineRun(root, plan, [], dry_run=True)
    with pipeline_lock(root):
        record = read_force_record(root)
        plan = plan_stages(stages, force=force, force_record=record)
        console.print(plan_table(plan, str(root)))
        if force is not None and (record is None or record.stage != force):
            record = ForceRecord(stage=force)
        results = _execute(plan, root, pipeline.source, record, console)
    return PipelineRun(root, plan, results)


def _execute(plan: list[PlannedStage], root: Path, source: str, record: ForceRecord | None,
             console: Console) -> list[StageResult]:
    t0 = time.monotonic()
    results: list[StageResult] = []
    n = len(plan)
    spent = spent_estimated = 0.0  # seconds of the stages run so far that had estimates, and theirs
    for i, p in enumerate(plan, start=1):
        s = p.stage
        head = f"[{i}/{n}] {s.name} ({s.kind.name})"
        if p.action == "reuse":
            metrics = dict(read_manifest(s.out).metrics)
            console.print(f"{head}: [green]reuse[/green] {s.key} -- {escape(p.why)}")
            results.append(_result(p, "reuse", None, metrics))
            continue
        left = time_left([q.stage.estimate_s for q in plan[i - 1:] if q.action != "reuse"],
                         spent, spent_estimated)
        left_text = f"; about {fmt_seconds(left)} left" if left is not None else ""
        console.rule(f"{head}: {p.action}  (pipeline elapsed "
                     f"{fmt_seconds(time.monotonic() - t0)}{left_text})")
        console.print(f"  why: {escape(p.why)}\n  key: {s.key}\n  out: {escape(str(s.out))}")
        if p.move_aside and s.out.exists():
            console.print(f"  moved the old run aside: {move_aside(s.out)}")
        if p.forced and record is not None and s.name not in record.started:
            record.started.append(s.name)
            write_force_record(root, record)
        if p.action == "run":
            write_key_file(s.out, key=s.key, name=s.name, kind=s.kind.name, config=s.config_dump,
                           upstream=s.upstream, source=source,
                           upstream_outputs={u: output_digests(read_manifest(root / u).outputs)
                                             for u in s.upstream})
        started = time.monotonic()
        try:
            returned = s.kind.fn(s.config, s.out, resume=p.action == "resume")
            manifest = read_manifest(s.out)
            if manifest.status != "completed":
                raise AlignkitError(
                    f"stage '{s.name}': the {s.kind.name} function returned but "
                    f"{s.out / 'manifest.json'} has status {manifest.status!r}, not 'completed' "
                    "(a stage function must finish its run with finish_run)")
        except BaseException as err:
            seconds = time.monotonic() - started
            results.append(_result(p, "failed", seconds, {}))
            results.extend(_result(q, "not run", None, {}) for q in plan[i:])
            console.print(summary_table(results))
            _write_summary(root, source, results, time.monotonic() - t0, status="failed")
            console.print(f"[bold red]stage '{s.name}' failed[/bold red] after "
                          f"{fmt_seconds(seconds)}: {type(err).__name__}: {escape(str(err))}\n"
                          f"Run the same command again to continue from '{s.name}'.")
            raise
        seconds = time.monotonic() - started
        if s.estimate_s is not None:
            spent, spent_estimated = spent + seconds, spent_estimated + s.estimate_s
        metrics = dict(returned) if isinstance(returned, dict) else dict(manifest.metrics)
        results.append(_result(p, p.action, seconds, metrics))
        console.print(f"  {s.name} done in {fmt_seconds(seconds)} "
                      f"(pipeline elapsed {fmt_seconds(time.monotonic() - t0)})")
    clear_force_record(root)  # every stage is complete: no interrupted --force is left
    elapsed = time.monotonic() - t0
    console.print(summary_table(results))
    _write_summary(root, source, results, elapsed, status="completed")
    console.print(f"pipeline completed in {fmt_seconds(elapsed)}; summary: {root / SUMMARY_FILE}")
    return results


def _result(p: PlannedStage, action: str, seconds: float | None, metrics: dict) -> StageResult:
    s = p.stage
    return StageResult(s.name, s.kind.name, action, s.key, str(s.out), seconds, metrics,
                       main_metrics_of(s.kind, metrics))


def _write_summary(root: Path, source: str, results: list[StageResult], elapsed: float,
                   status: str) -> None:
    summary = {"pipeline": source, "root": str(root), "status": status, "finished_at": utc_now(),
               "elapsed_s": elapsed,
               "stages": [{"name": r.name, "kind": r.kind, "action": r.action, "key": r.key,
                           "out": r.out, "seconds": r.seconds, "metrics": r.metrics}
                          for r in results]}
    atomic_write_bytes(root / SUMMARY_FILE,
                       (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode("utf-8"))
