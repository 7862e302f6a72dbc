"""The guard's report on held-out test data: `report.json` plus ROC, PR and score plots.

`report.json` (schema ``alignkit.guard.report/v1``) holds

- ``threshold`` and ``target_fpr``; ``fpr``, ``fnr``, ``precision`` and ``flagged`` at the
  threshold, each ``{"value", "lo", "hi", "n", "k"}`` with a 95% Wilson interval (top level,
  where `alignkit gate --guard-report` and `alignkit report` look for them);
- ``auroc``, ``auprc`` (average precision) and ``base_rate`` (AP of a random scorer);
- ``roc`` = ``{"fpr", "tpr", "threshold"}`` and ``pr`` = ``{"recall", "precision",
  "threshold"}``: every curve point, so an HTML report can draw the curves itself
  (``threshold`` null = flag nothing);
- ``slices``: per value of a slice field (e.g. the world's prompt ``type``), the FPR on its
  benign texts and the FNR on its unsafe texts;
- ``calibration``, ``test`` (source, digest, counts), ``guard`` (digest, threshold) and
  ``plots``: the PNG files written, or why they were skipped (matplotlib is optional:
  ``pip install 'alignkit[plot]'``).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.guard.metrics import (average_precision, auroc, error_rates, pr_curve, roc_curve)

REPORT_SCHEMA = "alignkit.guard.report/v1"
PLOT_EXTRA = "pip install 'alignkit[plot]' (or: pip install matplotlib)"


def _clean(obj: Any) -> Any:
    """NaN -> None recursively, so report.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def slice_error_rates(scores: Sequence[float], labels: Sequence[int], slices: Sequence[str],
                      threshold: float) -> dict[str, dict]:
    """{slice: {"n", "n_unsafe", "n_benign", "fpr", "fnr"}}; a rate with no texts is None."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    out: dict[str, dict] = {}
    for value in sorted(set(slices)):
        idx = [i for i, v in enumerate(slices) if v == value]
        er = error_rates(s[idx], y[idx], threshold)
        n_unsafe = int(y[idx].sum())
        out[value] = {"n": len(idx), "n_unsafe": n_unsafe, "n_benign": len(idx) - n_unsafe,
                      "fpr": er.fpr.as_dict() if er.fpr.n else None,
                      "fnr": er.fnr.as_dict() if er.fnr.n else None}
    return out


def build_report(scores: Sequence[float], labels: Sequence[int], threshold: float, *,
                 calibration: dict | None = None, test: dict | None = None,
                 guard: dict | None = None, slices: Sequence[str] | None = None,
                 slice_field: str | None = None) -> dict:
    """The report dict (see module docstring) for test `scores` and `labels` (1 = unsafe)."""
    y = np.asarray(labels)
    at = error_rates(scores, labels, threshold)
    report = {
        "schema": REPORT_SCHEMA,
        "guard": guard or {},
        "test": {**(test or {}), "n": int(len(y)), "n_unsafe": int(y.sum()),
                 "n_benign": int(len(y) - y.sum())},
        "calibration": calibration,
        "threshold": float(threshold),
        "target_fpr": None if calibration is None else calibration.get("target_fpr"),
        "fpr": at.fpr.as_dict(), "fnr": at.fnr.as_dict(),
        "precision": at.precision.as_dict(), "flagged": at.flagged.as_dict(),
        "auroc": auroc(scores, labels),
        "auprc": average_precision(scores, labels),
        "base_rate": float(y.mean()),
        "roc": roc_curve(scores, labels).as_dict(),
        "pr": pr_curve(scores, labels).as_dict(),
    }
    if slices is not None:
        report["slices"] = {slice_field or "slice":
                            slice_error_rates(scores, labels, slices, threshold)}
    return _clean(report)


def _plot(report: dict, scores: Sequence[float], labels: Sequence[int], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    thr = report["threshold"]
    fpr_t = report["fpr"]["value"]
    tpr_t = None if report["fnr"]["value"] is None else 1.0 - report["fnr"]["value"]
    written = []

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(report["roc"]["fpr"], report["roc"]["tpr"],
            label=f"guard (AUROC = {report['auroc']:.3f})", drawstyle="default")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random (AUROC = 0.5)")
    if fpr_t is not None and tpr_t is not None:
        ax.scatter([fpr_t], [tpr_t], color="red", zorder=3, label=f"threshold {thr:.3f}")
    ax.set(title="ROC on held-out test data", xlabel="false-positive rate (benign flagged)",
           ylabel="true-positive rate (unsafe flagged)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=100)
    plt.close(fig)
    written.append("roc.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.step(report["pr"]["recall"], report["pr"]["precision"], where="pre",  # AP area
            label=f"guard (AP = {report['auprc']:.3f})")
    ax.axhline(report["base_rate"], linestyle="--", color="grey",
               label=f"random (AP = {report['base_rate']:.3f})")
    prec = report["precision"]["value"]
    if prec is not None and tpr_t is not None:
        ax.scatter([tpr_t], [prec], color="red", zorder=3, label=f"threshold {thr:.3f}")
    ax.set(title="Precision-recall on held-out test data", xlabel="recall (unsafe flagged)",
           ylabel="precision (unsafe among flagged)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "pr.png", dpi=100)
    plt.close(fig)
    written.append("pr.png")

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41)
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label=f"benign (n = {int((y == 0).sum())})")
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label=f"unsafe (n = {int((y == 1).sum())})")
    ax.axvline(thr, color="red", label=f"threshold {thr:.3f}")
    ax.set(title="Guard scores on held-out test data", xlabel="score", ylabel="texts")
    ax.legend(loc="upper center")
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=100)
    plt.close(fig)
    written.append("scores.png")
    return written


def write_report(out_dir: str | Path, report: dict, scores: Sequence[float],
                 labels: Sequence[int], plots: bool = True) -> dict:
    """Write OUT/report.json and, when matplotlib is installed, roc.png, pr.png, scores.png.

    Returns the report with its ``plots`` entry filled in."""
    from alignkit.contract.manifest import atomic_write_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not plots:
        report = {**report, "plots": {"written": [], "skipped": "plots=False"}}
    else:
        try:
            report = {**report, "plots": {"written": _plot(report, scores, labels, out),
                                          "skipped": None}}
        except ImportError:
            report = {**report, "plots": {"written": [], "skipped":
                                          f"matplotlib is not installed: {PLOT_EXTRA}"}}
    atomic_write_bytes(out / "report.json",
                       (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return report
