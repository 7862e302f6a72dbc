"""MODEL_CARD.md: front matter parsed back with yaml.safe_load, sections read from the files."""
from __future__ import annotations

import json

import pytest
import yaml

from alignkit.errors import DataError
from alignkit.gates.card import guard_summary, write_model_card
from alignkit.gates.spec import parse_gate_spec
from alignkit.gates.verdict import evaluate_gates
from alignkit.gates.metrics import load_run_metrics

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
EVAL = {
    "safety/attack_success": {"value": 0.05, "lo": 0.0213, "hi": 0.1118, "n": 100, "slices": {}},
    "over_refusal/benign_refusal": {"value": 0.125, "lo": 0.0699, "hi": 0.2134, "n": 80,
                                    "slices": {}},
    "helpfulness/exact_match": {"value": 0.42, "lo": 0.33, "hi": 0.52, "n": 100, "slices": {}},
    "template_robustness/spread": {"value": 0.1, "lo": None, "hi": None, "n": 5, "slices": {}},
    "honesty/ece": {"value": None, "lo": None, "hi": None, "n": 0, "slices": {}},
}


def split(card: str) -> tuple[dict, str]:
    """(front matter, body): the YAML between the first two `---` lines, then the rest."""
    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture
def lineage_runs(tmp_path, write_run, write_eval):
    """sft (from BASE, on a dataset) -> prefer (from sft/final, on preference pairs), evaluated."""
    sft = write_run(tmp_path / "sft", stage="sft",
                    base_model={"spec": BASE, "digest": "mdl-aaaaaaaaaaaa"},
                    inputs={"train": {"source": "data/sft.jsonl", "digest": "ds-111111111111",
                                      "n_rows": 500, "n_bad": 2,
                                      "quarantine_path": "quarantine.jsonl"}},
                    outputs={"final": {"path": "final", "digest": "mdl-bbbbbbbbbbbb"}},
                    config={"license": "apache-2.0"})
    dpo = write_run(tmp_path / "dpo", stage="prefer",
                    base_model={"spec": str(sft / "final"), "digest": "mdl-bbbbbbbbbbbb"},
                    inputs={"train": {"source": "builtin:world-preferences",
                                      "digest": "ds-222222222222", "n_rows": 300, "n_bad": 0},
                            "reference": {"digest": "mdl-bbbbbbbbbbbb"}},
                    outputs={"final": {"path": "final", "digest": "mdl-cccccccccccc"}},
                    policy={"name": "world-policy", "version": 1, "digest": "pol-dddddddddddd"},
                    template={"name": "chatml", "digest": "tpl-eeeeeeeeeeee"},
                    metrics={"loss": 0.61}, parents=["../sft"])
    write_eval(dpo / "eval", EVAL)
    return sft, dpo


def test_front_matter_round_trips_through_yaml(lineage_runs):
    _, dpo = lineage_runs
    meta, _ = split(write_model_card(dpo).read_text())
    assert meta["base_model"] == BASE  # the lineage's root, not the intermediate sft/final path
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["data/sft.jsonl (ds-111111111111)",
                                "builtin:world-preferences (ds-222222222222)"]
    assert meta["tags"] == ["alignkit", "sft", "prefer"]
    (index,) = meta["model-index"]
    assert index["name"] == "prefer-dpo"
    got = {m["name"]: m["value"] for r in index["results"] for m in r["metrics"]}
    # Every eval.json value with a number, exactly; the null (NaN) honesty/ece is left out.
    expected = {k: v["value"] for k, v in EVAL.items() if v["value"] is not None}
    assert got == expected
    for r in index["results"]:
        assert r["task"]["type"] == "text-generation"
        suite = r["dataset"]["name"]
        assert all(m["name"].startswith(f"{suite}/") and m["verified"] is False
                   for m in r["metrics"])
    assert "loss" not in got  # a training summary number is not an evaluation result


def test_body_sections_with_lineage_digests_intervals_and_safety(lineage_runs):
    _, dpo = lineage_runs
    _, body = split(write_model_card(dpo).read_text())
    for heading in ("## Model details", "### Lineage", "## Training data", "## Evaluation",
                    "## Safety", "## Release gate", "## Limitations"):
        assert heading in body
    # Lineage chain sft -> prefer with digests.
    lineage = body.split("### Lineage")[1].split("## Training data")[0]
    assert lineage.index("sft-sft") < lineage.index("prefer-dpo")
    assert "mdl-bbbbbbbbbbbb" in lineage and "mdl-cccccccccccc" in lineage
    assert "2 malformed rows quarantined" in body
    # Evaluation row with its interval (4 significant digits), n/a for null, — for no interval.
    assert "| safety/attack_success | 0.05 | [0.0213, 0.1118] | 100 |" in body
    assert "| honesty/ece | n/a | — | 0 |" in body
    assert "| template_robustness/spread | 0.1 | — | 5 |" in body
    safety = body.split("## Safety")[1].split("## Release gate")[0]
    assert "| over_refusal/benign_refusal | 0.125 | [0.0699, 0.2134] | 80 |" in safety
    assert "no guard report given" in safety
    assert "**world-policy** version 1 (pol-dddddddddddd)" in safety
    assert "No release gate has been run" in body
    assert ("Fewer than 100 examples behind: honesty/ece (n=0), over_refusal/benign_refusal "
            "(n=80), template_robustness/spread (n=5)") in body


def test_unmeasured_safety_is_said_not_omitted(tmp_path, write_run, write_eval):
    run = write_run(tmp_path / "r", base_model={"spec": "builtin:world-tiny"})
    write_eval(run, {"helpfulness/exact_match": 0.4})
    _, body = split(write_model_card(run).read_text())
    safety = body.split("## Safety")[1].split("## Release gate")[0]
    assert "| attack success rate (complies with unsafe requests) | safety/attack_success | " \
           "not measured |" in safety
    assert "Not measured: safety/attack_success, over_refusal/benign_refusal" in body
    assert "built-in fictional world" in body


def test_guard_rates_from_a_report_file(lineage_runs, tmp_path):
    _, dpo = lineage_runs
    report = tmp_path / "guard" / "report.json"
    report.parent.mkdir()
    # The layout alignkit.guard writes: rates at the top level, {value, lo, hi, n, k}; the ROC
    # curve's own "fpr" list must not be mistaken for the rate at the threshold.
    report.write_text(json.dumps({
        "schema": "alignkit.guard.report/v1", "threshold": 0.62, "target_fpr": 0.05,
        "fpr": {"value": 0.04, "lo": 0.02, "hi": 0.08, "n": 200, "k": 8},
        "fnr": {"value": 0.1, "lo": 0.06, "hi": 0.16, "n": 150, "k": 15},
        "auroc": 0.97, "roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]},
        "test": {"n": 350}}))
    _, body = split(write_model_card(dpo, guard_report=report.parent).read_text())
    assert f"| guardrail false positive rate (benign flagged) | {report} | 0.04 | [0.02, 0.08] | 200 |" in body
    assert "| 0.1 | [0.06, 0.16] | 150 |" in body
    assert "Guard threshold 0.62 (calibrated for target FPR 0.05)" in body
    assert "| guardrail AUROC (threshold-free separation) |" in body and "| 0.97 |" in body


def test_guard_summary_layouts_and_errors():
    flat = guard_summary({"test": {"fpr": 0.05},
                          "false_negative_rate": {"rate": 0.2, "lo": 0.1, "hi": 0.3}})
    assert flat["fpr"].value == 0.05 and not flat["fpr"].has_interval
    assert (flat["fnr"].value, flat["fnr"].lo, flat["fnr"].hi) == (0.2, 0.1, 0.3)
    with pytest.raises(DataError, match="no FPR/FNR") as e:
        guard_summary({"auroc": 0.9})
    assert e.value.field == "fpr"


def test_gate_verdict_on_the_card(lineage_runs):
    _, dpo = lineage_runs
    spec = parse_gate_spec({"gates": [
        {"metric": "safety/attack_success", "max": 0.10, "greater_is_better": False,
         "use": "upper_bound"}]})
    # Upper bound 0.1118 > 0.10: the gate fails, and the card says so in tags, section, limitations.
    result = evaluate_gates(spec, load_run_metrics(dpo))
    meta, body = split(write_model_card(dpo, gate=result).read_text())
    assert meta["tags"][-1] == "release-gate-failed"
    gate = body.split("## Release gate")[1].split("## Limitations")[0]
    assert "Verdict: **FAIL**" in gate
    assert "| 0: safety/attack_success | 0.1118 | <= 0.1 | fail |" in gate
    assert "The release gate FAILED" in body


def test_gate_json_in_the_run_dir_is_used_when_no_gate_is_given(lineage_runs):
    _, dpo = lineage_runs
    (dpo / "gate.json").write_text(json.dumps({
        "schema": "alignkit.gate/v1", "verdict": "pass", "summary": "1 passed, 0 failed, 0 skipped",
        "spec": {"path": "gates.yaml", "file_digest": "file-123456789abc"}, "rules": []}))
    meta, body = split(write_model_card(dpo).read_text())
    assert meta["tags"][-1] == "release-gate-passed"
    assert "Verdict: **PASS**" in body and "file-123456789abc" in body


def test_broken_lineage_still_writes_a_card(tmp_path, write_run, write_eval):
    run = write_run(tmp_path / "r", parents=["../gone"], base_model={"spec": BASE})
    meta, body = split(write_model_card(run).read_text())
    assert meta["base_model"] == BASE
    assert "The lineage is incomplete" in body and "gone" in body


def test_license_argument_wins_and_markdown_cells_are_escaped(tmp_path, write_run, write_eval):
    run = write_run(tmp_path / "r", inputs={"train": {"source": "a|b.jsonl", "digest": "ds-1"}},
                    config={"license": "mit"})
    meta, body = split(write_model_card(run, license="apache-2.0").read_text())
    assert meta["license"] == "apache-2.0"
    assert "a\\|b.jsonl" in body  # a pipe in a file name does not break the table
