"""Experiment tracking (TensorBoard, MLflow file store) mirrors metrics.jsonl; metrics stay float64.

Offline: both trackers write under tmp_path. Each tracker's test is skipped when its package is
not installed (both are optional extras).
"""
from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from alignkit.errors import ConfigError
from alignkit.train.checkpoint import checkpoint_dir
from alignkit.train.config import TrainConfig, load_config
from alignkit.train.engine import Engine, StepLoss
from alignkit.train.tracking import scalar_metrics


def toy_data(n_batches: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, generator=gen), torch.randn(4, 1, generator=gen))
            for _ in range(n_batches)]


def mse_with_constants(model: nn.Module, batch) -> StepLoss:
    """MSE summed over 4 rows (4 units); metrics hold a Python-float constant and an int count."""
    x, y = batch
    return StepLoss(loss_sum=((model(x) - y) ** 2).sum(), n_units=4, n_tokens=4,
                    metrics={"beta": 0.05, "rows": 4})


def run(tmp_path, *, steps: int = 2, resume: bool = False, save_every: int = 0, **tracking):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    cfg = TrainConfig(max_steps=steps, grad_accum=2, progress=False, save_every=save_every,
                      tracking=tracking)
    engine = Engine(model=model, config=cfg, out_dir=tmp_path, epoch_batches=lambda e: toy_data(),
                    loss_fn=mse_with_constants, eval_fn=lambda m: {"loss": 0.25})
    engine.train(resume=resume)
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# float64 metrics


def test_python_float_metric_is_logged_in_float64(tmp_path):
    """beta = 0.05 per unit, 4 units per micro-batch, 2 micro-batches per step:
    weighted sum 0.05*4 + 0.05*4 = 0.4, units 8, logged 0.4 / 8 = 0.05 (scaling by powers of two
    is exact in float64). Through float32 it would be 0.05000000074505806."""
    records = run(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["beta"] == 0.05 for r in records)
    assert all(r["rows"] == 4.0 for r in records)  # (4*4 + 4*4) / 8
    assert records[-1]["val/loss"] == 0.25


def test_scalar_metrics_keeps_numbers_only():
    rec = {"step": 7, "loss": 1.5, "n": 3, "flag": True, "name": "x", "val/acc": 0.5}
    assert scalar_metrics(rec) == {"loss": 1.5, "n": 3.0, "val/acc": 0.5}


# ---------------------------------------------------------------------------------------------
# configuration


def test_tracking_config_loads_and_rejects_unknown_keys():
    cfg = load_config(TrainConfig, {"tracking": {"tensorboard": True}})
    assert cfg.tracking.tensorboard and not cfg.tracking.mlflow
    with pytest.raises(ConfigError, match=r"unknown key 'tracking.wandb'.*tensorboard, "):
        load_config(TrainConfig, {"tracking": {"wandb": True}})


def test_missing_package_fails_before_training(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "mlflow" else real(name, *a, **k))
    with pytest.raises(ConfigError, match=r"train.tracking.mlflow is true but the 'mlflow' "
                                          r"package is not installed"):
        run(tmp_path, mlflow=True)
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing trained


# ---------------------------------------------------------------------------------------------
# TensorBoard


def tensorboard_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected_series(records, cast=float) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for rec in records:
        for key, value in scalar_metrics(rec).items():
            series.setdefault(key, []).append((rec["step"], cast(value)))
    return series


def f32(value: float) -> float:
    """TensorBoard's event format stores a scalar as float32."""
    return float(np.float32(value))


def test_tensorboard_scalars_equal_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    records = run(tmp_path, tensorboard=True)
    got = tensorboard_scalars(tmp_path / "tensorboard")
    want = expected_series(records, cast=f32)
    assert set(got) == set(want) >= {"loss", "lr", "grad_norm", "beta", "val/loss", "epoch"}
    assert got == want
    assert got["beta"] == [(1, f32(0.05)), (2, f32(0.05))]


def test_tensorboard_resume_purges_steps_after_the_checkpoint(tmp_path):
    """4 steps with checkpoints at 2 and 4; deleting step 4 and resuming re-runs steps 3-4.
    metrics.jsonl drops its old lines 3-4; TensorBoard must hide its old events 3-4 too, so each
    step appears once and elapsed_s (which differs between sessions) matches the new file."""
    pytest.importorskip("tensorboard")
    first = run(tmp_path, steps=4, save_every=2, tensorboard=True)
    shutil.rmtree(checkpoint_dir(tmp_path, 4))
    second = run(tmp_path, steps=4, save_every=2, resume=True, tensorboard=True)
    assert [r["step"] for r in second] == [1, 2, 3, 4]
    assert second[2]["elapsed_s"] != first[2]["elapsed_s"]
    got = tensorboard_scalars(tmp_path / "tensorboard")
    assert got == expected_series(second, cast=f32)


# ---------------------------------------------------------------------------------------------
# MLflow (local file store)


def mlflow_client(tmp_path):
    import os

    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses file stores without it
    try:
        return MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    finally:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]


def mlflow_series(client, run_id, keys) -> dict[str, list[tuple[int, float]]]:
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def test_mlflow_file_store_equals_metrics_jsonl(tmp_path):
    pytest.importorskip("mlflow")
    records = run(tmp_path, mlflow=True, mlflow_experiment="tiny")
    run_id = json.loads((tmp_path / "mlflow_run.json").read_text())["run_id"]
    client = mlflow_client(tmp_path)
    info = client.get_run(run_id)
    assert info.info.status == "FINISHED" and info.info.run_name == tmp_path.name
    assert client.get_experiment(info.info.experiment_id).name == "tiny"
    want = expected_series(records)  # float64 all the way: exact equality
    assert set(info.data.metrics) == set(want)
    assert mlflow_series(client, run_id, want) == want
    assert want["beta"] == [(1, 0.05), (2, 0.05)]
    config = json.loads((tmp_path / "mlruns" / info.info.experiment_id / run_id / "artifacts"
                         / "config.json").read_text())
    assert config["max_steps"] == 2 and config["tracking"]["mlflow"] is True


def test_mlflow_resume_continues_the_same_run(tmp_path):
    """After resuming from step 2 the same MLflow run receives steps 3-4 again: MLflow cannot
    delete values, so steps 3 and 4 hold two values each, the resumed session's last."""
    pytest.importorskip("mlflow")
    run(tmp_path, steps=4, save_every=2, mlflow=True)
    run_id = json.loads((tmp_path / "mlflow_run.json").read_text())["run_id"]
    shutil.rmtree(checkpoint_dir(tmp_path, 4))
    second = run(tmp_path, steps=4, save_every=2, resume=True, mlflow=True)
    assert json.loads((tmp_path / "mlflow_run.json").read_text())["run_id"] == run_id
    client = mlflow_client(tmp_path)
    history = client.get_metric_history(run_id, "elapsed_s")
    assert sorted(m.step for m in history) == [1, 2, 3, 3, 4, 4]
    last = {}
    for m in sorted(history, key=lambda m: m.timestamp):
        last[m.step] = m.value
    assert last[4] == second[3]["elapsed_s"]
    assert client.get_run(run_id).info.status == "FINISHED"
