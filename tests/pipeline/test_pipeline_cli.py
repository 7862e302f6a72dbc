"""`alignkit pipeline`: the example file plans cleanly; bad files exit 2 with a clear error."""
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.pipeline.run import run_pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline_world.yaml"


def test_example_world_pipeline_plans_the_demo_training_stages(tmp_path, quiet):
    result = run_pipeline(EXAMPLE, out=tmp_path / "world", dry_run=True, console=quiet)
    plan = {p.stage.name: p for p in result.plan}
    assert [(p.stage.name, p.stage.kind.name, p.action) for p in result.plan] == [
        ("base", "pretrain", "run"), ("sft", "sft", "run"), ("reward", "reward", "run"),
        ("dpo", "prefer", "run"), ("rl", "rl", "run"), ("eval_rl", "eval", "run")]
    assert list(plan["sft"].stage.upstream) == ["base"]
    assert list(plan["reward"].stage.upstream) == ["sft"] == list(plan["dpo"].stage.upstream)
    assert sorted(plan["eval_rl"].stage.upstream) == ["base", "rl", "sft"]
    assert plan["dpo"].stage.config.model == str((tmp_path / "world" / "sft" / "final").resolve())
    assert not (tmp_path / "world").exists()


def test_cli_dry_run_prints_the_plan(tmp_path):
    res = CliRunner().invoke(app, ["pipeline", str(EXAMPLE), "--out", str(tmp_path / "w"),
                                   "--dry-run"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for word in ("pipeline plan", "base", "pretrain", "dpo", "prefer", "no previous run",
                 "dry run: nothing was run"):
        assert word in res.output


def test_cli_bad_file_exits_2_naming_file_and_stage(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - {name: a, stage: nope}\n")
    proc = subprocess.run([sys.executable, "-m", "alignkit.cli", "pipeline", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{bad}:2: stages[0] 'a': unknown stage kind 'nope'" in proc.stderr.replace("\n", "")
