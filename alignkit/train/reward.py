"""The `reward` stage: a Bradley-Terry reward model (scalar head on a causal-LM backbone).

Objective: mean over pairs of −log σ(r_c − r_r − m) (`alignkit.losses.reward.bradley_terry`;
m = the row's `margin` when present, else 0), plus the optional centring penalty
coef·(r_c + r_r)² (`reward_centering`). Rows carrying a soft label ``chosen_prob`` = p (e.g. from
``alignkit cai label``; with ``soft_labels: auto``, every row must then carry one) are trained
with −p·log σ(r_c − r_r) − (1 − p)·log σ(r_r − r_c) instead (`soft_bradley_terry`; no margin).
The model is `alignkit.models.heads.RewardModel` (pooled at the last non-padding token); LoRA
or full fine-tuning of the backbone, the head is always trained. Chosen and rejected sequences of a micro-batch go through one forward.

Evaluation (`OUT/eval.json`, the suite schema ``alignkit.eval/v1`` of `alignkit.evals.suite`:
``metrics`` maps "suite/metric" to {value, lo, hi, n, slices}) on the held-out pairs:

- ``reward/accuracy``: strict r_c > r_r (a tie counts as wrong), with a Wilson 95% interval,
  overall and per slice (`slice_fields`, e.g. category and type);
- ``reward/ece`` and ``reward/ece_after_temperature``: each pair is shown in a seeded random
  order (first, second); the predicted probability that the first is preferred is
  σ(r_first − r_second), the label is whether it is the chosen one. (Without the random order
  every label is 1, the ECE only sees one direction and a temperature fit degenerates.) ECE
  with 15 equal-width bins (Guo et al. 2017, Eq. 3) on the *test* part of the held-out pairs
  (``n``), before and after a temperature T fitted on the *calibration* part
  (`calibration_fraction` of the held-out pairs, Guo et al. Sec. 4.2). No interval (null).
  Accuracy is reported on all held-out pairs (T does not change a sign).
- extra top-level keys: ``margins`` (the distribution of r_c − r_r: mean, std, min,
  quantiles 5/25/50/75/95, max, and a histogram) and ``calibration`` (T, bins, split sizes).

Manifest metrics (names unchanged): heldout/accuracy, heldout/ece, heldout/ece_temp,
heldout/temperature, heldout/margin_mean.

    >>> cfg = RewardConfig(center_coef=0.01)
    >>> cfg.ece_bins, cfg.calibration_fraction
    (15, 0.5)

Python: `alignkit.train.reward.reward(config, out_dir)`; command line:
`alignkit reward --config CFG --out DIR`.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from alignkit.errors import ConfigError, DataError
from alignkit.models.lora import LoraSpec
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.world.build import WorldConfig

WORLD_DATA = "builtin:world"


class RewardConfig(BaseModel):
    """Settings of `alignkit reward`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str = "builtin:world-tiny"  # backbone: HF dir, .gguf file or builtin:NAME
    data: str = WORLD_DATA  # preference file (jsonl/json/csv/parquet/hh) or builtin:world
    format: str | None = None  # force the file format
    validation: str | None = None  # held-out file; None = the world's held-out split, or val_fraction
    val_fraction: float = Field(0.1, ge=0, lt=1)  # share of file rows held out when no validation file
    template: str | None = None  # None = the tokenizer's own chat template
    max_length: int = Field(512, ge=8)  # truncate longer sequences to this many tokens
    use_margin: bool = True  # use a row's `margin` field in the Bradley-Terry loss
    soft_labels: Literal["auto", "ignore"] = "auto"  # rows' chosen_prob -> soft Bradley-Terry; ignore = hard labels
    center_coef: float = Field(0.0, ge=0)  # reward centring penalty coefficient (0 = off)
    lora: LoraSpec | None = None  # LoRA on the backbone (the head is always fully trained)
    calibration_fraction: float = Field(0.5, gt=0, lt=1)  # held-out pairs used to fit the temperature
    ece_bins: int = Field(15, ge=1)  # equal-width ECE bins
    slice_fields: list[str] = ["category", "type"]  # row fields to slice held-out accuracy by
    on_bad_rows: Literal["error", "skip"] = "error"  # skip = quarantine bad rows and count them
    world: WorldConfig = WorldConfig()  # the world that builtin:world data comes from
    world_per_family: int | None = 60  # builtin:world task pairs per family (None = all)
    world_n_per_slice: int = Field(2, ge=0)  # builtin:world safety pairs per safety slice
    train: TrainConfig = TrainConfig(
        optim=OptimConfig(lr=5e-4, warmup_steps=10), epochs=2, micro_batch_size=16,
        eval_every=25)  # loop settings
    seed: int = 0  # data order, split, pair order for calibration


# ------------------------------------------------------------------------------- data

def load_reward_rows(cfg: RewardConfig) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(train pairs, held-out pairs, manifest inputs); pairs as prompt/chosen/rejected messages."""
    from alignkit.train.prefer import PreferConfig, load_prefer_rows

    shared = {k: getattr(cfg, k) for k in ("model", "data", "format", "validation", "val_fraction",
                                           "on_bad_rows", "world", "world_per_family",
                                           "world_n_per_slice", "seed")}
    train, val, inputs = load_prefer_rows(PreferConfig(**shared))
    for name, rows in (("train", train), ("validation", val)):
        for i, r in enumerate(rows, start=1):
            if "chosen" not in r:
                raise DataError("the reward stage needs paired rows (prompt/chosen/rejected)",
                                file=inputs[name].get("source"), line=i, field="chosen")
            if cfg.use_margin and r.get("margin") is not None and not isinstance(
                    r["margin"], (int, float)):
                raise DataError(f"margin must be a number, got {r['margin']!r}",
                                file=inputs[name].get("source"), line=i, field="margin")
    return train, val, inputs


def encode_pairs(rows: list[dict], tokenizer, template, *, max_length: int,
                 source: str | None = None) -> list[tuple[list[int], list[int]]]:
    """Token ids of (prompt + chosen, prompt + rejected) per row."""
    from alignkit.data.encode import encode_preference

    out = []
    for i, r in enumerate(rows, start=1):
        c, rj = encode_preference(tokenizer, template, r["prompt"], r["chosen"], r["rejected"],
                                  max_length=max_length, file=source, line=i)
        out.append((c.input_ids, rj.input_ids))
    return out


def make_pair_batches(pairs: Sequence[tuple[list[int], list[int]]], margins: Sequence[float],
                      *, micro_batch_size: int, pad_token_id: int,
                      rng: random.Random | None,
                      probs: Sequence[float] | None = None) -> list[dict]:
    """Micro-batches; rows [chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}], right-padded.

    `rng=None` keeps the order and the ragged last batch (evaluation).
    """
    import torch

    from alignkit.data.collate import pad_collate

    order = list(range(len(pairs)))
    stop = len(order)
    if rng is not None:
        rng.shuffle(order)
        stop = len(order) - micro_batch_size + 1
    batches = []
    for start in range(0, max(stop, 0), micro_batch_size):
        items = order[start:start + micro_batch_size]
        seqs = [pairs[i][0] for i in items] + [pairs[i][1] for i in items]
        b = pad_collate(seqs, pad_token_id)
        batches.append({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"],
                        "margin": torch.tensor([float(margins[i]) for i in items]),
                        "n_items": len(items)})
        if probs is not None:  # soft labels P(chosen ≻ rejected)
            batches[-1]["chosen_prob"] = torch.tensor([float(probs[i]) for i in items])
    return batches


def reward_step(model, batch: dict, *, center_coef: float):
    """(per-pair losses (B,), r_chosen (B,), r_rejected (B,)): one forward for both sides."""
    from alignkit.losses.reward import bradley_terry, reward_centering, soft_bradley_terry

    rewards = model(batch["input_ids"], batch["attention_mask"])  # (2B,)
    B = int(batch["n_items"])
    r_c, r_r = rewards[:B], rewards[B:]
    if "chosen_prob" in batch:
        losses = soft_bradley_terry(r_c, r_r, batch["chosen_prob"].to(r_c.device, r_c.dtype))
    else:
        losses = bradley_terry(r_c, r_r, batch["margin"].to(r_c.dtype))
    if center_coef:
        losses = losses + reward_centering(r_c, r_r, coef=center_coef)
    return losses, r_c, r_r


# ------------------------------------------------------------------------------- evaluation

def margin_summary(margins: Sequence[float], n_bins: int = 20) -> dict[str, Any]:
    """Mean, std, min, max, the 5/25/50/75/95% quantiles and a histogram of r_c − r_r.

    The histogram has `n_bins` equal-width bins from min to max (the last bin includes max;
    all values in one bin when min = max): ``{"edges": n_bins + 1 floats, "counts": n_bins}``.

        >>> s = margin_summary([1.0, 2.0, 3.0, 4.0, 5.0], n_bins=2)
        >>> s["mean"], s["q50"], s["min"], s["max"], s["histogram"]["counts"]
        (3.0, 3.0, 1.0, 5.0, [2, 3])
    """
    import numpy as np

    m = np.asarray(margins, dtype=np.float64)
    if m.size == 0:
        return {}
    out: dict[str, Any] = {"mean": float(m.mean()), "std": float(m.std()),
                           "min": float(m.min()), "max": float(m.max())}
    for q in (5, 25, 50, 75, 95):
        out[f"q{q}"] = float(np.quantile(m, q / 100))
    counts, edges = np.histogram(m, bins=n_bins)
    out["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
    return out


def calibration_report(r_chosen: Sequence[float], r_rejected: Sequence[float], *,
                       seed: int, calibration_fraction: float, n_bins: int = 15) -> dict[str, Any]:
    """ECE of σ(r_first − r_second) before/after a temperature fitted on a calibration part.

    Pair i is flipped (first = rejected) when a seeded coin says so; label = first is chosen.
    Pairs are split at random: `calibration_fraction` fit T, the rest measure ECE.
    """
    import numpy as np

    from alignkit.evals.calibration import (apply_temperature, expected_calibration_error,
                                            fit_temperature)

    n = len(r_chosen)
    if n < 4:
        raise ConfigError(f"calibration needs at least 4 held-out pairs, got {n}")
    rng = random.Random(f"reward-calibration-{seed}")
    c, r = np.asarray(r_chosen, dtype=np.float64), np.asarray(r_rejected, dtype=np.float64)
    flip = np.array([rng.random() < 0.5 for _ in range(n)])
    x = np.where(flip, r - c, c - r)  # r_first − r_second
    y = (~flip).astype(int)  # first is the chosen one
    order = list(range(n))
    rng.shuffle(order)
    k = min(max(1, int(round(n * calibration_fraction))), n - 1)
    cal, test = np.array(order[:k]), np.array(order[k:])
    temperature = fit_temperature(x[cal].tolist(), y[cal].tolist())
    before = expected_calibration_error(apply_temperature(x[test], 1.0).tolist(), y[test].tolist(),
                                        n_bins=n_bins)
    after = expected_calibration_error(apply_temperature(x[test], temperature).tolist(),
                                       y[test].tolist(), n_bins=n_bins)
    return {"ece": before, "ece_temp": after, "temperature": temperature, "n_bins": n_bins,
            "n_calibration": int(k), "n_test": int(n - k)}


def reward_eval_report(r_chosen: Sequence[float], r_rejected: Sequence[float],
                       rows: Sequence[dict], *, slice_fields: Sequence[str], seed: int,
                       calibration_fraction: float, n_bins: int = 15) -> dict[str, Any]:
    """The eval.json report (see the module docstring) from held-out rewards and their rows.

    Returns {"schema", "suites": ["reward"], "metrics", "margins", "calibration"}; the stage
    adds the evaluated model and template.
    """
    from alignkit.evals.suite import EVAL_SCHEMA, metric, rate_metric

    records = [{"correct": float(c) > float(r), **{f: row.get(f) for f in slice_fields}}
               for c, r, row in zip(r_chosen, r_rejected, rows)]
    cal = calibration_report(r_chosen, r_rejected, seed=seed, n_bins=n_bins,
                             calibration_fraction=calibration_fraction)
    metrics = {"reward/accuracy": rate_metric(records, "correct", slice_fields),
               "reward/ece": metric(cal["ece"], None, None, cal["n_test"]),
               "reward/ece_after_temperature": metric(cal["ece_temp"], None, None, cal["n_test"])}
    return {"schema": EVAL_SCHEMA, "suites": ["reward"], "metrics": metrics,
            "margins": margin_summary([float(a) - float(b) for a, b in zip(r_chosen, r_rejected)]),
            "calibration": cal}


def score_pairs(model, batches: list[dict]) -> tuple[list[float], list[float], float]:
    """(r_chosen, r_rejected, mean loss) over evaluation batches, without grad."""
    import torch

    rc, rr, total = [], [], 0.0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in batches:
                losses, c, r = reward_step(model, b, center_coef=0.0)
                rc += c.tolist()
                rr += r.tolist()
                total += float(losses.sum())
    finally:
        model.train(was_training)
    return rc, rr, total / max(len(rc), 1)


# ------------------------------------------------------------------------------- stage

def _write_eval(out: Path, report: dict) -> None:
    """OUT/eval.json, written to a temporary file and renamed (never half-written)."""
    tmp = out / "eval.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True))
    tmp.replace(out / "eval.json")


def reward(config: RewardConfig | dict, out_dir: str | Path, *,
           resume: bool = False) -> dict[str, Any]:
    """Run the reward stage; returns the summary metrics written to the manifest.

    Writes OUT/manifest.json, OUT/metrics.jsonl, OUT/checkpoints/, OUT/final/ (reward model,
    format in `alignkit.models.heads`) and OUT/eval.json.
    """
    import torch

    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.heads import RewardModel, save_reward_model
    from alignkit.models.loading import load_model
    from alignkit.train.engine import Engine, StepLoss
    from alignkit.train.stage import begin_run, fail_run, finish_run, parent_of

    cfg = config if isinstance(config, RewardConfig) else RewardConfig.model_validate(config)
    out = Path(out_dir)
    loaded = load_model(cfg.model)
    tokenizer = loaded.tokenizer
    template = resolve_chat_template(tokenizer, cfg.template)
    train_rows, val_rows, inputs = load_reward_rows(cfg)
    if len(val_rows) < 4:
        raise ConfigError(f"the reward evaluation needs at least 4 held-out pairs, got {len(val_rows)}")
    pairs = encode_pairs(train_rows, tokenizer, template, max_length=cfg.max_length, source=cfg.data)
    val_pairs = encode_pairs(val_rows, tokenizer, template, max_length=cfg.max_length,
                             source=cfg.validation or cfg.data)
    margin_of = lambda rows: [float(r.get("margin") or 0.0) if cfg.use_margin else 0.0  # noqa: E731
                              for r in rows]
    margins, val_margins = margin_of(train_rows), margin_of(val_rows)
    from alignkit.train.prefer import soft_labels

    probs = soft_labels(train_rows, cfg.data) if cfg.soft_labels == "auto" else None
    val_probs = soft_labels(val_rows, cfg.validation or cfg.data) if probs is not None else None
    if probs is not None and any(margins):
        raise ConfigError("rows carry both soft labels (chosen_prob) and margins; the soft "
                          "Bradley-Terry loss has no margin: set use_margin: false or "
                          "soft_labels: ignore")
    if len(pairs) < cfg.train.micro_batch_size:
        raise ConfigError(f"{len(pairs)} training pairs but micro_batch_size is "
                          f"{cfg.train.micro_batch_size}")

    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    is_main = accelerator.is_main_process
    manifest_config = cfg.model_dump(mode="json")
    begin_run(out, "reward", manifest_config, resume=resume, is_main=is_main, seed=cfg.seed,
              inputs=inputs, base_model={"spec": cfg.model, "digest": loaded.digest},
              template={"name": template.name, "digest": template.digest},
              parents=parent_of(cfg.model))
    try:
        lm = loaded.model
        if cfg.lora is not None:
            from alignkit.models.lora import apply_lora

            lm = apply_lora(lm, cfg.lora)
        torch.manual_seed(cfg.seed)  # the head's initialisation
        model = RewardModel(lm)
        model.train()
        pad = tokenizer.pad_token_id
        train_cfg = cfg.train.model_copy(update={"seed": cfg.seed})
        cache: dict[int, list] = {}

        def epoch_batches(epoch: int):
            if epoch not in cache:
                cache.clear()
                cache[epoch] = make_pair_batches(pairs, margins,
                                                 micro_batch_size=cfg.train.micro_batch_size,
                                                 pad_token_id=pad,
                                                 rng=random.Random(f"{cfg.seed}-{epoch}"),
                                                 probs=probs)
            return cache[epoch]

        val_batches = make_pair_batches(val_pairs, val_margins,
                                        micro_batch_size=cfg.train.micro_batch_size,
                                        pad_token_id=pad, rng=None, probs=val_probs)

        def loss_fn(m, batch):
            losses, r_c, r_r = reward_step(m, batch, center_coef=cfg.center_coef)
            diff = (r_c - r_r).detach()
            return StepLoss(loss_sum=losses.sum(), n_units=int(batch["n_items"]),
                            n_tokens=int(batch["attention_mask"].sum()),
                            metrics={"accuracy": float((diff > 0).float().mean()),
                                     "margin": float(diff.mean()),
                                     "reward_mean": float(torch.cat([r_c, r_r]).detach().mean())})

        def eval_fn(m) -> dict[str, float]:
            rc, rr, loss = score_pairs(m, val_batches)
            acc = sum(a > b for a, b in zip(rc, rr)) / len(rc)
            return {"loss": loss, "accuracy": acc,
                    "margin": sum(a - b for a, b in zip(rc, rr)) / len(rc)}

        engine = Engine(model=model, config=train_cfg, out_dir=out, epoch_batches=epoch_batches,
                        loss_fn=loss_fn, eval_fn=eval_fn, accelerator=accelerator,
                        run_config=manifest_config)
        result = engine.train(resume=resume)
        final = engine.unwrapped_model()
        metrics = {k: float(v) for k, v in result.final_metrics.items()
                   if isinstance(v, (int, float)) and k not in ("step", "epoch")}
        rc, rr, _ = score_pairs(final, val_batches)
        report = reward_eval_report(rc, rr, val_rows, slice_fields=cfg.slice_fields,
                                    seed=cfg.seed, calibration_fraction=cfg.calibration_fraction,
                                    n_bins=cfg.ece_bins)
        metrics.update({"heldout/accuracy": report["metrics"]["reward/accuracy"]["value"],
                        "heldout/ece": report["calibration"]["ece"],
                        "heldout/ece_temp": report["calibration"]["ece_temp"],
                        "heldout/temperature": report["calibration"]["temperature"],
                        "heldout/margin_mean": report["margins"]["mean"]})
        outputs = {}
        if engine.is_main:
            digest = save_reward_model(final, tokenizer, out / "final")
            outputs["final"] = {"path": "final", "digest": digest}
            report.update(model=str(out / "final"), template=template.digest)
            _write_eval(out, report)
        finish_run(out, metrics=metrics, outputs=outputs, is_main=engine.is_main)
        return metrics
    except BaseException as err:
        fail_run(out, err, is_main=is_main)
        raise


__all__ = ["RewardConfig", "calibration_report", "encode_pairs", "load_reward_rows",
           "make_pair_batches", "margin_summary", "reward", "reward_eval_report", "reward_step",
           "score_pairs"]
