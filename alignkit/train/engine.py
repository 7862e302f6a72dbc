"""The training loop every stage uses: forward -> loss -> backward -> step -> log.

A stage supplies three things: the model, ``epoch_batches(epoch)`` (the deterministic list of
micro-batches of one epoch; the recipe shuffles with ``seed + epoch``) and
``loss_fn(model, batch) -> StepLoss``. The engine owns everything else: AdamW, the LR schedule,
gradient accumulation, clipping, the NaN guard, metrics, evaluation, checkpoints and exact
resume. It runs unchanged on one CPU or many GPUs through Accelerate.

    >>> import torch, tempfile
    >>> from alignkit.train.config import TrainConfig
    >>> model = torch.nn.Linear(3, 1)
    >>> data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(8)]
    >>> def loss_fn(m, batch):
    ...     x, y = batch
    ...     return StepLoss(loss_sum=((m(x) - y) ** 2).sum(), n_units=len(x))
    >>> cfg = TrainConfig(max_steps=4, grad_accum=2, progress=False)
    >>> engine = Engine(model=model, config=cfg, out_dir=tempfile.mkdtemp(),
    ...                 epoch_batches=lambda epoch: data, loss_fn=loss_fn)
    >>> result = engine.train()
    >>> result.step, len(result.history)
    (4, 4)

Data order. One optimizer step consumes ``grad_accum * world_size`` consecutive micro-batches of
the epoch list; process ``r`` takes those at positions ``i % world_size == r`` inside the step's
slice. Steps per epoch = ``len(batches) // (grad_accum * world_size)``; the **ragged tail** of an
epoch (fewer micro-batches than one full step) is dropped -- a partial step would have a
different effective batch size, and keeping it would make the schedule length depend on it.
The schedule length is ``max_steps`` or ``epochs * steps_per_epoch(epoch 0)``: epochs are
expected to have the same number of micro-batches (a different count is logged as a warning and
the loop still stops at that total); ``max_steps`` overrides epochs and may run past them.

Loss normalisation. ``loss_fn`` returns the loss *summed* over its ``n_units`` normalisation
units (trainable tokens, or sequences). The gradient applied is that of
``sum(all loss_sum in the step, all processes) / sum(all n_units in the step, all processes)``
-- one big batch, not the mean of per-micro-batch means (which over-weights short micro-batches).
Units are only known after each forward, and keeping every micro-batch's graph alive until the
total is known would cost ``grad_accum`` times the activation memory, so the engine backwards
the raw ``loss_sum`` of each micro-batch and then multiplies the accumulated (and, under DDP,
rank-averaged) gradient by ``world_size / total_units`` -- the same gradient by linearity.
Caveat: under fp16 with a loss scaler the unnormalised sums may overflow more often; use bf16.

Weight decay (AdamW, Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") applies
only to matrices of non-embedding layers: biases, norm weights (anything 1-D) and embedding
tables are excluded, the usual practice since decaying them only shrinks scale/offset
parameters and rare-token rows. Pass ``param_groups`` to choose differently.

Checkpoints and exact resume. Every ``save_every`` steps and at the end the main process writes
``out_dir/checkpoints/step-XXXXXXXX/`` (``alignkit.train.checkpoint``: atomic, checksummed)
with weights, AdamW state, scheduler state, RNG states (python, numpy, torch) and the data
position (epoch, steps done in it). ``train(resume=True)`` restores all of it, drops lines
of ``metrics.jsonl`` written after that checkpoint, and continues; on CPU the result is bitwise
that of an uninterrupted run. Every process restores rank 0's RNG state (all ranks are seeded
alike and draw alike). Resuming needs the same ``grad_accum x processes``.

NaN guard. After all micro-batches of a step, a non-finite loss (summed over processes) or
gradient norm raises :class:`~alignkit.errors.NonFiniteLossError` on every process before
the optimizer step; nothing is saved, so the last checkpoint is the last good state. (Hence
fp16 with a dynamic loss scaler, which expects occasional inf gradients, is not supported:
use bf16 or fp32.)

Metrics. ``StepLoss.metrics`` are per-unit averages; the engine weights them by units and sums
them over micro-batches and processes in float64 (a Python float is never routed through
float32), so a logged constant such as ``beta = 0.05`` reads back as 0.05 to float64 rounding,
not 0.0500000007. Each record goes to ``metrics.jsonl`` and, when ``config.tracking`` enables
them, to TensorBoard and MLflow (``alignkit.train.tracking``).

Multi-process. Only the main process writes (metrics, checkpoints, trackers, progress bar);
eval runs on every process. Tested with DDP on CPU (gloo); FSDP should work through Accelerate
but is untested; DeepSpeed is not supported (it owns backward and the gradient buffers).
``epoch_batches(0)`` is called once in ``__init__`` to size the schedule.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from alignkit.errors import CheckpointError, ConfigError, NonFiniteLossError
from alignkit.train.checkpoint import (checkpoint_dir, get_rng_state, latest_checkpoint,
                                       load_checkpoint, prune_checkpoints, save_checkpoint,
                                       set_rng_state)
from alignkit.train.config import TrainConfig
from alignkit.train.progress import TrainProgress
from alignkit.train.schedule import make_scheduler
from alignkit.train.tracking import check_tracking, tracking

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


@dataclass
class StepLoss:
    """What ``loss_fn(model, batch)`` returns for one micro-batch."""

    loss_sum: torch.Tensor  # scalar: the loss summed over `n_units` normalisation units
    n_units: float | torch.Tensor  # units loss_sum covers (trainable tokens, or sequences)
    n_tokens: int = 0  # non-padding tokens processed (for tokens/s)
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)  # per-unit averages


@dataclass
class TrainResult:
    """Where training ended and what it logged."""

    step: int  # optimizer steps done in total (including those before a resume)
    epoch: float  # epochs done, fractional (e.g. 1.5)
    final_metrics: dict[str, float]  # the last logged record (includes val/* from the final eval)
    history: list[dict[str, Any]]  # every logged record, as in metrics.jsonl (main process)


@dataclass
class _Position:
    """Where the loop is; saved in every checkpoint as ``trainer_state``."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch the next step reads from
    step_in_epoch: int = 0  # optimizer steps of that epoch already done
    tokens_seen: int = 0  # all processes
    elapsed_s: float = 0.0  # wall time of all previous sessions of this run


@dataclass
class StepTotals:
    """Sums over one optimizer step, all micro-batches, all processes."""

    loss_sum: float
    units: float
    tokens: int
    metrics: dict[str, float]  # unit-weighted averages


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed matrices, and undecayed biases/norms/embeddings.

    A parameter is undecayed when it is 1-D (bias, LayerNorm/RMSNorm weight) or belongs to an
    ``nn.Embedding`` (a tied output head shares that tensor, so it is undecayed too). Frozen
    parameters (``requires_grad=False``) are left out.

    >>> m = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    >>> # decayed: [linear.weight]; not decayed: [emb.weight, ln.weight, ln.bias, linear.bias]
    >>> [len(g["params"]) for g in default_param_groups(m, 0.1)]
    [1, 4]
    """
    embedding_ids = {id(p) for mod in model.modules() if isinstance(mod, nn.Embedding)
                     for p in mod.parameters(recurse=False)}
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 or id(p) in embedding_ids else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def fused_adamw_ok(param_groups: list[dict[str, Any]]) -> bool:
    """Whether torch's fused AdamW kernel can take these parameters.

    The fused kernel updates each tensor in one pass, where torch's default on CPU is a Python
    loop of ~6 element-wise kernels per tensor: on the 5 M-parameter SFT benchmark
    (benchmarks/sft_vs_trl.py) the optimizer step takes ~7 ms instead of ~15 ms on 2 cores. It
    is the same update rule (Loshchilov & Hutter 2019); results differ from the loop only by
    float rounding, and a resumed run stays bitwise equal to an uninterrupted one. It needs
    plain floating-point tensors on CPU or CUDA (not DTensors or other subclasses).

    >>> fused_adamw_ok([{"params": [nn.Parameter(torch.zeros(2))]}])
    True
    >>> fused_adamw_ok([{"params": [torch.zeros(2, device="meta")]}])
    False
    """
    params = [p for g in param_groups for p in g["params"]]
    return bool(params) and all(
        type(p) in (torch.Tensor, nn.Parameter) and p.is_floating_point()
        and p.device.type in ("cpu", "cuda") for p in params)


def _as_float(value: float | torch.Tensor, dtype: torch.dtype,
              device: torch.device) -> torch.Tensor:
    """``value`` as a detached scalar tensor of ``dtype`` (float64 except on MPS).

    A Python number goes straight to ``dtype``: ``torch.as_tensor(0.05)`` would first make a
    float32 tensor, and the logged value would read 0.05000000074505806.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to(device=device, dtype=dtype)
    return torch.tensor(float(value), dtype=dtype, device=device)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (a kill loses at most this line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_jsonl_upto(path: Path, step: int) -> list[dict[str, Any]]:
    """Records of ``path`` with ``record["step"] <= step``; a torn last line is ignored."""
    records = []
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # only a line cut by a kill can be torn; it is after the checkpoint
        if rec.get("step", math.inf) <= step:
            records.append(rec)
    return records


def _rewrite_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``path`` atomically (temp file, fsync, rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Engine:
    """The training loop (see the module docstring for data order and loss normalisation).

    Args:
        model: the ``nn.Module`` to train (its frozen parameters stay frozen).
        config: loop settings.
        out_dir: run directory; ``metrics.jsonl`` and ``checkpoints/step-XXXXXXXX/`` go here.
        epoch_batches: ``epoch -> list of micro-batches`` (deterministic; same on every process).
        loss_fn: ``(model, batch) -> StepLoss``. It receives the *prepared* model (call it, do
            not unwrap it, so DDP hooks run) and the batch moved to the engine's device. It must
            return the same metric keys on every process.
        eval_fn: ``model -> {name: value}``, called on every process with the unwrapped model
            under ``torch.no_grad()`` in eval mode; logged with a ``val/`` prefix. It may draw
            random numbers: the training RNG state is restored afterwards, so evaluation never
            changes the training trajectory.
        accelerator: an ``accelerate.Accelerator``; by default one is created
            (``Accelerator(cpu=not torch.cuda.is_available())``).
        param_groups: AdamW parameter groups; default :func:`default_param_groups`.
        run_config: the stage's resolved config, stored in every checkpoint (default: ``config``).
    """

    def __init__(self, *, model: nn.Module, config: TrainConfig, out_dir: str | Path,
                 epoch_batches: Callable[[int], Sequence[Any]],
                 loss_fn: Callable[[nn.Module, Any], StepLoss],
                 eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
                 accelerator: Any = None, param_groups: list[dict[str, Any]] | None = None,
                 run_config: dict[str, Any] | None = None):
        if accelerator is None:
            from accelerate import Accelerator  # lazy: importing alignkit stays cheap

            accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.accelerator = accelerator
        self.config = config
        self.out_dir = Path(out_dir)
        self.epoch_batches = epoch_batches
        self.loss_fn = loss_fn
        self.eval_fn = eval_fn
        self.run_config = run_config if run_config is not None else config.model_dump(mode="json")
        self.world_size = accelerator.num_processes
        self.rank = accelerator.process_index
        self.is_main = accelerator.is_main_process
        self.batches_per_step = config.grad_accum * self.world_size  # micro-batches, all processes

        n_batches = len(epoch_batches(0))
        self.steps_per_epoch = n_batches // self.batches_per_step
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"epoch 0 has {n_batches} micro-batches but one optimizer step needs "
                f"grad_accum ({config.grad_accum}) x processes ({self.world_size}) = "
                f"{self.batches_per_step}; lower grad_accum or provide more data")
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch

        if self.is_main:
            check_tracking(config.tracking)  # a missing tracker package fails before compute
        o = config.optim
        groups = param_groups if param_groups is not None else default_param_groups(
            model, o.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps,
                                      weight_decay=o.weight_decay,
                                      fused=True if fused_adamw_ok(groups) else None)
        # The scheduler is not passed to prepare(): Accelerate would step it once per process.
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.scheduler = make_scheduler(optimizer, total_steps=self.total_steps,
                                        warmup_steps=o.warmup_steps, schedule=o.schedule,
                                        min_lr_ratio=o.min_lr_ratio)
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]

    # -----------------------------------------------------------------------------------------
    # the loop

    def train(self, resume: bool = False) -> TrainResult:
        """Train to ``total_steps``; with ``resume=True`` continue from the latest checkpoint."""
        cfg = self.config
        seed_everything(cfg.seed)
        pos = _Position()
        if resume:
            pos = self._restore() or pos  # sets weights, optimizer, schedule and RNG
        history = self._prepare_metrics_file(pos.step)

        self.model.train()
        session_start = time.perf_counter()
        window_start, window_tokens = session_start, 0
        batches, batches_epoch, n_steps = None, None, 0
        # Optional TensorBoard / MLflow mirrors of metrics.jsonl (alignkit.train.tracking).
        with tracking(cfg.tracking, self.out_dir, enabled=self.is_main, start_step=pos.step,
                      resume=resume, run_config=self.run_config) as trackers, \
                TrainProgress(self.total_steps, enabled=cfg.progress, is_main=self.is_main,
                              initial_step=pos.step) as bar:
            while pos.step < self.total_steps:
                if batches_epoch != pos.epoch:
                    (batches, n_steps), batches_epoch = self._load_epoch(pos.epoch), pos.epoch
                first = pos.step_in_epoch * self.batches_per_step
                mine = batches[first:first + self.batches_per_step][self.rank::self.world_size]

                # forward + backward of every micro-batch; .grad = d(step loss)/d(params)
                totals = self.compute_gradients(mine)
                loss = totals.loss_sum / totals.units
                if not math.isfinite(loss):
                    why = (f"loss is non-finite ({loss})" if math.isfinite(totals.units) else
                           "loss is non-finite: its micro-batches hold no loss unit "
                           "(e.g. no trainable token)")
                    self._abort(f"step {pos.step + 1}: {why}")
                grad_norm = self._clip_gradients()
                if not math.isfinite(grad_norm):
                    self._abort(f"step {pos.step + 1}: gradient norm is non-finite "
                                f"({grad_norm}) with finite loss {loss:.6g}")
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)

                pos.step += 1
                pos.step_in_epoch += 1
                epoch_done = pos.epoch + pos.step_in_epoch / n_steps  # fractional, for logs
                if pos.step_in_epoch == n_steps:
                    pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
                pos.tokens_seen += totals.tokens
                window_tokens += totals.tokens

                # log / eval / save
                final = pos.step == self.total_steps
                record = None
                if pos.step % cfg.log_every == 0 or final:
                    now = time.perf_counter()
                    record = {
                        "step": pos.step,
                        "epoch": epoch_done,
                        "lr": lr,
                        "loss": loss,
                        "grad_norm": grad_norm,
                        "tokens_per_s": window_tokens / max(now - window_start, 1e-9),
                        "elapsed_s": pos.elapsed_s + now - session_start,
                        **totals.metrics,
                    }
                    window_start, window_tokens = now, 0
                if self.eval_fn is not None and (
                        final or (cfg.eval_every and pos.step % cfg.eval_every == 0)):
                    val = {f"val/{k}": float(v) for k, v in self.evaluate().items()}
                    record = {"step": pos.step, **(record or {}), **val}
                if record is not None:
                    history.append(record)
                    if self.is_main:
                        _append_jsonl(self.out_dir / METRICS_FILE, record)
                        trackers.log(record)
                bar.update(pos.step, loss=loss, tokens_per_s=record and record.get("tokens_per_s"))
                if final or (cfg.save_every and pos.step % cfg.save_every == 0):
                    pos_now = _Position(**vars(pos))
                    pos_now.elapsed_s += time.perf_counter() - session_start
                    self.save(pos_now)

        epoch = pos.epoch + pos.step_in_epoch / max(n_steps, self.steps_per_epoch)
        return TrainResult(step=pos.step, epoch=epoch,
                           final_metrics=dict(history[-1]) if history else {}, history=history)

    def compute_gradients(self, micro_batches: Sequence[Any]) -> StepTotals:
        """Forward and backward this process's micro-batches of one optimizer step.

        Leaves in every ``.grad`` the gradient of (loss summed over all units of the step, on
        all processes) / (total units), and returns the step's totals (identical on every
        process). Gradient sync across processes happens only on the last micro-batch.
        """
        self.optimizer.zero_grad(set_to_none=True)
        device = self.accelerator.device
        f64 = torch.float64 if device.type != "mps" else torch.float32
        loss_sum = torch.zeros((), dtype=f64, device=device)
        units = torch.zeros((), dtype=f64, device=device)
        tokens = 0
        metric_sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
            with sync:
                out = self.loss_fn(self.model, self._to_device(batch))
                self.accelerator.backward(out.loss_sum)
            n = _as_float(out.n_units, f64, device)
            loss_sum += out.loss_sum.detach().to(f64)
            units += n
            tokens += int(out.n_tokens)
            for k, v in out.metrics.items():  # per-unit averages -> unit-weighted sums
                v = _as_float(v, f64, device)
                metric_sums[k] = metric_sums.get(k, 0.0) + v * n

        keys = sorted(metric_sums)
        local = torch.stack([loss_sum, units, torch.tensor(float(tokens), dtype=f64, device=device),
                             *[metric_sums[k] for k in keys]])
        total = self.accelerator.reduce(local, reduction="sum").tolist()  # one sync per step
        total_units = total[1]
        if total_units > 0:
            # DDP already averaged the gradient over processes: x world / units gives sum / units.
            scale = self.world_size / total_units
            for p in self._params:
                if p.grad is not None:
                    p.grad.mul_(scale)
        else:
            total_units = float("nan")  # no unit in the whole step: the loss is undefined
        return StepTotals(loss_sum=total[0], units=total_units, tokens=int(total[2]),
                           metrics={k: total[3 + j] / total_units for j, k in enumerate(keys)})

    def evaluate(self) -> dict[str, float]:
        """Run ``eval_fn`` in eval mode, without grad, leaving the training RNG untouched."""
        if self.eval_fn is None:
            return {}
        rng = get_rng_state()
        model = self.unwrapped_model()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return dict(self.eval_fn(model))
        finally:
            model.train(was_training)
            set_rng_state(rng)

    # -----------------------------------------------------------------------------------------
    # checkpoints

    def unwrapped_model(self) -> nn.Module:
        """The model without its DDP/FSDP wrapper (for saving, generation, evaluation)."""
        return self.accelerator.unwrap_model(self.model)

    def checkpoint_dir(self, step: int) -> Path:
        """``out_dir/checkpoints/step-XXXXXXXX`` for ``step``."""
        return checkpoint_dir(self.out_dir, step)

    def save(self, pos: _Position) -> None:
        """Write a checkpoint of the current state (main process only), then prune old ones."""
        model_state = self.accelerator.get_state_dict(self.model)  # collective under FSDP
        if self.is_main:
            save_checkpoint(
                self.checkpoint_dir(pos.step),
                model_state=model_state,
                optimizer_state=self.optimizer.state_dict(),
                scheduler_state=self.scheduler.state_dict(),
                rng_state=get_rng_state(),
                trainer_state={**vars(pos), "world_size": self.world_size,
                               "grad_accum": self.config.grad_accum,
                               "batches_per_step": self.batches_per_step,
                               "total_steps": self.total_steps},
                config=self.run_config,
            )
            prune_checkpoints(self.out_dir, self.config.keep_checkpoints)
            logger.info("saved checkpoint %s", self.checkpoint_dir(pos.step))
        self.accelerator.wait_for_everyone()

    def _restore(self) -> _Position | None:
        """Load the latest checkpoint of ``out_dir`` into model, optimizer, schedule and RNG."""
        ckpt_dir = latest_checkpoint(self.out_dir)
        if ckpt_dir is None:
            logger.warning("resume requested but %s holds no checkpoint; starting fresh",
                           self.out_dir)
            return None
        ckpt = load_checkpoint(ckpt_dir, verify=True)
        ts = ckpt.trainer_state
        if ts.get("batches_per_step") != self.batches_per_step:
            raise CheckpointError(
                f"{ckpt_dir}: written with grad_accum x processes = {ts.get('batches_per_step')} "
                f"micro-batches per step, this run uses {self.batches_per_step}; exact resume "
                "needs the same data slicing (keep grad_accum x number of processes)")
        self.unwrapped_model().load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.scheduler.load_state_dict(ckpt.scheduler_state)
        set_rng_state(ckpt.rng_state)  # after seeding: the checkpoint's stream wins
        logger.info("resumed from %s at step %d", ckpt_dir, ts["step"])
        return _Position(step=ts["step"], epoch=ts["epoch"], step_in_epoch=ts["step_in_epoch"],
                         tokens_seen=ts.get("tokens_seen", 0), elapsed_s=ts.get("elapsed_s", 0.0))

    # -----------------------------------------------------------------------------------------
    # helpers

    def _prepare_metrics_file(self, step: int) -> list[dict[str, Any]]:
        """History up to ``step``; drops lines a killed session wrote after its checkpoint."""
        path = self.out_dir / METRICS_FILE
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            history = _read_jsonl_upto(path, step)
            if path.exists():
                _rewrite_jsonl(path, history)
        self.accelerator.wait_for_everyone()
        if not self.is_main:
            history = _read_jsonl_upto(path, step)
        return history

    def _load_epoch(self, epoch: int) -> tuple[Sequence[Any], int]:
        """The epoch's micro-batches and how many optimizer steps they make."""
        batches = self.epoch_batches(epoch)
        n_steps = len(batches) // self.batches_per_step
        if n_steps == 0:
            raise ConfigError(
                f"epoch {epoch} has {len(batches)} micro-batches, fewer than one optimizer step "
                f"({self.batches_per_step} = grad_accum x processes)")
        if n_steps != self.steps_per_epoch:
            logger.warning("epoch %d makes %d optimizer steps, epoch 0 made %d; the LR schedule "
                           "assumed %d steps in total", epoch, n_steps, self.steps_per_epoch,
                           self.total_steps)
        return batches, n_steps

    def _to_device(self, batch: Any) -> Any:
        from accelerate.utils import send_to_device

        return send_to_device(batch, self.accelerator.device)

    def _clip_gradients(self) -> float:
        """Clip to ``max_grad_norm`` (if set) and return the global norm before clipping."""
        max_norm = self.config.max_grad_norm
        norm = self.accelerator.clip_grad_norm_(self._params,
                                                max_norm if max_norm is not None else math.inf)
        return float(norm)

    def _abort(self, message: str) -> None:
        """Drop the bad gradient and raise; no checkpoint is written, the last one stays."""
        self.optimizer.zero_grad(set_to_none=True)
        last = latest_checkpoint(self.out_dir)
        message += (" -- the optimizer step was not applied; last good checkpoint: "
                    f"{last if last is not None else 'none yet'}")
        logger.error(message)
        raise NonFiniteLossError(message)
