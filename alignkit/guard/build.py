"""Train a guard, calibrate its threshold, report on test data: one run directory.

    train texts -> classifier -> scores of benign calibration texts -> threshold
                                                 test texts -> report.json + plots

The run directory holds the guard itself (guard.json, weights.safetensors; load it with
`Guard.load(OUT)`), calibration.json (the threshold and what it means on the calibration
split), report.json and PNGs when test data is given, and manifest.json (config, input
digests, metrics), like every alignkit run.

    >>> import tempfile
    >>> from alignkit.guard.data import labelled_from_rows
    >>> rows = [{"prompt": p, "label": l} for p, l in
    ...         [("burn the barn", 1), ("bake bread", 0), ("burn the mill", 1), ("bake a pie", 0)]]
    >>> d = labelled_from_rows(rows)
    >>> res = build_guard(d, d, None, GuardConfig(target_fpr=0.0, features=FeatureSpec(dim=2**10)),
    ...                   tempfile.mkdtemp())
    >>> res.guard.flags(["burn the barn"])
    [True]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alignkit.errors import ConfigError, DataError
from alignkit.guard.calibrate import Calibration, calibrate
from alignkit.guard.classifier import TrainSpec, train_classifier
from alignkit.guard.data import LabelledTexts
from alignkit.guard.features import FeatureSpec
from alignkit.guard.runtime import Guard


class GuardConfig(BaseModel):
    """Everything that decides the guard; written into the run's manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_fpr: float = Field(0.05, ge=0, lt=1)  # FPR allowed on benign calibration texts
    method: Literal["empirical", "conformal"] = "empirical"  # see alignkit.guard.calibrate
    text_field: str = "prompt"  # field(s) scored, e.g. "prompt" or "prompt+completion"
    label_field: str = "label"  # unsafe/safe or 1/0
    features: FeatureSpec = FeatureSpec()  # hashed n-gram features
    train: TrainSpec = TrainSpec()  # logistic-regression fit
    plots: bool = True  # write PNGs next to report.json (needs matplotlib)


def guard_config(**options: Any) -> GuardConfig:
    """GuardConfig(**options), with a ConfigError naming the bad option instead of pydantic's."""
    try:
        return GuardConfig(**options)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"guard option {where!r}: {err['msg']} (got {err.get('input')!r})") \
            from None


@dataclass
class BuildResult:
    guard: Guard
    calibration: Calibration
    report: dict | None  # None without test data


def _check_split(data: LabelledTexts, name: str) -> None:
    if name == "calib" and data.n_benign == 0:
        raise DataError("the calibration split has no benign (safe) rows; the threshold is "
                        "calibrated on benign texts", file=data.source, field="label")
    if name == "test" and (data.n_benign == 0 or data.n_unsafe == 0):
        which = "benign (safe)" if data.n_benign == 0 else "unsafe"
        raise DataError(f"the test split has no {which} rows; FPR, FNR, ROC and PR need both",
                        file=data.source, field="label")


def ensure_new_run_dir(out: str | Path) -> None:
    """A finished (or failed) run is never overwritten silently: choose another directory."""
    from alignkit.contract.manifest import read_manifest

    out = Path(out)
    if (out / "manifest.json").exists():
        old = read_manifest(out)
        raise ConfigError(f"{out} already holds a {old.stage} run (status {old.status}); "
                          "choose another --out")


def build_guard(train: LabelledTexts, calib: LabelledTexts, test: LabelledTexts | None,
                config: GuardConfig, out_dir: str | Path) -> BuildResult:
    """Train, calibrate, save the guard into `out_dir` and, with `test`, write its report."""
    from alignkit.contract.manifest import atomic_write_bytes, start_manifest, update_manifest
    from alignkit.guard.report import build_report, write_report

    out = Path(out_dir)
    ensure_new_run_dir(out)
    _check_split(calib, "calib")
    if test is not None:
        _check_split(test, "test")
    inputs = {"train": train.manifest_entry(), "calib": calib.manifest_entry()}
    if test is not None:
        inputs["test"] = test.manifest_entry()
    start_manifest(out, "guard", config.model_dump(mode="json"), inputs=inputs)
    try:
        clf = train_classifier(train.texts, train.labels.tolist(), config.features, config.train)
        calib_scores = clf.score(calib.texts)
        cal = calibrate(calib_scores[calib.labels == 0], config.target_fpr, config.method)
        guard = Guard(clf, cal.threshold, train=config.train, calibration=cal.as_dict(),
                      text_field=config.text_field,
                      extra={"train_digest": train.digest, "calib_digest": calib.digest,
                             "fit": clf.fit})
        guard.save(out)
        # Recall on the calibration split's unsafe texts, for the record (not a test number).
        calib_unsafe = calib_scores[calib.labels == 1]
        calib_tpr = float((calib_unsafe >= cal.threshold).mean()) if calib_unsafe.size else None
        atomic_write_bytes(out / "calibration.json", (json.dumps(
            {**cal.as_dict(), "calib_tpr": calib_tpr, "calib_source": calib.source},
            indent=2, sort_keys=True) + "\n").encode("utf-8"))
        metrics: dict[str, float] = {"threshold": cal.threshold, "calib_fpr": cal.fpr.value}
        report = None
        if test is not None:
            scores = np.asarray(guard.score(test.texts))
            report = build_report(
                scores, test.labels, cal.threshold, calibration=cal.as_dict(),
                test=test.manifest_entry(),
                guard={"digest": guard.digest, "threshold": cal.threshold,
                       "target_fpr": config.target_fpr, "method": config.method},
                slices=test.slices, slice_field=test.slice_field)
            report = write_report(out, report, scores, test.labels, plots=config.plots)
            metrics.update({"test_fpr": report["fpr"]["value"], "test_fnr": report["fnr"]["value"],
                            "test_auroc": report["auroc"], "test_auprc": report["auprc"]})
        outputs = {"guard": {"path": "guard.json", "digest": guard.digest}}
        update_manifest(out, status="completed", outputs=outputs,
                        metrics={k: v for k, v in metrics.items() if v is not None})
    except BaseException as err:
        update_manifest(out, status="failed", notes=f"{type(err).__name__}: {err}")
        raise
    return BuildResult(guard=guard, calibration=cal, report=report)
