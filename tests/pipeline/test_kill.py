"""SIGKILL in the middle of a stage: the same command again resumes it and reuses the rest."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from alignkit.contract.manifest import read_manifest
from pipeline_fakes import calls

HERE = Path(__file__).parent
# The command a user types, with the fake kinds registered first (they live in the tests).
SCRIPT = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import pipeline_fakes; "
          "pipeline_fakes.register(); from alignkit.cli import main; "
          "sys.argv = ['alignkit', 'pipeline'] + sys.argv[1:]; main()")


def _alignkit_pipeline(*args, **popen):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"}, **popen)


def test_sigkill_then_rerun_resumes_the_killed_stage(tmp_path):
    root = tmp_path / "root"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"out": str(root), "stages": [
        {"name": "base", "stage": "fake", "config": {"value": 1}},
        {"name": "slow", "stage": "fake",
         "config": {"model": "${base.out}/final", "steps": 5, "block_fresh_at": 2}},
    ]}, sort_keys=False))

    proc = _alignkit_pipeline(path)
    deadline = time.monotonic() + 60
    while not (root / "slow" / "blocked").exists():  # slow has done 2 steps and now waits
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the fake stage never reached its blocking step"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # killed: nobody marked it failed; its checkpoint says 2 of 5 steps
    assert read_manifest(root / "slow").status == "running"
    assert (root / "slow" / "step.txt").read_text() == "2"

    again = _alignkit_pipeline(path)
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output
    assert "[1/2] base (fake): reuse" in output and "[2/2] slow (fake): resume" in output
    assert [c["resume"] for c in calls(root / "base")] == [False]  # base ran once only
    assert [c["resume"] for c in calls(root / "slow")] == [False, True]
    m = read_manifest(root / "slow")
    assert m.status == "completed" and m.metrics["steps"] == 5.0
    assert (root / "slow" / "final" / "value.txt").read_text() == "+1+0"
