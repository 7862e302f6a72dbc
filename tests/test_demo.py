"""`alignkit demo --quick`: the whole loop's wiring on a small world (its numbers mean nothing;
the full-size numbers are measured by `make demo` and recorded in benchmarks/RESULTS.md)."""
import json
import re

from alignkit.demo import COLUMNS, demo_pipeline, run_demo


def test_demo_pipeline_evaluates_every_trained_policy():
    spec = demo_pipeline()
    evals = [s for s in spec["stages"] if s["stage"] == "eval"]
    assert [e["name"] for e in evals] == ["eval_base", "eval_sft", "eval_dpo", "eval_rl",
                                          "eval_cai"]
    assert all(e["config"]["reference"] == "${sft.out}/final" for e in evals)


def test_full_demo_stages_all_have_time_estimates_and_quick_ones_none():
    """Every full-size stage has an estimate (else the pipeline cannot say how long is left);
    the quick demo's stages have none (their times were never measured)."""
    from alignkit.pipeline.spec import load_pipeline

    full = demo_pipeline()
    assert all(s["estimate_s"] > 0 for s in full["stages"])
    load_pipeline(full)  # estimate_s is a valid stage key
    assert all("estimate_s" not in s for s in demo_pipeline(quick=True)["stages"])


def test_demo_pipeline_has_a_cai_round_from_the_taught_sft_model():
    stages = {s["name"]: s for s in demo_pipeline()["stages"]}
    assert stages["sft"]["config"]["cai_teaching_per_slice"] > 0
    data, tuned = stages["cai_data"], stages["cai"]
    assert data["stage"] == "cai_sl" and data["config"]["model"] == "${sft.out}/final"
    assert data["config"]["prompts"]["few_shot"] == 0  # the format SFT's teaching rows use
    assert tuned["stage"] == "sft" and tuned["config"]["model"] == "${sft.out}/final"
    assert tuned["config"]["data"] == "${cai_data.out}/sl_data.jsonl"
    assert tuned["config"]["train_on"] == "last"
    quick = {s["name"]: s for s in demo_pipeline(quick=True)["stages"]}
    assert quick["cai_data"]["config"]["max_red_team"] < data["config"]["max_red_team"]
    assert quick["cai"]["config"]["train"]["max_steps"] <= 2


def test_quick_demo_end_to_end(tmp_path, capsys):
    summary = run_demo(tmp_path / "demo", quick=True)
    out = tmp_path / "demo"
    assert set(summary["models"]) == {"base", "sft", "dpo", "rl", "cai"}
    table = capsys.readouterr().out.split("alignkit demo: built-in world")[-1]
    assert re.search(r"^\W*cai\s*│", table, re.M)  # the table has a cai row
    assert {"cai_data", "cai"} <= set(summary["runs"])
    for metrics in summary["models"].values():
        assert set(metrics) == {metric for _, metric, _ in COLUMNS}
        assert metrics["world_tasks/exact_match"]["n"] > 0
    assert summary["models"]["sft"]["drift/kl"]["value"] == 0.0  # the reference is SFT itself
    assert summary["gate"]["run"] == "rl"  # RL, named (not the last row, cai), against SFT
    gate = json.loads((out / "eval_rl" / "gate.json").read_text())
    assert summary["gate"]["verdict"] == gate["verdict"] in ("pass", "fail")
    html = (out / "report.html").read_text()
    assert "eval_rl" in html and "http://" not in html
    assert json.loads((out / "summary.json").read_text())["gate"] == summary["gate"]
    again = run_demo(out, quick=True)  # everything is reused: same numbers
    assert again["models"] == summary["models"]
