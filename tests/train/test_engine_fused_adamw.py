"""The engine's AdamW uses torch's fused kernel where it can; same trajectory as the loop."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.train.engine import Engine, StepLoss, fused_adamw_ok


def _loss(m, batch):
    x, y = batch
    return StepLoss(loss_sum=((m(x) - y) ** 2).sum(), n_units=len(x))


def _train(tmp_path, monkeypatch, fused: bool):
    import alignkit.train.engine as engine_mod

    if not fused:
        monkeypatch.setattr(engine_mod, "fused_adamw_ok", lambda groups: False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(5, 4, generator=g), torch.randn(5, 1, generator=g)) for _ in range(6)]
    cfg = TrainConfig(max_steps=6, progress=False, max_grad_norm=0.5,
                      optim=OptimConfig(lr=0.05, weight_decay=0.1, warmup_steps=2))
    e = Engine(model=model, config=cfg, out_dir=tmp_path / ("fused" if fused else "loop"),
               epoch_batches=lambda epoch: data, loss_fn=_loss)
    groups = e.optimizer.optimizer.param_groups if hasattr(e.optimizer, "optimizer") \
        else e.optimizer.param_groups
    result = e.train()
    return result, e.unwrapped_model().state_dict(), groups


def test_engine_uses_fused_adamw_on_cpu_and_matches_the_loop(tmp_path, monkeypatch):
    fused, w_fused, groups_fused = _train(tmp_path, monkeypatch, fused=True)
    assert all(g["fused"] for g in groups_fused)
    loop, w_loop, groups_loop = _train(tmp_path, monkeypatch, fused=False)
    assert not any(g["fused"] for g in groups_loop)
    for k in w_loop:
        torch.testing.assert_close(w_fused[k], w_loop[k], rtol=1e-5, atol=1e-6)
    assert fused.history[-1]["loss"] != fused.history[0]["loss"]  # it really trained
    assert [h["loss"] for h in fused.history] == pytest.approx([h["loss"] for h in loop.history],
                                                               rel=1e-5)


def test_fused_adamw_ok():
    assert fused_adamw_ok([{"params": [nn.Parameter(torch.zeros(3))]}])
    assert not fused_adamw_ok([])  # nothing to optimise: let torch decide (and complain)
    assert not fused_adamw_ok([{"params": [torch.zeros(3, dtype=torch.long)]}])
    assert not fused_adamw_ok([{"params": [torch.zeros(3, device="meta")]}])
