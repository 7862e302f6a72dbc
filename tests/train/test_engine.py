"""Training engine (single process): loss normalisation under accumulation, data order,
clipping, schedule, metrics, eval, checkpoints, the NaN guard; plus config and progress bar."""
from __future__ import annotations

import copy
import io
import json
import logging
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from alignkit.errors import ConfigError, NonFiniteLossError
from alignkit.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from alignkit.train.config import OptimConfig, TrainConfig, apply_overrides, load_config
from alignkit.train.engine import Engine, StepLoss, default_param_groups, seed_everything
from alignkit.train.progress import TrainProgress, should_show
from alignkit.train.schedule import lr_at

V, D = 11, 5  # toy vocabulary and width


def toy_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(V, D), nn.LayerNorm(D), nn.Linear(D, V))


def token_loss(model: nn.Module, batch: dict) -> StepLoss:
    """Token-normalised cross-entropy: loss summed over masked tokens, units = their count."""
    logits = model(batch["ids"])  # (N, V)
    nll = F.cross_entropy(logits, batch["targets"], reduction="none")  # (N,)
    mask = batch["mask"]  # (N,) float
    correct = (logits.argmax(-1) == batch["targets"]).float()
    units = mask.sum()
    return StepLoss(loss_sum=(nll * mask).sum(), n_units=units, n_tokens=len(mask),
                    metrics={"acc": (correct * mask).sum() / units.clamp(min=1)})


def make_batch(n: int, n_masked_in: int, gen: torch.Generator, idx: int = 0) -> dict:
    """A per-token micro-batch of n tokens of which the first n_masked_in are trainable."""
    mask = torch.zeros(n)
    mask[:n_masked_in] = 1.0
    return {"ids": torch.randint(0, V, (n,), generator=gen),
            "targets": torch.randint(0, V, (n,), generator=gen), "mask": mask, "idx": idx}


def ragged_batches(count: int, seed: int = 0) -> list[dict]:
    """Micro-batches of different lengths and different trainable-token counts."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [(3, 1), (9, 7), (5, 2), (14, 12), (6, 6), (2, 1), (11, 3), (8, 8)]
    return [make_batch(*sizes[i % len(sizes)], gen, idx=i) for i in range(count)]


def concat(batches: list[dict]) -> dict:
    return {k: torch.cat([b[k] for b in batches]) for k in ("ids", "targets", "mask")}


def cfg(**kw) -> TrainConfig:
    kw.setdefault("progress", False)
    return TrainConfig(**kw)


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# loss normalisation under accumulation


def test_accumulated_gradient_equals_one_big_batch(tmp_path):
    """grad_accum=4 over micro-batches with 1, 7, 2 and 12 trainable tokens: the gradient left in
    .grad equals that of one batch of all 22 tokens, loss = sum / 22. The mean of per-micro-batch
    means (the common bug) differs by far more than the tolerance, so the test can fail."""
    mbs = ragged_batches(4)
    model = toy_model()
    ref_model = copy.deepcopy(model)
    engine = Engine(model=model, config=cfg(grad_accum=4), out_dir=tmp_path,
                    epoch_batches=lambda e: mbs, loss_fn=token_loss)
    totals = engine.compute_gradients(mbs)
    got = {n: p.grad.clone() for n, p in engine.unwrapped_model().named_parameters()}

    big = token_loss(ref_model, concat(mbs))
    (big.loss_sum / big.n_units).backward()
    for n, p in ref_model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-7)
    assert totals.units == 22.0
    assert totals.loss_sum / totals.units == pytest.approx(big.loss_sum.item() / 22, rel=1e-6)

    wrong = copy.deepcopy(ref_model)
    wrong.zero_grad()
    for b in mbs:  # mean of means, the thing the engine must NOT compute
        out = token_loss(wrong, b)
        (out.loss_sum / out.n_units / len(mbs)).backward()
    diff = max((p.grad - got[n]).abs().max().item() for n, p in wrong.named_parameters())
    assert diff > 1e-3


def test_step_totals_are_unit_weighted_by_hand(tmp_path):
    """One weight w=1. Micro-batch A: loss_sum = 3w over 1 unit, metric m=1.0;
    B: loss_sum = 3w over 3 units, m=0.5.
    loss = (3 + 3) / (1 + 3) = 1.5 (mean of means would be (3 + 1)/2 = 2);
    dL/dw = (3 + 3) / 4 = 1.5; metric = (1.0*1 + 0.5*3) / 4 = 0.625 (mean of means: 0.75);
    tokens = 2 + 5 = 7."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    batches = [{"c": 3.0, "n": 1, "m": 1.0, "t": 2}, {"c": 3.0, "n": 3, "m": 0.5, "t": 5}]

    def loss_fn(m, b):
        return StepLoss(loss_sum=b["c"] * m.weight.sum(), n_units=b["n"], n_tokens=b["t"],
                        metrics={"m": b["m"]})

    engine = Engine(model=model, config=cfg(grad_accum=2), out_dir=tmp_path,
                    epoch_batches=lambda e: batches, loss_fn=loss_fn)
    totals = engine.compute_gradients(batches)
    assert totals.loss_sum / totals.units == pytest.approx(1.5)
    assert model.weight.grad.item() == pytest.approx(1.5)
    assert totals.metrics == {"m": pytest.approx(0.625)}
    assert totals.tokens == 7


def test_training_with_accumulation_matches_big_batches(tmp_path):
    """3 steps of grad_accum=4 on ragged micro-batches == 3 steps of grad_accum=1 where each
    batch is the concatenation of the same 4 (same AdamW trajectory, clipping included)."""
    mbs = ragged_batches(12)
    big = [concat(mbs[i:i + 4]) for i in range(0, 12, 4)]
    a = Engine(model=toy_model(), config=cfg(grad_accum=4, max_grad_norm=0.5,
                                             optim=OptimConfig(lr=0.05, weight_decay=0.1)),
               out_dir=tmp_path / "a", epoch_batches=lambda e: mbs, loss_fn=token_loss)
    b = Engine(model=toy_model(), config=cfg(grad_accum=1, max_grad_norm=0.5,
                                             optim=OptimConfig(lr=0.05, weight_decay=0.1)),
               out_dir=tmp_path / "b", epoch_batches=lambda e: big, loss_fn=token_loss)
    ra, rb = a.train(), b.train()
    assert ra.step == rb.step == 3
    for (na, pa), (nb, pb) in zip(a.unwrapped_model().state_dict().items(),
                                  b.unwrapped_model().state_dict().items()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert [h["loss"] for h in ra.history] == pytest.approx([h["loss"] for h in rb.history],
                                                            rel=1e-5)
    assert ra.history[-1]["loss"] != ra.history[0]["loss"]  # it actually trained


# ---------------------------------------------------------------------------------------------
# data order, schedule, clipping, metrics


def test_data_order_and_ragged_tail(tmp_path):
    """10 micro-batches, grad_accum 4 -> 2 steps per epoch; micro-batches 8 and 9 (the ragged
    tail) are never used; epochs=2 -> 4 steps, epoch_batches called with 0 then 1."""
    seen, asked = [], []

    def epoch_batches(epoch):
        asked.append(epoch)
        bs = ragged_batches(10, seed=epoch)
        for b in bs:
            b["epoch"] = epoch
        return bs

    def loss_fn(m, b):
        seen.append((b["epoch"], b["idx"]))
        return token_loss(m, b)

    e = Engine(model=toy_model(), config=cfg(grad_accum=4, epochs=2), out_dir=tmp_path,
               epoch_batches=epoch_batches, loss_fn=loss_fn)
    result = e.train()
    assert result.step == 4 and e.total_steps == 4
    assert seen == [(0, i) for i in range(8)] + [(1, i) for i in range(8)]
    assert set(asked[1:]) == {0, 1}  # asked[0] is the length probe in __init__
    assert [h["epoch"] for h in result.history] == [0.5, 1.0, 1.5, 2.0]
    assert result.epoch == 2.0


def test_max_steps_overrides_epochs_and_runs_past_them(tmp_path):
    """4 micro-batches, grad_accum 2 -> 2 steps per epoch; max_steps 5 -> epochs 0, 1, 2 (half)."""
    mbs = ragged_batches(4)
    e = Engine(model=toy_model(), config=cfg(grad_accum=2, epochs=1, max_steps=5),
               out_dir=tmp_path, epoch_batches=lambda ep: mbs, loss_fn=token_loss)
    result = e.train()
    assert result.step == 5 and result.epoch == 2.5


def test_metrics_jsonl_lr_schedule_and_grad_norm(tmp_path):
    """One JSON line per step with the documented keys; lr of step k (1-based) is lr_at(k-1);
    the logged grad_norm is the norm *before* clipping, computed here independently."""
    mbs = ragged_batches(6)
    model = toy_model()
    ref = copy.deepcopy(model)
    oc = OptimConfig(lr=0.01, warmup_steps=2, schedule="linear", min_lr_ratio=0.1)
    e = Engine(model=model, config=cfg(optim=oc, max_grad_norm=1e-3), out_dir=tmp_path,
               epoch_batches=lambda ep: mbs, loss_fn=token_loss)
    result = e.train()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == result.history
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    for x in lines:
        assert {"step", "epoch", "lr", "loss", "grad_norm", "tokens_per_s", "elapsed_s",
                "acc"} <= set(x)
        assert x["lr"] == pytest.approx(lr_at(x["step"] - 1, base_lr=0.01, total_steps=6,
                                              warmup_steps=2, schedule="linear",
                                              min_lr_ratio=0.1), rel=1e-12)
        assert x["tokens_per_s"] > 0
    out = token_loss(ref, mbs[0])
    (out.loss_sum / out.n_units).backward()
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in ref.parameters())).item()
    assert lines[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert norm > 1e-3  # so clipping was active
    assert result.final_metrics == lines[-1]


def test_log_every_writes_every_nth_step_and_the_last(tmp_path):
    mbs = ragged_batches(7)
    e = Engine(model=toy_model(), config=cfg(log_every=3), out_dir=tmp_path,
               epoch_batches=lambda ep: mbs, loss_fn=token_loss)
    assert [h["step"] for h in e.train().history] == [3, 6, 7]


def test_clip_gradients_by_hand(tmp_path):
    """grad (3, 4): norm 5 -> returned; clipped to max_grad_norm 1 -> (0.6, 0.8).
    With max_grad_norm=None the norm is still reported and the gradient untouched."""
    for max_norm, expected in ((1.0, [0.6, 0.8]), (None, [3.0, 4.0])):
        model = nn.Linear(2, 1, bias=False)
        e = Engine(model=model, config=cfg(max_grad_norm=max_norm), out_dir=tmp_path,
                   epoch_batches=lambda ep: [0], loss_fn=token_loss)
        model.weight.grad = torch.tensor([[3.0, 4.0]])
        assert e._clip_gradients() == pytest.approx(5.0)
        torch.testing.assert_close(model.weight.grad, torch.tensor([expected]))


def test_default_param_groups_exclude_bias_norm_embedding():
    """Decay only on Linear/attention matrices; a tied head (same tensor as the embedding) is
    not decayed; frozen parameters are left out."""
    emb = nn.Embedding(V, D)
    head = nn.Linear(D, V, bias=False)
    head.weight = emb.weight  # tied
    proj = nn.Linear(D, D)
    frozen = nn.Linear(D, D)
    frozen.requires_grad_(False)
    model = nn.ModuleDict({"emb": emb, "norm": nn.LayerNorm(D), "proj": proj, "head": head,
                           "frozen": frozen})
    decay, no_decay = default_param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(proj.weight)]
    assert {id(p) for p in no_decay["params"]} == {
        id(emb.weight), id(model["norm"].weight), id(model["norm"].bias), id(proj.bias)}


def test_custom_param_groups_are_used(tmp_path):
    model = toy_model()
    groups = [{"params": list(model.parameters()), "lr": 0.5}]
    e = Engine(model=model, config=cfg(), out_dir=tmp_path, epoch_batches=lambda ep: [0],
               loss_fn=token_loss, param_groups=groups)
    assert len(e.optimizer.param_groups) == 1
    assert e.optimizer.param_groups[0]["lr"] == pytest.approx(0.5)  # cosine step 0, no warmup


def test_seed_everything_seeds_python_numpy_torch():
    seed_everything(7)
    first = (random.random(), float(np.random.rand()), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(1)
    seed_everything(7)
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == first


def test_too_few_batches_for_one_step_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"3 micro-batches.*grad_accum \(4\)"):
        Engine(model=toy_model(), config=cfg(grad_accum=4), out_dir=tmp_path,
               epoch_batches=lambda ep: ragged_batches(3), loss_fn=token_loss)


# ---------------------------------------------------------------------------------------------
# eval


def dropout_loss(model, batch):
    """token_loss with dropout on the logits, so training draws from the torch RNG."""
    logits = F.dropout(model(batch["ids"]), p=0.3, training=model.training)
    nll = F.cross_entropy(logits, batch["targets"], reduction="none")
    return StepLoss(loss_sum=(nll * batch["mask"]).sum(), n_units=batch["mask"].sum())


def test_eval_every_logs_val_prefix_and_never_changes_training(tmp_path):
    """eval_every=2 over 5 steps -> evals at 2, 4 and the end (5). eval_fn runs in eval mode
    under no_grad and draws random numbers; training (which uses dropout) must end with
    bitwise the same weights as a run without eval."""
    mbs = ragged_batches(5)
    calls = []

    def eval_fn(model):
        calls.append((model.training, torch.is_grad_enabled()))
        torch.rand(1000)  # an eval that samples
        return {"score": 0.5}

    with_eval = Engine(model=toy_model(), config=cfg(eval_every=2), out_dir=tmp_path / "a",
                       epoch_batches=lambda ep: mbs, loss_fn=dropout_loss, eval_fn=eval_fn)
    res = with_eval.train()
    without = Engine(model=toy_model(), config=cfg(), out_dir=tmp_path / "b",
                     epoch_batches=lambda ep: mbs, loss_fn=dropout_loss)
    without.train()
    assert calls == [(False, False)] * 3
    assert [h["step"] for h in res.history if "val/score" in h] == [2, 4, 5]
    assert res.final_metrics["val/score"] == 0.5
    assert with_eval.unwrapped_model().training  # train mode restored
    for k, v in with_eval.unwrapped_model().state_dict().items():
        assert torch.equal(v, without.unwrapped_model().state_dict()[k]), k


# ---------------------------------------------------------------------------------------------
# checkpoints and the NaN guard


def test_checkpoints_every_n_and_at_end_pruned(tmp_path):
    """save_every 2, 5 steps, keep 2 -> saved at 2, 4, 5; kept 4 and 5. The last one holds the
    final weights, the data position and the resolved config."""
    mbs = ragged_batches(5)
    e = Engine(model=toy_model(), config=cfg(save_every=2, keep_checkpoints=2), out_dir=tmp_path,
               epoch_batches=lambda ep: mbs, loss_fn=token_loss, run_config={"stage": "test"})
    e.train()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5]
    ck = load_checkpoint(latest_checkpoint(tmp_path))
    assert ck.trainer_state["step"] == 5
    assert (ck.trainer_state["epoch"], ck.trainer_state["step_in_epoch"]) == (1, 0)
    assert ck.config == {"stage": "test"}
    assert ck.scheduler_state["last_epoch"] == 5
    for k, v in e.unwrapped_model().state_dict().items():
        assert torch.equal(v, ck.model_state[k]), k


def _nan_at(step_to_fail: int, kind: str):
    """A loss_fn that goes non-finite on its `step_to_fail`-th call (grad_accum=1)."""
    n = {"calls": 0}

    def loss_fn(model, batch):
        n["calls"] += 1
        out = token_loss(model, batch)
        if n["calls"] == step_to_fail:
            if kind == "loss":
                out.loss_sum = out.loss_sum * float("nan")
            else:  # finite loss (sqrt(0) = 0) whose gradient is infinite (1 / (2 sqrt(0)))
                w = model[2].weight
                out.loss_sum = out.loss_sum + torch.sqrt((w - w.detach()).sum())
        return out

    return loss_fn


@pytest.mark.parametrize("kind,message", [("loss", "step 5: loss is non-finite .*last good "
                                                   "checkpoint: .*step-00000004"),
                                          ("grad", "step 5: gradient norm is non-finite")])
def test_non_finite_stops_before_the_step_and_keeps_the_last_checkpoint(tmp_path, kind, message):
    """Failure at step 5 with save_every 2: NonFiniteLossError naming step and cause; the weights
    are still exactly those of checkpoint 4 (step 5 not applied); checkpoint 4 still verifies;
    nothing for step 5 was written."""
    mbs = ragged_batches(8)
    e = Engine(model=toy_model(), config=cfg(save_every=2), out_dir=tmp_path,
               epoch_batches=lambda ep: mbs, loss_fn=_nan_at(5, kind))
    with pytest.raises(NonFiniteLossError, match=message):
        e.train()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 4]
    ck = load_checkpoint(latest_checkpoint(tmp_path), verify=True)
    for k, v in e.unwrapped_model().state_dict().items():
        assert torch.equal(v, ck.model_state[k]), k
    assert all(p.grad is None for p in e.unwrapped_model().parameters())
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resume_without_checkpoint_starts_fresh_and_says_so(tmp_path, caplog):
    mbs = ragged_batches(3)
    a = Engine(model=toy_model(), config=cfg(), out_dir=tmp_path / "a",
               epoch_batches=lambda ep: mbs, loss_fn=dropout_loss)
    with caplog.at_level(logging.WARNING, logger="alignkit.train.engine"):
        ra = a.train(resume=True)
    assert "no checkpoint" in caplog.text and "starting fresh" in caplog.text
    b = Engine(model=toy_model(), config=cfg(), out_dir=tmp_path / "b",
               epoch_batches=lambda ep: mbs, loss_fn=dropout_loss)
    rb = b.train()
    assert ra.step == rb.step == 3
    for k, v in a.unwrapped_model().state_dict().items():
        assert torch.equal(v, b.unwrapped_model().state_dict()[k]), k


# ---------------------------------------------------------------------------------------------
# config


def test_config_defaults():
    c = TrainConfig()
    assert (c.optim.lr, c.optim.weight_decay, c.optim.betas, c.optim.eps) == (3e-4, 0.0,
                                                                            (0.9, 0.95), 1e-8)
    assert (c.optim.schedule, c.optim.warmup_steps, c.optim.min_lr_ratio) == ("cosine", 0, 0.0)
    assert (c.epochs, c.max_steps, c.micro_batch_size, c.grad_accum, c.max_grad_norm) == (
        1, None, 8, 1, 1.0)
    assert (c.eval_every, c.save_every, c.keep_checkpoints, c.log_every, c.seed, c.progress) == (
        0, 0, 2, 1, 0, True)


def test_apply_overrides_dotted_yaml_values():
    c = apply_overrides(TrainConfig(), ["optim.lr=1e-3", "optim.betas=[0.9, 0.99]",
                                        "max_grad_norm=null", "progress=false", "max_steps=12",
                                        "optim.schedule=linear"])
    assert c.optim.lr == 1e-3 and c.optim.betas == (0.9, 0.99) and c.max_grad_norm is None
    assert c.progress is False and c.max_steps == 12 and c.optim.schedule == "linear"


class _Stage(BaseModel):  # a recipe config nesting TrainConfig, as stages do
    model_config = TrainConfig.model_config
    train: TrainConfig = TrainConfig()
    extra: dict = {}
    name: str = "x"


@pytest.mark.parametrize("item,pattern", [
    ("optim.lrr=1", r"unknown key 'optim.lrr' \(valid keys in 'optim': lr, weight_decay"),
    ("lr=1", r"unknown key 'lr' \(valid keys: optim, epochs"),
    ("optim.lr.x=1", r"'optim.lr' is a value, not a section"),
    ("optim.lr", r"expected key=value"),
    ("optim.lr=-1", r"--set: key 'optim.lr': Input should be greater than 0"),
    ("optim.schedule=step", r"key 'optim.schedule'"),
    ("optim.betas=[0.9, 1.5]", r"each beta must be in \[0, 1\)"),
])
def test_apply_overrides_errors_name_the_key(item, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(TrainConfig(), [item])


def test_overrides_reach_nested_stage_configs_and_free_dicts():
    s = apply_overrides(_Stage(), ["train.optim.lr=0.5", "extra.a.b=3", "name=y"])
    assert s.train.optim.lr == 0.5 and s.extra == {"a": {"b": 3}} and s.name == "y"
    with pytest.raises(ConfigError, match=r"unknown key 'train.grad_acum' \(valid keys in "
                                          r"'train': optim, epochs"):
        apply_overrides(_Stage(), ["train.grad_acum=2"])


def test_load_config_yaml_and_errors_name_file_line_key(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("grad_accum: 4\noptim:\n  lr: 0.01\n  warmup_steps: 3\n")
    c = load_config(TrainConfig, good, ["optim.lr=0.02"])
    assert (c.grad_accum, c.optim.lr, c.optim.warmup_steps) == (4, 0.02, 3)

    bad = tmp_path / "bad.yaml"
    bad.write_text("grad_accum: 4\noptim:\n  lr: 0.01\n  warmup: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_config(TrainConfig, bad)
    msg = str(ei.value)
    assert f"{bad}:4: unknown key 'optim.warmup'" in msg and "warmup_steps" in msg

    bad.write_text("epochs: 0\n")
    with pytest.raises(ConfigError, match=rf"{bad}:1: key 'epochs': Input should be greater"):
        load_config(TrainConfig, bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(TrainConfig, bad)
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"<config dict>: unknown key 'foo'"):
        load_config(TrainConfig, {"foo": 1})
    assert load_config(TrainConfig, tmp_path / "good.yaml").grad_accum == 4


# ---------------------------------------------------------------------------------------------
# progress bar


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_main_tty_when_enabled():
    assert should_show(True, True, _TTY())
    assert not should_show(True, True, io.StringIO())  # not a terminal
    assert not should_show(True, False, _TTY())  # not the main process
    assert not should_show(False, True, _TTY())  # config.progress = False


def test_progress_bar_renders_steps_loss_and_tokens_per_s():
    stream = _TTY()
    with TrainProgress(10, stream=stream) as bar:
        assert bar.active
        bar.update(4, loss=1.23456, tokens_per_s=12345.0)
    text = stream.getvalue()
    assert "4/10" in text and "1.2346" in text and "12,345" in text and "ETA" in text
    off = io.StringIO()
    with TrainProgress(10, stream=off) as bar:
        bar.update(4, loss=1.0)
    assert off.getvalue() == "" and not bar.active


def test_step_without_any_loss_unit_is_refused(tmp_path):
    mbs = ragged_batches(2)
    for b in mbs:
        b["mask"].zero_()
    e = Engine(model=toy_model(), config=cfg(), out_dir=tmp_path, epoch_batches=lambda ep: mbs,
               loss_fn=token_loss)
    with pytest.raises(NonFiniteLossError, match="step 1: .*no loss unit.*last good checkpoint: "
                                                 "none yet"):
        e.train()


@pytest.mark.parametrize("module", ["engine", "config", "schedule", "progress"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"alignkit.train.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
