"""`alignkit demo --quick`: the whole loop's wiring on a small world (its numbers mean nothing;
the full-size numbers are measured by `make demo` and recorded in benchmarks/RESULTS.md)."""
import json

from alignkit.demo import COLUMNS, demo_pipeline, run_demo


def test_demo_pipeline_evaluates_every_trained_policy():
    spec = demo_pipeline()
    evals = [s for s in spec["stages"] if s["stage"] == "eval"]
    assert [e["name"] for e in evals] == ["eval_base", "eval_sft", "eval_dpo", "eval_rl"]
    assert all(e["config"]["reference"] == "${sft.out}/final" for e in evals)


def test_quick_demo_end_to_end(tmp_path):
    summary = run_demo(tmp_path / "demo", quick=True)
    out = tmp_path / "demo"
    assert set(summary["models"]) == {"base", "sft", "dpo", "rl"}
    for metrics in summary["models"].values():
        assert set(metrics) == {metric for _, metric, _ in COLUMNS}
        assert metrics["world_tasks/exact_match"]["n"] > 0
    assert summary["models"]["sft"]["drift/kl"]["value"] == 0.0  # the reference is SFT itself
    assert summary["gate"]["run"] == "rl"  # the last model is gated against SFT
    gate = json.loads((out / "eval_rl" / "gate.json").read_text())
    assert summary["gate"]["verdict"] == gate["verdict"] in ("pass", "fail")
    html = (out / "report.html").read_text()
    assert "eval_rl" in html and "http://" not in html
    assert json.loads((out / "summary.json").read_text())["gate"] == summary["gate"]
    again = run_demo(out, quick=True)  # everything is reused: same numbers
    assert again["models"] == summary["models"]
