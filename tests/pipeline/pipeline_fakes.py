"""Fake stage kinds for the pipeline tests: fast, deterministic, and observable.

`fake` follows the stage contract (begin_run -> steps with a resumable checkpoint ->
finish_run, fail_run on any exception) in milliseconds. Every call appends a line to
OUT/calls.jsonl with its `resume` flag, so a test can see what the pipeline asked for.
Imported by the tests and by the subprocess of the SIGKILL test (hence a plain module).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from alignkit.contract.digest import digest_file
from alignkit.pipeline.registry import register_stage_kind, unregister_stage_kind
from alignkit.train.stage import begin_run, fail_run, finish_run, parent_of

FAIL_NEXT: dict[str, int] = {}  # stage directory name -> failures still to inject
BLOCK_TIMEOUT_S = 60.0  # a blocked fresh run gives up after this (the test kills it long before)


class FakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = ""  # e.g. "${base.out}/final": the upstream output it builds on
    value: int = 0  # any setting; changes the key and the output
    steps: int = 3  # "training steps", each one checkpointed to OUT/step.txt
    block_fresh_at: int | None = None  # a fresh (resume=False) run blocks before this step


def calls(out: Path) -> list[dict]:
    path = Path(out) / "calls.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def fake_stage(config, out_dir, *, resume: bool = False) -> dict:
    cfg = config if isinstance(config, FakeConfig) else FakeConfig.model_validate(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "calls.jsonl", "a") as f:
        f.write(json.dumps({"resume": resume}) + "\n")
    begin_run(out, "fake", cfg.model_dump(mode="json"), resume=resume, environment={},
              parents=parent_of(cfg.model) if cfg.model else [])
    try:
        step_file = out / "step.txt"
        step = int(step_file.read_text()) if resume and step_file.exists() else 0
        while step < cfg.steps:
            if FAIL_NEXT.get(out.name, 0) > 0:
                FAIL_NEXT[out.name] -= 1
                raise RuntimeError(f"injected failure at step {step}")
            if cfg.block_fresh_at == step and not resume:
                (out / "blocked").touch()  # tells the test it is safe to kill now
                deadline = time.monotonic() + BLOCK_TIMEOUT_S
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                raise TimeoutError("blocked fake stage was not killed")
            step += 1
            step_file.write_text(str(step))
        upstream = (Path(cfg.model) / "value.txt").read_text() if cfg.model else ""
        final = out / "final"
        final.mkdir(exist_ok=True)
        (final / "value.txt").write_text(f"{upstream}+{cfg.value}")
        metrics = {"value": float(cfg.value), "steps": float(step)}
        finish_run(out, metrics=metrics, outputs={
            "final": {"path": "final", "digest": digest_file(final / "value.txt", "model")}})
        return metrics
    except BaseException as err:
        fail_run(out, err)
        raise


def incomplete_stage(config, out_dir, *, resume: bool = False) -> dict:
    """Breaks the contract: returns while its manifest still says running."""
    begin_run(out_dir, "incomplete", {}, resume=resume, environment={})
    return {}


def register() -> None:
    register_stage_kind("fake", FakeConfig, fake_stage, main_metrics=("value",), replace=True)
    register_stage_kind("incomplete", FakeConfig, incomplete_stage, replace=True)


def unregister() -> None:
    unregister_stage_kind("fake")
    unregister_stage_kind("incomplete")
