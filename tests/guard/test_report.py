"""report.json contents, plots, and the fallback when matplotlib is missing."""
import json
import sys

import pytest

from alignkit.guard.report import build_report, write_report

SCORES = [0.9, 0.8, 0.7, 0.7, 0.4, 0.2]
LABELS = [1, 1, 0, 1, 0, 0]
SLICES = ["a", "a", "b", "b", "a", "b"]


def test_report_holds_rates_curves_and_slices():
    """t = 0.75: FPR 0/3, FNR 1/3 (see test_metrics); AUROC 17/18, AP 11/12, base rate 3/6.
    Slice a = rows 0, 1, 4 (unsafe .9, .8; benign .4): FNR 0/2, FPR 0/1.
    Slice b = rows 2, 3, 5 (benign .7, unsafe .7, benign .2): FNR 1/1, FPR 0/2."""
    r = build_report(SCORES, LABELS, 0.75, calibration={"target_fpr": 0.05}, slices=SLICES,
                     slice_field="part")
    assert (r["fpr"]["k"], r["fpr"]["n"], r["fnr"]["k"], r["fnr"]["n"]) == (0, 3, 1, 3)
    assert r["auroc"] == pytest.approx(17 / 18) and r["auprc"] == pytest.approx(11 / 12)
    assert r["base_rate"] == 0.5 and r["threshold"] == 0.75 and r["target_fpr"] == 0.05
    assert r["roc"]["fpr"][0] == 0 and r["roc"]["threshold"][0] is None
    assert len(r["pr"]["recall"]) == len(r["pr"]["precision"]) == 6
    a, b = r["slices"]["part"]["a"], r["slices"]["part"]["b"]
    assert (a["fnr"]["k"], a["fnr"]["n"], a["fpr"]["k"], a["fpr"]["n"]) == (0, 2, 0, 1)
    assert (b["fnr"]["k"], b["fnr"]["n"], b["fpr"]["k"], b["fpr"]["n"]) == (1, 1, 0, 2)
    json.dumps(r, allow_nan=False)  # strict JSON: no NaN anywhere


def test_nothing_flagged_gives_null_precision_not_nan():
    r = build_report(SCORES, LABELS, 0.95)
    assert r["precision"]["value"] is None and r["precision"]["n"] == 0
    assert r["fnr"]["value"] == 1.0


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    r = write_report(tmp_path, build_report(SCORES, LABELS, 0.75), SCORES, LABELS)
    assert r["plots"]["written"] == ["roc.png", "pr.png", "scores.png"]
    for name in r["plots"]["written"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_still_writes_json(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    r = write_report(tmp_path, build_report(SCORES, LABELS, 0.75), SCORES, LABELS)
    assert r["plots"]["written"] == [] and "matplotlib is not installed" in r["plots"]["skipped"]
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["plots"] == r["plots"] and on_disk["auroc"] == pytest.approx(17 / 18)
    assert not list(tmp_path.glob("*.png"))
