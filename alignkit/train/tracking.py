"""Optional experiment tracking: TensorBoard and MLflow receive the records of ``metrics.jsonl``.

``metrics.jsonl`` is the run's record (the report, the gates and exact resume read it). When
``TrainConfig.tracking`` enables a tracker, the engine hands it every record at the moment it
appends that record to ``metrics.jsonl`` (main process only), so the tracker shows the same
numbers under the same names and steps:

- every numeric key of the record except ``step`` becomes a scalar at ``global_step = step``
  (``loss``, ``lr``, ``grad_norm``, ``tokens_per_s``, the stage's own metrics, ``val/*``);
- TensorBoard (``torch.utils.tensorboard.SummaryWriter``, needs the ``tensorboard`` package)
  writes event files to ``OUT/tensorboard`` (or ``tracking.tensorboard_dir``). Its event format
  stores a scalar as float32, so a value reads back as ``float(numpy.float32(value))``;
- MLflow (``mlflow`` or ``mlflow-skinny``) logs to ``tracking.mlflow_uri``, by default a local
  file store in ``OUT/mlruns`` (browse it with ``mlflow ui --backend-store-uri OUT/mlruns``).
  Values are kept as float64. The run id is written to ``OUT/mlflow_run.json`` so that a resumed
  run logs into the same MLflow run. The resolved stage config is logged as the artifact
  ``config.json``. MLflow 3 refuses a file store unless ``MLFLOW_ALLOW_FILE_STORE`` is true;
  alignkit sets that variable only while it opens the store (the tracker is local by design),
  and a user who wants MLflow's newer features points ``mlflow_uri`` at a database or server.

Resume. ``metrics.jsonl`` drops the lines a killed session wrote after its last checkpoint.
TensorBoard does the same through ``purge_step``: events at steps after the checkpoint are hidden
when the log is read. MLflow cannot delete metric values: a step that was logged before the kill
and again after the resume appears twice in its history (same step, the later value last).

Neither package is imported unless its tracker is enabled; importing alignkit stays cheap.

    >>> scalar_metrics({"step": 3, "loss": 1.5, "epoch": 0.25, "note": "x", "done": True})
    {'loss': 1.5, 'epoch': 0.25}
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Protocol

from alignkit.errors import ConfigError
from alignkit.train.config import TrackingConfig

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DIR = "mlruns"
MLFLOW_RUN_FILE = "mlflow_run.json"

# MLflow accepts metric names of letters, digits, '_', '-', '.', ' ', ':' and '/'; anything else
# is replaced by '_' (alignkit's own metric names never need it).
_MLFLOW_BAD_CHARS = re.compile(r"[^\w\-. :/]")


def scalar_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics record, without ``step`` (it is the x axis).

    Booleans and strings are left out: they are not curves.
    """
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker(Protocol):
    """Something that mirrors metrics records; ``close`` is called once at the end."""

    def log(self, record: dict[str, Any]) -> None: ...

    def close(self, failed: bool = False) -> None: ...


def _require(module: str, flag: str, install: str) -> None:
    """Fail before any compute when an enabled tracker's package is missing."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"train.tracking.{flag} is true but the '{module}' package is not "
                          f"installed (pip install {install})")


def check_tracking(config: TrackingConfig) -> None:
    """Raise ConfigError when a tracker is enabled without its package."""
    if config.tensorboard:
        _require("tensorboard", "tensorboard", "tensorboard")
    if config.mlflow:
        _require("mlflow", "mlflow", "mlflow-skinny  # or mlflow")


class TensorBoardTracker:
    """Scalars to TensorBoard event files in ``log_dir``.

    ``purge_step`` is the first step this session will log: events at that step or later left
    by an earlier, killed session are hidden when the log is read (TensorBoard's own mechanism).
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # lazy: needs the tensorboard package

        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def log(self, record: dict[str, Any]) -> None:
        step = int(record["step"])
        for key, value in scalar_metrics(record).items():
            self._writer.add_scalar(key, value, global_step=step)
        self._writer.flush()  # a killed run keeps its curves up to the last record

    def close(self, failed: bool = False) -> None:
        self._writer.close()


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """Let MLflow 3 open a local file store, without changing the environment for good."""
    if not uri.startswith("file:") or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


class MlflowTracker:
    """Metrics to an MLflow run (file store by default), through ``MlflowClient``.

    Args:
        tracking_uri: where MLflow stores runs (``file:///…``, ``sqlite:///…``, ``http://…``).
        experiment: experiment name, created when missing.
        run_name: the MLflow run's name.
        run_file: JSON file keeping the run id; with ``resume=True`` an existing run id there
            (for the same URI) is continued instead of starting a new run.
        run_config: logged once as the artifact ``config.json`` of a new run.
    """

    def __init__(self, *, tracking_uri: str, experiment: str, run_name: str, run_file: Path,
                 resume: bool = False, run_config: dict[str, Any] | None = None):
        from mlflow.tracking import MlflowClient  # lazy: mlflow is optional and slow to import

        self.tracking_uri = tracking_uri
        with _file_store_allowed(tracking_uri):
            self._client = MlflowClient(tracking_uri=tracking_uri)
            self.run_id = self._continue_run(run_file) if resume else None
            if self.run_id is None:
                found = self._client.get_experiment_by_name(experiment)
                experiment_id = (found.experiment_id if found is not None
                                 else self._client.create_experiment(experiment))
                run = self._client.create_run(experiment_id, run_name=run_name)
                self.run_id = run.info.run_id
                run_file.write_text(json.dumps({"tracking_uri": tracking_uri,
                                                "run_id": self.run_id}) + "\n", encoding="utf-8")
                if run_config is not None:
                    self._client.log_dict(self.run_id, run_config, "config.json")

    def _continue_run(self, run_file: Path) -> str | None:
        if not run_file.is_file():
            return None
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            logger.warning("%s is not valid JSON; starting a new MLflow run", run_file)
            return None
        if saved.get("tracking_uri") != self.tracking_uri:
            return None
        run_id = saved.get("run_id")
        try:
            self._client.get_run(run_id)
        except Exception:  # noqa: BLE001 -- any lookup failure means: no run to continue
            logger.warning("MLflow run %s from %s not found; starting a new run", run_id, run_file)
            return None
        self._client.update_run(run_id, status="RUNNING")
        return run_id

    def log(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(record["step"])
        now_ms = int(time.time() * 1000)
        metrics = [Metric(_MLFLOW_BAD_CHARS.sub("_", key), value, now_ms, step)
                   for key, value in scalar_metrics(record).items()]
        if metrics:
            self._client.log_batch(self.run_id, metrics=metrics)

    def close(self, failed: bool = False) -> None:
        self._client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class Trackers:
    """Every enabled tracker behind one ``log``/``close``; empty when tracking is off."""

    def __init__(self, trackers: list[Tracker] | None = None):
        self.trackers = list(trackers or [])

    def log(self, record: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log(record)

    def close(self, failed: bool = False) -> None:
        for tracker in self.trackers:
            try:
                tracker.close(failed=failed)
            except Exception:  # noqa: BLE001 -- closing one must not hide the others (or the error)
                logger.exception("closing tracker %s failed", type(tracker).__name__)


def open_trackers(config: TrackingConfig, out_dir: str | Path, *, start_step: int = 0,
                  resume: bool = False, run_config: dict[str, Any] | None = None) -> Trackers:
    """The trackers ``config`` enables, for a run writing to ``out_dir``.

    ``start_step`` is the number of optimizer steps already done (0 for a fresh run): the next
    record has ``step > start_step``.
    """
    check_tracking(config)
    out = Path(out_dir)
    trackers: list[Tracker] = []
    if config.tensorboard:
        log_dir = Path(config.tensorboard_dir) if config.tensorboard_dir else out / TENSORBOARD_DIR
        trackers.append(TensorBoardTracker(log_dir, purge_step=start_step + 1))
    if config.mlflow:
        uri = config.mlflow_uri or (out / MLFLOW_DIR).resolve().as_uri()
        trackers.append(MlflowTracker(
            tracking_uri=uri, experiment=config.mlflow_experiment,
            run_name=config.run_name or out.resolve().name, run_file=out / MLFLOW_RUN_FILE,
            resume=resume and start_step > 0, run_config=run_config))
    return Trackers(trackers)


@contextlib.contextmanager
def tracking(config: TrackingConfig, out_dir: str | Path, *, enabled: bool = True,
             start_step: int = 0, resume: bool = False,
             run_config: dict[str, Any] | None = None) -> Iterator[Trackers]:
    """``open_trackers`` as a context: closes them at the end, marking MLflow FAILED on error.

    ``enabled=False`` (a non-main process) yields an empty :class:`Trackers`.
    """
    trackers = (open_trackers(config, out_dir, start_step=start_step, resume=resume,
                              run_config=run_config) if enabled else Trackers())
    try:
        yield trackers
    except BaseException:
        trackers.close(failed=True)
        raise
    trackers.close()

