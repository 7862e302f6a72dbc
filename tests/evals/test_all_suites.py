"""Every built-in suite end to end on the tiny model through `alignkit eval --suite all`, with a
reference, a base, a reward-model judge and an XSTest-format prompt file: one eval.json holding
every suite's metrics, each sample tagged with its suite. (Timing is printed, not asserted.)"""
import json
import time
from pathlib import Path

from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.evals.suite import available_suites, read_eval

FIXTURE = Path(__file__).parent / "fixtures" / "xstest_style_prompts.csv"


def test_every_suite_runs_on_the_tiny_model(tmp_path):
    t0 = time.time()
    res = CliRunner().invoke(app, [
        "eval", "--model", "builtin:world-tiny", "--suite", "all", "--limit", "1",
        "--reference", "builtin:world-tiny", "--base", "builtin:world-tiny",
        "--prompts", str(FIXTURE), "--set", "max_new_tokens=4", "--out", str(tmp_path)])
    print(f"all suites, limit 1: {time.time() - t0:.1f} s")
    assert res.exit_code == 0, res.output
    report = read_eval(tmp_path)
    assert report["suites"] == available_suites()
    for suite in available_suites():
        assert any(k.startswith(f"{suite}/") for k in report["metrics"]), suite
    # the same model as its own reference and base: no drift, no tax
    assert report["metrics"]["drift/kl"]["value"] == 0.0
    assert report["metrics"]["tax/exact_match_delta"]["value"] == 0.0
    suites_in_samples = {json.loads(l)["suite"] for l in (tmp_path / "samples.jsonl").open()}
    assert suites_in_samples >= {"world_tasks", "safety", "over_refusal", "honesty", "sycophancy"}
