"""The report's data model: what was read from one run directory, and numbers with intervals.

`collect` fills it from files; `sections` turns it into HTML. Plain dataclasses, no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


@dataclass
class Estimate:
    """A number with its 95% interval and sample size (any part may be missing)."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int | None = None


@dataclass
class EvalMetric:
    """One "suite/metric" entry of eval.json, with its per-slice estimates."""

    name: str
    estimate: Estimate
    slices: dict[str, dict[str, Estimate]] = field(default_factory=dict)  # field -> value -> est

    @property
    def suite(self) -> str:
        return self.name.split("/", 1)[0] if "/" in self.name else ""


@dataclass
class GateRule:
    name: str
    metric: str | None
    observed: str  # as the gate wrote it ("0.25", "+0.03 (0.5 vs base 0.47)") or formatted here
    interval: Estimate | None  # the run's metric with its interval, when the gate recorded it
    threshold: str  # "<= 0.1", "change >= -0.02", ...
    passed: bool | None  # None: skipped or unknown
    verdict: str  # "pass" | "fail" | "skip" | the file's own word | "unknown"
    reason: str


@dataclass
class GateReport:
    verdict: str | None  # "pass" | "fail" | the file's own word when it is neither
    passed: bool | None
    rules: list[GateRule]
    derived: bool = False  # verdict worked out from the rules because the file gave none
    summary: str = ""  # e.g. "2 passed, 0 failed, 1 skipped"


@dataclass
class GuardReport:
    fpr: Estimate | None
    fnr: Estimate | None
    auprc: float | None
    auroc: float | None
    threshold: float | None
    roc: list[tuple[float, float]]  # (fpr, tpr), in file order
    pr: list[tuple[float, float]]  # (recall, precision), in file order
    target_fpr: float | None = None
    precision: Estimate | None = None
    base_rate: float | None = None  # AUPRC of a random scorer (share of unsafe texts)
    slices: dict[str, dict[str, Estimate]] = field(default_factory=dict)  # value -> {"fpr"/"fnr": est}


@dataclass
class OveroptPoint:
    kl: float
    proxy_reward: float | None
    gold_reward: float | None
    method: str | None = None  # "bon" | "ppo" from the study's per-method file; None = one curve


@dataclass
class LineageStep:
    stage: str
    run_id: str
    run_dir: str
    status: str
    base_model: str | None  # digest
    inputs: dict[str, str]  # name -> digest
    outputs: dict[str, str]  # name -> digest


@dataclass
class FailureSet:
    """Failed samples of one suite: how many were judged, how many failed, the first few."""

    suite: str
    total: int = 0
    failed: int = 0
    undecided: int = 0  # samples with no pass/fail signal (see `is_failure`)
    shown: list[dict] = field(default_factory=list)
    slice_fields: list[str] = field(default_factory=list)


@dataclass
class RunData:
    """Everything the report shows about one run directory."""

    path: Path
    name: str
    manifest: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_model: str = ""
    metrics: list[EvalMetric] = field(default_factory=list)
    failures: dict[str, FailureSet] = field(default_factory=dict)
    gate: GateReport | None = None
    guard: GuardReport | None = None
    overopt: list[OveroptPoint] = field(default_factory=list)
    lineage: list[LineageStep] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # what -> file it was read from
    problems: list[str] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return str((self.manifest or {}).get("stage") or "?")

    @property
    def status(self) -> str:
        return str((self.manifest or {}).get("status") or "unknown")

    def metric(self, name: str) -> EvalMetric | None:
        return next((m for m in self.metrics if m.name == name), None)


# ----------------------------------------------------------------------------- numbers

def number(x: Any) -> float | None:
    """`x` as a finite float, or None (bools, strings, NaN and infinities are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def estimate(x: Any) -> Estimate | None:
    """A number, or a dict {value, lo, hi, n} (also `ci: [lo, hi]`), as an Estimate."""
    if number(x) is not None:
        return Estimate(number(x))
    if not isinstance(x, Mapping):
        return None
    lo, hi = x.get("lo"), x.get("hi")
    ci = x.get("ci") or x.get("interval")
    if lo is None and hi is None and isinstance(ci, Sequence) and len(ci) == 2:
        lo, hi = ci
    n = x.get("n")
    return Estimate(number(x.get("value")), number(lo), number(hi),
                    int(n) if number(n) is not None else None)
