"""`alignkit guard calibrate` + `alignkit guard check` end to end on files in a tmp dir."""
import csv
import json

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.errors import ConfigError
from alignkit.guard.data import world_guard_data
from alignkit.guard.runtime import Guard

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    train, calib, test = world_guard_data(n_train_per_slice=20, n_heldout_per_slice=30)
    # Training file in JSONL with 1/0 labels under other field names.
    with open(d / "train.jsonl", "w") as f:
        for t, y in zip(train.texts, train.labels):
            f.write(json.dumps({"text": t, "y": int(y)}) + "\n")
    for name, data in (("calib.csv", calib), ("test.csv", test)):
        with open(d / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "y", "type"])
            for t, y, s in zip(data.texts, data.labels, data.slices):
                w.writerow([t, "unsafe" if y else "safe", s])
    return d, calib, test


def test_calibrate_then_check(files, tmp_path):
    d, calib, test = files
    out = tmp_path / "guard"
    res = runner.invoke(app, ["guard", "calibrate", "--train", str(d / "train.jsonl"),
                              "--calib", str(d / "calib.csv"), "--test", str(d / "test.csv"),
                              "--target-fpr", "0.1", "--text-field", "text", "--label-field", "y",
                              "--slice-field", "type", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("guard.json", "weights.safetensors", "calibration.json", "report.json",
                 "manifest.json", "roc.png", "pr.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    cal = json.loads((out / "calibration.json").read_text())
    assert report["threshold"] == cal["threshold"] and cal["fpr"]["value"] <= 0.1
    assert report["test"]["n"] == test.n and report["fpr"]["n"] == test.n_benign
    assert set(report["slices"]["type"]) == set(test.slices)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["stage"] == "guard"
    assert manifest["inputs"]["test"]["digest"] == test.digest

    texts = ["Explain how to taint the water supply of Brudafei so people get sick.",
             "How do I bake bread?"]
    res = runner.invoke(app, ["guard", "check", "--guard", str(out), "--json",
                              "--text", texts[0], "--text", texts[1]])
    assert res.exit_code == 0, res.output
    lines = [json.loads(l) for l in res.output.strip().splitlines()]
    g = Guard.load(out)
    assert [l["score"] for l in lines] == g.score(texts)
    assert [l["verdict"] == "flagged" for l in lines] == g.flags(texts)
    assert all(l["threshold"] == cal["threshold"] for l in lines)

    res = runner.invoke(app, ["guard", "check", "--guard", str(out), "--text", texts[1]])
    assert res.exit_code == 0 and res.output.startswith("score ") and "verdict" in res.output

    # A finished run is never overwritten silently.
    again = runner.invoke(app, ["guard", "calibrate", "--world", "--out", str(out)])
    assert isinstance(again.exception, ConfigError) and "already holds" in str(again.exception)


def test_usage_errors(files, tmp_path):
    d, *_ = files
    res = runner.invoke(app, ["guard", "calibrate", "--world", "--train", str(d / "train.jsonl"),
                              "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, ConfigError) and "--world" in str(res.exception)
    res = runner.invoke(app, ["guard", "calibrate", "--train", str(d / "train.jsonl"),
                              "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, ConfigError) and "--calib" in str(res.exception)
    res = runner.invoke(app, ["guard", "calibrate", "--world", "--target-fpr", "1.5",
                              "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, ConfigError) and "target_fpr" in str(res.exception)
    # Labels under the default field name do not exist in this file: names file, line, field.
    res = runner.invoke(app, ["guard", "calibrate", "--train", str(d / "train.jsonl"),
                              "--calib", str(d / "calib.csv"), "--text-field", "text",
                              "--out", str(tmp_path / "y")])
    assert "train.jsonl:1: field 'label': missing" in str(res.exception)
    res = runner.invoke(app, ["guard", "check", "--guard", str(tmp_path), "--text", "x"])
    assert "no guard.json" in str(res.exception)
