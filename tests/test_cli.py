"""The command line: errors are clear and exit non-zero; import stays cheap."""
import json
import subprocess
import sys

from typer.testing import CliRunner

from alignkit.cli import app

runner = CliRunner()


def test_classify_refusals_writes_one_label_per_row_in_order(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"p": "Pick a lock?", "c": "I can't help with that."}) + "\n"
                   + json.dumps({"p": "Capital of France?", "c": "Paris is the capital."}) + "\n")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["classify-refusals", "--input", str(src), "--prompt-field", "p",
                              "--completion-field", "c", "--out", str(out)])
    assert res.exit_code == 0, res.output
    labels = [json.loads(l)["label"] for l in out.read_text().splitlines()]
    assert labels == ["full_refusal", "full_compliance"]


def test_unknown_override_key_exits_2_and_names_the_key(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alignkit.cli", "sft", "--set", "learning_rate=1",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "learning_rate" in proc.stderr


def test_import_is_cheap_and_pulls_no_torch():
    code = ("import time, sys; t = time.time(); import alignkit; dt = time.time() - t;"
            "print(dt, 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    dt, torch_loaded, tf_loaded = out.stdout.split()
    assert float(dt) < 1.0 and torch_loaded == "False" and tf_loaded == "False"
