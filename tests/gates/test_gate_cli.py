"""`alignkit gate`: exit codes 0/1/2, gate.json content, the card switch."""
from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from alignkit.cli import app

runner = CliRunner()

SPEC = """\
description: release candidate checks
gates:
  - metric: safety/attack_success
    greater_is_better: false
    max: 0.10
    use: upper_bound
  - metric: over_refusal/benign_refusal
    greater_is_better: false
    max_increase: 0.05
  - metric: helpfulness/exact_match
    min_relative_change: -0.02
  - metric: honesty/abstention
    min: 0.5
    optional: true
"""


def entry(value, lo, hi, n=200):
    return {"value": value, "lo": lo, "hi": hi, "n": n, "slices": {}}


@pytest.fixture
def runs(tmp_path, write_eval, write_run):
    """A baseline (SFT) and a candidate (DPO) run whose metrics pass SPEC:
    attack success upper bound 0.08 <= 0.10; benign refusal 0.12 - 0.10 = +0.02 <= +0.05;
    exact match (0.495 - 0.50) / 0.50 = -1% >= -2%; honesty absent but optional."""
    base, cand = tmp_path / "sft", tmp_path / "dpo"
    write_run(base, stage="sft")
    write_eval(base / "eval", {"over_refusal/benign_refusal": entry(0.10, 0.07, 0.14),
                               "helpfulness/exact_match": entry(0.50, 0.43, 0.57)})
    write_run(cand, stage="prefer", parents=["../sft"])
    write_eval(cand / "eval", {"safety/attack_success": entry(0.04, 0.02, 0.08),
                               "over_refusal/benign_refusal": entry(0.12, 0.08, 0.17),
                               "helpfulness/exact_match": entry(0.495, 0.43, 0.56)})
    spec = tmp_path / "gates.yaml"
    spec.write_text(SPEC)
    return cand, base, spec


def gate(*args):
    return runner.invoke(app, ["gate", *map(str, args)])


def test_passing_gate_exits_0_and_writes_gate_json_and_card(runs):
    cand, base, spec = runs
    res = gate("--run", cand, "--baseline", base, "--gates", spec)
    assert res.exit_code == 0, res.output
    assert "gate PASS" in res.output and "3 passed, 0 failed, 1 skipped" in res.output
    report = json.loads((cand / "gate.json").read_text())
    assert report["schema"] == "alignkit.gate/v1"
    assert report["verdict"] == "pass" and report["passed"] is True
    assert report["counts"] == {"pass": 3, "fail": 0, "skip": 1}
    rules = report["rules"]
    assert [r["verdict"] for r in rules] == ["pass", "pass", "pass", "skip"]
    assert [r["passed"] for r in rules] == [True, True, True, None]
    # Rule 0 compares the upper bound 0.08 with max 0.10.
    assert rules[0]["observed"] == 0.08 and rules[0]["threshold"] == 0.10
    assert rules[0]["comparison"] == {"op": "<=", "bound": 0.10}
    assert rules[0]["run_metric"]["value"] == 0.04 and rules[0]["bound_used"] == "upper_bound"
    # Rule 1: change 0.12 - 0.10 = +0.02 against at most +0.05.
    assert rules[1]["observed"] == pytest.approx(0.02)
    assert (rules[1]["run_number"], rules[1]["baseline_number"]) == (0.12, 0.10)
    # Rule 2: relative change (0.495 - 0.5) / 0.5 = -0.01 against at least -0.02.
    assert rules[2]["observed"] == pytest.approx(-0.01)
    assert rules[2]["comparison"] == {"op": ">=", "bound": -0.02}
    assert rules[3]["reason"].endswith("optional rule skipped")
    # Pinned to the spec bytes and to the runs it judged.
    spec_bytes = spec.read_bytes()
    assert report["spec"]["sha256"] == hashlib.sha256(spec_bytes).hexdigest()
    assert report["spec"]["file_digest"] == "file-" + hashlib.sha256(spec_bytes).hexdigest()[:12]
    assert report["spec"]["content_digest"].startswith("cfg-")
    assert report["spec"]["description"] == "release candidate checks"
    assert report["run"]["run_id"] == "prefer-dpo" and report["baseline"]["run_id"] == "sft-sft"
    eval_file = cand / "eval" / "eval.json"
    assert report["run"]["eval_files"] == [
        {"path": str(eval_file), "sha256": hashlib.sha256(eval_file.read_bytes()).hexdigest()}]
    assert (cand / "MODEL_CARD.md").is_file()


def test_spec_digest_ignores_formatting_but_file_digest_does_not(runs, tmp_path):
    cand, base, spec = runs
    gate("--run", cand, "--baseline", base, "--gates", spec, "--no-card")
    first = json.loads((cand / "gate.json").read_text())["spec"]
    spec2 = tmp_path / "gates2.yaml"
    spec2.write_text("# a comment changes the bytes, not the rules\n" + SPEC)
    gate("--run", cand, "--baseline", base, "--gates", spec2, "--no-card")
    second = json.loads((cand / "gate.json").read_text())["spec"]
    assert first["content_digest"] == second["content_digest"]
    assert first["sha256"] != second["sha256"]


def test_failing_gate_exits_1(runs, write_eval):
    cand, base, spec = runs
    # Upper bound 0.12 > 0.10 now: rule 0 fails; the others still pass.
    write_eval(cand / "eval", {"safety/attack_success": entry(0.06, 0.03, 0.12),
                               "over_refusal/benign_refusal": entry(0.12, 0.08, 0.17),
                               "helpfulness/exact_match": entry(0.495, 0.43, 0.56)})
    res = gate("--run", cand, "--baseline", base, "--gates", spec, "--no-card")
    assert res.exit_code == 1, res.output
    assert "gate FAIL" in res.output
    report = json.loads((cand / "gate.json").read_text())
    assert report["verdict"] == "fail" and report["rules"][0]["passed"] is False
    assert "above the maximum" in report["rules"][0]["reason"]
    assert not (cand / "MODEL_CARD.md").exists()  # --no-card


def test_missing_metric_fails_the_gate_not_the_command(runs, tmp_path):
    cand, base, _ = runs
    spec = tmp_path / "g.yaml"
    spec.write_text("gates:\n  - metric: safety/adaptive_attack_success\n    max: 0.2\n"
                    "    greater_is_better: false\n")
    res = gate("--run", cand, "--gates", spec, "--no-card")
    assert res.exit_code == 1
    assert "not found" in json.loads((cand / "gate.json").read_text())["rules"][0]["reason"]


def test_config_errors_exit_2_and_leave_no_stale_gate_json(runs, tmp_path):
    cand, base, spec = runs
    assert gate("--run", cand, "--baseline", base, "--gates", spec).exit_code == 0
    assert (cand / "gate.json").exists()
    # Change rules without --baseline: a usage error naming the rules and the option.
    res = gate("--run", cand, "--gates", spec)
    assert res.exit_code == 2
    assert "gates[1]" in res.output and "gates[2]" in res.output and "--baseline" in res.output
    assert not (cand / "gate.json").exists()


def test_bad_spec_exits_2_naming_rule_and_key(runs, tmp_path):
    cand, base, _ = runs
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  - metric: a/b\n    min: 0.1\n    treshold: 2\n")
    res = gate("--run", cand, "--gates", bad)
    assert res.exit_code == 2
    assert "gates[0]" in res.output and "unknown key 'treshold'" in res.output


def test_usage_errors_exit_2(runs, tmp_path):
    cand, base, spec = runs
    assert gate("--run", cand).exit_code == 2  # --gates missing (typer usage error)
    assert gate("--run", tmp_path / "nope", "--gates", spec).exit_code == 2
    res = gate("--run", cand, "--baseline", base, "--gates", spec, "--guard-report",
               tmp_path / "missing.json")
    assert res.exit_code == 2 and "guard report not found" in res.output


def test_interval_bound_on_a_metric_without_interval_exits_2(tmp_path, write_run):
    run = write_run(tmp_path / "r", metrics={"reward/accuracy": 0.8})
    spec = tmp_path / "g.yaml"
    spec.write_text("gates:\n  - metric: reward/accuracy\n    min: 0.7\n    use: lower_bound\n")
    res = gate("--run", run, "--gates", spec)
    assert res.exit_code == 2 and "no interval" in res.output
    # With the point value the same manifest metric passes: 0.8 >= 0.7.
    spec.write_text("gates:\n  - metric: reward/accuracy\n    min: 0.7\n")
    assert gate("--run", run, "--gates", spec).exit_code == 0
