"""Reading a run directory's numbers: eval.json here and one level down, manifest metrics."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alignkit.errors import DataError
from alignkit.gates.metrics import EVAL_SCHEMA, load_run_metrics
from alignkit.gates.spec import GateRule
from alignkit.gates.verdict import evaluate_rule



def eval_entry(value, lo=None, hi=None, n=100):
    return {"value": value, "lo": lo, "hi": hi, "n": n, "slices": {}}


def test_schema_constant_matches_the_eval_framework():
    from alignkit.evals.suite import EVAL_SCHEMA as SUITE_SCHEMA

    assert EVAL_SCHEMA == SUITE_SCHEMA


def test_reads_entries_written_by_the_suite_framework(tmp_path, write_eval):
    """Parity with alignkit.evals.suite.rate_metric: 3 of 4 true -> 0.75, Wilson [0.3006, 0.9544]."""
    from alignkit.evals.suite import rate_metric

    entry = rate_metric([{"ok": True}, {"ok": True}, {"ok": True}, {"ok": False}], "ok")
    write_eval(tmp_path, {"s/ok": entry})
    m = load_run_metrics(tmp_path).metrics["s/ok"]
    assert m.value == 0.75 and m.n == 4
    assert m.lo == pytest.approx(0.3006, abs=1e-3) and m.hi == pytest.approx(0.9544, abs=1e-3)


def test_merges_top_level_and_one_level_down(tmp_path, write_eval):
    write_eval(tmp_path, {"safety/attack_success": eval_entry(0.05, 0.02, 0.12)})
    write_eval(tmp_path / "eval", {"helpfulness/exact_match": eval_entry(0.49, 0.4, 0.58),
                                   # the same number twice is not a conflict
                                   "safety/attack_success": eval_entry(0.05, 0.02, 0.12)})
    write_eval(tmp_path / "a" / "b", {"deep/ignored": eval_entry(1.0)})  # two levels: not read
    run = load_run_metrics(tmp_path)
    assert sorted(run.metrics) == ["helpfulness/exact_match", "safety/attack_success"]
    assert run.metrics["helpfulness/exact_match"].source == str(tmp_path / "eval" / "eval.json")
    assert run.eval_files == [tmp_path / "eval.json", tmp_path / "eval" / "eval.json"]
    assert run.manifest is None


def test_conflicting_eval_files_name_both(tmp_path, write_eval):
    write_eval(tmp_path, {"safety/attack_success": eval_entry(0.05, 0.02, 0.12)})
    write_eval(tmp_path / "eval", {"safety/attack_success": eval_entry(0.07, 0.03, 0.15)})
    with pytest.raises(DataError) as e:
        load_run_metrics(tmp_path)
    msg = str(e.value)
    assert "defined twice with different values" in msg
    assert str(tmp_path / "eval.json") in msg and str(tmp_path / "eval" / "eval.json") in msg


def test_manifest_metrics_join_and_must_agree_with_eval(tmp_path, write_eval, write_run):
    write_run(tmp_path, metrics={"loss": 1.25, "s/acc": 0.5})
    write_eval(tmp_path, {"s/acc": eval_entry(0.5, 0.4, 0.6)})
    run = load_run_metrics(tmp_path)
    assert run.metrics["loss"].value == 1.25 and not run.metrics["loss"].has_interval
    # Same value in both: the eval.json entry (with its interval) is kept.
    assert (run.metrics["s/acc"].lo, run.metrics["s/acc"].hi) == (0.4, 0.6)
    assert run.manifest.stage == "sft"

    write_run(tmp_path, metrics={"s/acc": 0.55})
    with pytest.raises(DataError, match="defined twice") as e:
        load_run_metrics(tmp_path)
    assert "manifest.json" in str(e.value) and "eval.json" in str(e.value)


def test_pre_v1_eval_file_is_ignored_and_the_reason_reaches_the_rule(tmp_path, write_run):
    """An eval.json without `schema` (as the reward stage wrote before v1) is skipped; a rule on
    it fails as missing."""
    write_run(tmp_path)
    (tmp_path / "eval.json").write_text(json.dumps({"accuracy": {"value": 0.8}}))
    run = load_run_metrics(tmp_path)
    assert run.metrics == {} and run.ignored[0][0] == tmp_path / "eval.json"
    res = evaluate_rule(0, GateRule(metric="reward/accuracy", min=0.7), run)
    assert res.verdict == "fail" and "ignored" in res.reason and "schema" in res.reason


@pytest.mark.parametrize("report, field", [
    ({"schema": "alignkit.eval/v0", "metrics": {}}, "schema"),
    ({"schema": EVAL_SCHEMA, "metrics": []}, "metrics"),
    ({"schema": EVAL_SCHEMA, "metrics": {"s/m": {"lo": 0.1}}}, "metrics.s/m"),
    ({"schema": EVAL_SCHEMA, "metrics": {"s/m": {"value": "0.5"}}}, "metrics.s/m.value"),
    ({"schema": EVAL_SCHEMA, "metrics": {"s/m": {"value": 0.5, "hi": True}}}, "metrics.s/m.hi"),
    ({"schema": EVAL_SCHEMA, "metrics": {"s/m": {"value": 0.5, "n": 2.5}}}, "metrics.s/m.n"),
])
def test_malformed_eval_json_names_file_and_field(tmp_path, report, field):
    (tmp_path / "eval.json").write_text(json.dumps(report))
    with pytest.raises(DataError) as e:
        load_run_metrics(tmp_path)
    assert e.value.file == str(tmp_path / "eval.json") and e.value.field == field


def test_invalid_json_names_the_line(tmp_path):
    (tmp_path / "eval.json").write_text('{\n"schema": "alignkit.eval/v1",\n oops}')
    with pytest.raises(DataError) as e:
        load_run_metrics(tmp_path)
    assert e.value.line == 3


def test_not_a_run_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_run_metrics(tmp_path / "nope")
    with pytest.raises(DataError, match="is this a run directory"):
        load_run_metrics(tmp_path)


def test_importing_gates_does_not_import_torch():
    code = ("import sys, alignkit.gates, alignkit.gates.command, alignkit.gates.card;"
            "bad = [m for m in ('torch', 'transformers', 'alignkit.train', 'alignkit.models',"
            " 'alignkit.evals') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
