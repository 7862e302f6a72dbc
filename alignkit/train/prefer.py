"""The `prefer` stage: preference optimisation (DPO family, IPO, KTO, ORPO, SimPO).

Objective: the mean over pairs (KTO: over examples) of `alignkit.losses.preference`'s
per-example loss named by `loss`, on per-sequence log-probs summed over response tokens.

- One forward for chosen and rejected: the two sides of a micro-batch are laid into one batch
  (padded, or packed padding-free) and the per-sequence sums are split back (`seq_ids`).
- Reference log-probs (`reference:`): ``frozen_copy`` | ``adapters_disabled`` (LoRA only) |
  ``precomputed`` (cached on disk, keyed by model, dataset, template and max_length digests;
  see `alignkit.models.reference`). SimPO and ORPO use no reference in the loss; the reference
  is then only used for the KL estimate.
- KTO takes unpaired rows ``{"prompt", "completion", "label"}``; paired rows are split into a
  desirable and an undesirable example (as TRL does). KTO's reference point z₀ is estimated
  from mismatched (prompt_i, completion_j) pairs fixed once at encoding (a derangement of the
  examples), so they can be precomputed like everything else.
- Logged per step: loss, rewards/chosen, rewards/rejected, rewards/margins,
  rewards/accuracies (paired losses), logps/chosen, logps/rejected; at every eval the same on
  the held-out pairs (``val/…``) plus ``val/kl``: the sequence-level KL(π_θ‖π_ref) on a fixed
  set of held-out prompts, estimated as the mean of log π_θ(y|x) − log π_ref(y|x) over
  completions y ~ π_θ (the "k1" estimator, Schulman 2020, "Approximating KL divergence":
  unbiased, but single samples can be negative). The default `decode` samples at temperature 1
  with no top-k/top-p, seeded, because k1 is only unbiased for samples from π_θ itself: with
  greedy decoding it measures the log-ratio at the policy's mode, which is biased and can be
  negative on average (measured on the small world after 16 DPO steps, 64 prompts: greedy
  −2.49; sampled +0.24 and +0.09 with two seeds).

**Soft labels.** A pair row may carry ``chosen_prob`` ∈ [0.5, 1]: the probability that chosen ≻
rejected, e.g. an AI feedback label from ``alignkit cai label``. With ``soft_labels: auto`` (the
default) and every training row carrying one, ``loss: cdpo`` uses the per-pair ε_i = 1 − chosen_prob
instead of `label_smoothing` (the cross-entropy against p_i of Bai et al. 2022, "Constitutional
AI", §4.1); any other loss is a ConfigError then (set ``soft_labels: ignore`` to train on the
hard orientation).

Standard-form rows (strings) are wrapped as one user message and one assistant message and
encoded with the chat template (deliberate: one encoding path, exact masks).

    >>> cfg = PreferConfig(loss="ipo", beta=0.5)
    >>> cfg.reference, cfg.loss
    ('frozen_copy', 'ipo')

Python: `alignkit.train.prefer.prefer(config, out_dir)`; command line:
`alignkit prefer --config CFG --out DIR`.

Evaluation file. OUT/eval.json is written in the suite schema ``alignkit.eval/v1`` of
`alignkit.evals.suite` ("suite/metric" -> {value, lo, hi, n, slices}) from the final
evaluation, the one whose numbers are the manifest's ``val/…`` metrics:

- ``prefer/accuracy`` (paired losses): share of held-out pairs whose implicit reward is
  strictly higher for the chosen response, with Wilson 95% intervals, overall and per
  ``category`` and ``type`` of the rows (equals ``val/rewards/accuracies``);
- ``prefer/kl``: the k1 estimate of KL(π_θ‖π_ref) above (equals ``val/kl``), with a
  percentile-bootstrap 95% interval over its samples (`alignkit.evals.stats.mean_interval`);
- extra top-level keys: ``heldout`` (every ``val/…`` number of the final evaluation, as the
  manifest has them), ``margins`` (distribution and histogram of the implicit-reward margins,
  paired losses) and ``rewards`` (mean implicit reward of chosen and rejected).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from alignkit.contract.digest import digest_obj
from alignkit.contract.specs import DecodeSpec
from alignkit.errors import ConfigError, DataError
from alignkit.models.lora import LoraSpec
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.world.build import WorldConfig

WORLD_DATA = "builtin:world"
LossName = Literal["sigmoid", "ipo", "cdpo", "robust", "hinge", "kto", "orpo", "simpo"]


class PreferConfig(BaseModel):
    """Settings of `alignkit prefer`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str = "builtin:world-tiny"  # the starting policy (and reference): HF dir, .gguf, builtin:NAME
    data: str = WORLD_DATA  # preference / unpaired file (jsonl/json/csv/parquet/hh) or builtin:world
    format: str | None = None  # force the file format
    validation: str | None = None  # held-out file; None = the world's held-out split, or val_fraction
    val_fraction: float = Field(0.1, ge=0, lt=1)  # share of file rows held out when no validation file
    template: str | None = None  # None = the tokenizer's own chat template; or a name / .jinja path
    loss: LossName = "sigmoid"  # objective (alignkit.losses.preference.PREFERENCE_LOSSES)
    beta: float = Field(0.1, ge=0)  # β of the variant (ORPO: λ; IPO: τ)
    label_smoothing: float = Field(0.0, ge=0, le=0.5)  # ε of cdpo / robust / simpo
    gamma: float = Field(0.5, ge=0)  # SimPO target margin γ
    ipo_length_normalize: bool = True  # IPO on per-token log-ratios (TRL's form)
    desirable_weight: float = Field(1.0, ge=0)  # KTO λ_D
    undesirable_weight: float = Field(1.0, ge=0)  # KTO λ_U
    reference: Literal["frozen_copy", "adapters_disabled", "precomputed"] = "frozen_copy"  # π_ref strategy
    ref_cache_dir: str | None = None  # precomputed cache; None = ~/.cache/alignkit/ref_logps, relative = under OUT
    max_length: int = Field(512, ge=8)  # truncate longer sequences to this many tokens
    packing: bool = False  # pack each micro-batch's sequences into padding-free rows
    pack_length: int = Field(1024, ge=8)  # tokens per packed row
    lora: LoraSpec | None = None  # LoRA adapters instead of full fine-tuning
    on_bad_rows: Literal["error", "skip"] = "error"  # skip = quarantine bad rows and count them
    world: WorldConfig = WorldConfig()  # the world that builtin:world data comes from
    world_per_family: int | None = 60  # builtin:world task pairs per family (None = all)
    world_n_per_slice: int = Field(2, ge=0)  # builtin:world safety pairs per safety slice
    soft_labels: Literal["auto", "ignore"] = "auto"  # rows' chosen_prob -> per-pair ε = 1 − p of cdpo; ignore = hard labels
    kl_prompts: int = Field(32, ge=0)  # held-out prompts for the KL estimate (0 = none)
    decode: DecodeSpec = DecodeSpec(max_new_tokens=24, temperature=1.0)  # KL samples: pure sampling from π_θ (seeded)
    train: TrainConfig = TrainConfig(
        optim=OptimConfig(lr=1e-5, warmup_steps=10), epochs=2, micro_batch_size=16,
        eval_every=25)  # loop settings; lr 1e-5 measured on the world: 5e-4 cost 18 points of task accuracy
    seed: int = 0  # data order, split, KTO mismatched pairs


# ------------------------------------------------------------------------------- data

def _as_messages(value: Any, role: str) -> list[dict]:
    return value if isinstance(value, list) else [{"role": role, "content": value}]


def _normalise(records: list[dict], kind: str, source: str) -> list[dict]:
    """Rows as {"prompt": msgs, "chosen"/"rejected": msgs} or {"prompt", "completion", "label"}."""
    out = []
    for i, r in enumerate(records, start=1):
        extra = {k: v for k, v in r.items() if k not in ("prompt", "chosen", "rejected",
                                                           "completion", "label")}
        if kind == "preference":
            if r.get("prompt") is None:
                raise DataError("preference row without a prompt (implicit rows are split by "
                                "the reader; this one was not)", file=source, line=i, field="prompt")
            out.append({**extra, "prompt": _as_messages(r["prompt"], "user"),
                        "chosen": _as_messages(r["chosen"], "assistant"),
                        "rejected": _as_messages(r["rejected"], "assistant")})
        elif kind == "unpaired":
            if not isinstance(r["label"], bool):
                raise DataError(f"label must be true/false, got {r['label']!r}", file=source,
                                line=i, field="label")
            out.append({**extra, "prompt": _as_messages(r["prompt"], "user"),
                        "completion": _as_messages(r["completion"], "assistant"),
                        "label": r["label"]})
        else:
            raise DataError(f"prefer needs preference rows (prompt/chosen/rejected) or unpaired "
                            f"rows (prompt/completion/label), got kind {kind!r}", file=source, line=i)
    return out


def load_prefer_rows(cfg: PreferConfig) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(train rows, held-out rows, manifest inputs) in the normalised form of `_normalise`."""
    if cfg.data == WORLD_DATA:
        from alignkit.world.build import build_world
        from alignkit.world.preferences import world_preference_rows

        world = build_world(cfg.world)
        kw = dict(seed=cfg.seed, n_per_slice=cfg.world_n_per_slice, per_family=cfg.world_per_family)
        train = world_preference_rows(world, split="train", **kw)
        val = world_preference_rows(world, split="heldout", **kw)
        entry = {"source": WORLD_DATA, "world": world.config.model_dump()}
        return train, val, {"train": {**entry, "digest": digest_obj(train, "dataset"),
                                      "n_rows": len(train)},
                            "validation": {**entry, "digest": digest_obj(val, "dataset"),
                                           "n_rows": len(val)}}
    from alignkit.data.readers import read_records

    quarantine = Path(cfg.data).with_suffix(".quarantine.jsonl") if cfg.on_bad_rows == "skip" else None
    res = read_records(cfg.data, format=cfg.format, on_bad_rows=cfg.on_bad_rows,
                       quarantine_path=quarantine)
    rows = _normalise(res.records, res.kind, cfg.data)
    inputs = {"train": res.manifest_entry()}
    if cfg.validation:
        v = read_records(cfg.validation, format=cfg.format)
        inputs["validation"] = v.manifest_entry()
        return rows, _normalise(v.records, v.kind, cfg.validation), inputs
    order = list(range(len(rows)))
    random.Random(cfg.seed).shuffle(order)
    n_val = int(len(rows) * cfg.val_fraction)
    val = [rows[i] for i in order[:n_val]]
    inputs["validation"] = {"source": f"{cfg.data} (held out {n_val} rows, seed {cfg.seed})",
                            "digest": digest_obj(val, "dataset"), "n_rows": n_val}
    return [rows[i] for i in order[n_val:]], val, inputs


def to_unpaired(rows: list[dict]) -> list[dict]:
    """Paired rows -> two unpaired rows each (chosen: label True, rejected: False), for KTO."""
    out = []
    for r in rows:
        if "completion" in r:
            out.append(r)
            continue
        extra = {k: v for k, v in r.items() if k not in ("chosen", "rejected")}
        out.append({**extra, "completion": r["chosen"], "label": True})
        out.append({**extra, "completion": r["rejected"], "label": False})
    return out


@dataclass
class Encoded:
    """Encoded sequences of one split: `seqs[2i]`, `seqs[2i+1]` belong to item i.

    Paired: (chosen, rejected). Unpaired: (example, mismatched KL example).
    """

    seqs: list[Any]  # EncodedExample
    labels: list[bool]  # unpaired only: desirable?
    categories: list[str]
    chosen_probs: list[float] | None = None  # paired soft labels P(chosen ≻ rejected), or None

    def __len__(self) -> int:
        return len(self.seqs) // 2


def derangement(n: int, seed: int) -> list[int]:
    """A permutation with no fixed point (n ≥ 2): item i borrows item perm[i]'s completion.

        >>> p = derangement(5, 0); sorted(p) == list(range(5)) and all(p[i] != i for i in range(5))
        True
    """
    if n < 2:
        raise ConfigError("KTO needs at least 2 examples to form mismatched pairs")
    order = list(range(n))
    random.Random(f"kto-kl-{seed}").shuffle(order)
    perm = [0] * n
    for k in range(n):  # a single cycle through the shuffled order: never a fixed point
        perm[order[k]] = order[(k + 1) % n]
    return perm


def encode_rows(rows: list[dict], tokenizer, template, *, unpaired: bool, max_length: int,
                seed: int, source: str = "") -> Encoded:
    from alignkit.data.encode import encode_preference

    seqs, labels, cats = [], [], []
    if not unpaired:
        for i, r in enumerate(rows, start=1):
            c, rj = encode_preference(tokenizer, template, r["prompt"], r["chosen"], r["rejected"],
                                      max_length=max_length, file=source or None, line=i)
            seqs += [c, rj]
            cats.append(str(r.get("category", r.get("type", "all"))))
        return Encoded(seqs, [], cats, soft_labels(rows, source))
    return _encode_unpaired(rows, tokenizer, template, max_length=max_length, seed=seed,
                            source=source)


def soft_labels(rows: list[dict], source: str = "") -> list[float] | None:
    """Every row's `chosen_prob` (checked to lie in [0.5, 1]), or None when no row has one.

    Some rows with and some without is an error naming the first row without one.
    """
    have = ["chosen_prob" in r for r in rows]
    if not any(have):
        return None
    probs = []
    for i, r in enumerate(rows, start=1):
        p = r.get("chosen_prob")
        if p is None:
            raise DataError("some rows carry chosen_prob (soft labels) and this one does not",
                            file=source or None, line=i, field="chosen_prob")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.5 <= p <= 1.0:
            raise DataError(f"chosen_prob must be a number in [0.5, 1] (P(chosen ≻ rejected); "
                            f"swap chosen and rejected below 0.5), got {p!r}",
                            file=source or None, line=i, field="chosen_prob")
        probs.append(float(p))
    return probs


def _encode_unpaired(rows: list[dict], tokenizer, template, *, max_length: int, seed: int,
                     source: str) -> Encoded:
    from alignkit.data.encode import encode_preference

    seqs, labels, cats = [], [], []
    perm = derangement(len(rows), seed)
    for i, r in enumerate(rows):
        other = rows[perm[i]]["completion"]
        ex, kl = encode_preference(tokenizer, template, r["prompt"], r["completion"], other,
                                   max_length=max_length, file=source or None, line=i + 1)
        seqs += [ex, kl]
        labels.append(bool(r["label"]))
        cats.append(str(r.get("category", r.get("type", "all"))))
    return Encoded(seqs, labels, cats)


def make_batches(enc: Encoded, *, micro_batch_size: int, pad_token_id: int, packing: bool,
                 pack_length: int, rng: random.Random | None, offset: int = 0) -> list[dict]:
    """Micro-batches of `micro_batch_size` items; sequences [first sides..., second sides...].

    `example_ids` index the precomputed reference table (`offset` = where this split starts).
    `rng=None` keeps the order (evaluation) and keeps a ragged last batch.
    """
    import torch

    from alignkit.models.reference import collate_sequences

    order = list(range(len(enc)))
    if rng is not None:
        rng.shuffle(order)
        stop = len(order) - micro_batch_size + 1
    else:
        stop = len(order)
    batches = []
    for start in range(0, max(stop, 0), micro_batch_size):
        items = order[start:start + micro_batch_size]
        ids = [2 * i for i in items] + [2 * i + 1 for i in items]
        batch = collate_sequences([enc.seqs[j] for j in ids], pad_token_id=pad_token_id,
                                  packing=packing, pack_length=pack_length)
        batch["example_ids"] = torch.tensor(ids, dtype=torch.long) + offset
        batch["n_items"] = len(items)
        if enc.labels:
            batch["kto_labels"] = torch.tensor([enc.labels[i] for i in items], dtype=torch.bool)
        if enc.chosen_probs is not None:  # soft labels: per-pair ε_i = 1 − P(chosen ≻ rejected)
            batch["label_smoothing"] = 1.0 - torch.tensor([enc.chosen_probs[i] for i in items],
                                                          dtype=torch.float32)
        batches.append(batch)
    return batches


# ------------------------------------------------------------------------------- the loss

def _with_ref(s: dict) -> dict:
    return {k: s[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                              "ref_chosen_logps", "ref_rejected_logps")}


def _with_lengths(s: dict) -> dict:
    return {k: s[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                              "chosen_lengths", "rejected_lengths")}


# name -> (cfg, sides) -> keyword arguments of that loss (see the call convention in
# alignkit.losses.preference: every loss takes exactly the arguments it uses).
LOSS_ARGUMENTS: dict[str, Callable[[PreferConfig, dict], dict]] = {
    "sigmoid": lambda c, s: {**_with_ref(s), "beta": c.beta},
    "cdpo": lambda c, s: {**_with_ref(s), "beta": c.beta,
                          "label_smoothing": (c.label_smoothing if s.get("label_smoothing") is None
                                              else s["label_smoothing"])},
    "robust": lambda c, s: {**_with_ref(s), "beta": c.beta, "label_smoothing": c.label_smoothing},
    "hinge": lambda c, s: {**_with_ref(s), "beta": c.beta},
    "ipo": lambda c, s: {**_with_ref(s), "chosen_lengths": s["chosen_lengths"],
                         "rejected_lengths": s["rejected_lengths"], "beta": c.beta,
                         "length_normalize": c.ipo_length_normalize},
    "simpo": lambda c, s: {**_with_lengths(s), "beta": c.beta, "gamma": c.gamma,
                           "label_smoothing": c.label_smoothing},
    "orpo": lambda c, s: {**_with_lengths(s), "beta": c.beta},
    "kto": lambda c, s: {"policy_logps": s["policy_logps"], "ref_logps": s["ref_logps"],
                         "labels": s["labels"], "kl": s["kl"], "beta": c.beta,
                         "desirable_weight": c.desirable_weight,
                         "undesirable_weight": c.undesirable_weight},
}


def preference_step(scorer, batch: dict, cfg: PreferConfig, reference) -> tuple[Any, dict, Any]:
    """(loss output, metrics, policy logps) of one micro-batch: one policy forward.

    `reference` is an `alignkit.models.reference.Reference`, or None for reference-free losses.
    """
    from alignkit.losses.preference import (PREFERENCE_LOSSES, UNPAIRED_LOSSES,
                                            kto_reference_kl, preference_metrics)
    from alignkit.models.reference import sequence_logps

    logps, lengths = sequence_logps(scorer, batch)  # (2B,), (2B,)
    B = int(batch["n_items"])
    ref = reference.batch_logps(batch).to(logps.dtype) if reference is not None else None
    if cfg.loss in UNPAIRED_LOSSES:
        labels = batch["kto_labels"]
        sides = {"policy_logps": logps[:B], "ref_logps": ref[:B], "labels": labels,
                 "kl": kto_reference_kl(logps[B:].detach(), ref[B:])}
        chosen_logps, rejected_logps = logps[:B][labels], logps[:B][~labels]
    else:
        sides = {"policy_chosen_logps": logps[:B], "policy_rejected_logps": logps[B:],
                 "chosen_lengths": lengths[:B], "rejected_lengths": lengths[B:],
                 "ref_chosen_logps": ref[:B] if ref is not None else None,
                 "ref_rejected_logps": ref[B:] if ref is not None else None,
                 "label_smoothing": (batch["label_smoothing"].to(logps.device, logps.dtype)
                                     if "label_smoothing" in batch else None)}
        chosen_logps, rejected_logps = logps[:B], logps[B:]
    out = PREFERENCE_LOSSES[cfg.loss](**LOSS_ARGUMENTS[cfg.loss](cfg, sides))
    metrics = preference_metrics(out.chosen_rewards, out.rejected_rewards,
                                 paired=cfg.loss not in UNPAIRED_LOSSES)
    if chosen_logps.numel():
        metrics["logps/chosen"] = float(chosen_logps.detach().mean())
    if rejected_logps.numel():
        metrics["logps/rejected"] = float(rejected_logps.detach().mean())
    if "kl" in out.extras:
        metrics["kl_z0"] = float(out.extras["kl"])
    return out, metrics, logps


# ------------------------------------------------------------------------------- evaluation

def kl_estimate(model, tokenizer, template, prompts: list[list[dict]], reference,
                decode: DecodeSpec, *, pad_token_id: int,
                per_sample: list[float] | None = None) -> dict[str, float]:
    """k1 estimate of KL(π_θ‖π_ref) on the policy's own completions of `prompts`.

    Unbiased only when `decode` samples from π_θ unchanged (temperature 1, no top-k/top-p);
    other settings give the log-ratio on those samples, reported under the same name.

    Returns {"kl": mean over samples of (log π_θ(y|x) − log π_ref(y|x)), "kl_samples": n,
    "response_tokens": mean completion length}. Completions are scored without their stop
    token; empty completions are left out (they have no token to score). `per_sample`, when
    given, is extended with each sample's log π_θ(y|x) − log π_ref(y|x) (for an interval).
    """
    import torch

    from alignkit.data.encode import EncodedExample, IGNORE_INDEX, encode_prompt
    from alignkit.models.forward import TokenScorer
    from alignkit.models.reference import collate_sequences, sequence_logps
    from alignkit.rollout.generate import generate

    if not prompts:
        return {}
    prompt_ids = [list(encode_prompt(tokenizer, template, p)) for p in prompts]
    outs = generate(model, tokenizer, prompt_ids, decode)
    exs = [EncodedExample(p + o, [IGNORE_INDEX] * len(p) + list(o))
           for p, o in zip(prompt_ids, outs) if o]
    if not exs:
        return {"kl": 0.0, "kl_samples": 0.0, "response_tokens": 0.0}
    device = next(model.parameters()).device
    batch = collate_sequences(exs, pad_token_id=pad_token_id)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    with torch.no_grad():
        pol, lengths = sequence_logps(TokenScorer(model), batch)
        ref = reference.score(batch).to(pol.dtype)
    if per_sample is not None:
        per_sample.extend((pol - ref).tolist())
    return {"kl": float((pol - ref).mean()), "kl_samples": float(len(exs)),
            "response_tokens": float(lengths.float().mean())}


# ------------------------------------------------------------------------------- stage

def _build_reference(cfg: PreferConfig, model, loaded, scorer_seqs, *, out: Path,
                     key_parts: dict[str, Any], pad: int):
    """(Reference, manifest entry) for the configured strategy."""
    from alignkit.losses.preference import REFERENCE_FREE_LOSSES
    from alignkit.models.forward import TokenScorer
    from alignkit.models.reference import (Reference, cached_reference_logps,
                                           reference_cache_key, resolve_cache_dir, score_examples)

    entry: dict[str, Any] = {"strategy": cfg.reference, "digest": loaded.digest}
    if cfg.reference == "frozen_copy":
        return Reference.frozen_copy(model), entry
    if cfg.reference == "adapters_disabled":
        return Reference.adapters_disabled(model), entry
    from alignkit.models.loading import load_model

    loader = lambda: load_model(cfg.model).model  # noqa: E731  (only for the KL samples)
    if cfg.loss in REFERENCE_FREE_LOSSES:  # nothing to precompute: the loss has no reference
        return Reference.precomputed(None, loader=loader), entry
    key = reference_cache_key(**key_parts)
    cache_dir = resolve_cache_dir(cfg.ref_cache_dir, out)
    scorer = TokenScorer(model)
    table, reused = cached_reference_logps(
        lambda: score_examples(scorer, scorer_seqs, pad_token_id=pad,
                               batch_size=2 * cfg.train.micro_batch_size),
        key=key, n=len(scorer_seqs), cache_dir=cache_dir, meta=key_parts)
    entry.update(cache_key=key, cache_dir=str(cache_dir), cache_reused=reused)
    return Reference.precomputed(table, loader=loader), entry


def prefer(config: PreferConfig | dict, out_dir: str | Path, *,
           resume: bool = False) -> dict[str, Any]:
    """Run the prefer stage; returns the summary metrics written to the manifest.

    Writes OUT/manifest.json, OUT/metrics.jsonl, OUT/checkpoints/, OUT/final/ (HF format).
    """
    import torch

    from alignkit.data.templates import resolve_chat_template
    from alignkit.losses.preference import REFERENCE_FREE_LOSSES, UNPAIRED_LOSSES
    from alignkit.models.forward import TokenScorer
    from alignkit.models.loading import load_model, save_model
    from alignkit.train.engine import Engine
    from alignkit.train.stage import begin_run, fail_run, finish_run, parent_of

    cfg = config if isinstance(config, PreferConfig) else PreferConfig.model_validate(config)
    if cfg.reference == "adapters_disabled" and cfg.lora is None:
        raise ConfigError("reference: adapters_disabled needs `lora:` (the reference is the "
                          "model with its adapters off); use frozen_copy or precomputed")
    out = Path(out_dir)
    loaded = load_model(cfg.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    template = resolve_chat_template(tokenizer, cfg.template)
    train_rows, val_rows, inputs = load_prefer_rows(cfg)
    unpaired = cfg.loss in UNPAIRED_LOSSES
    if unpaired:
        train_rows, val_rows = to_unpaired(train_rows), to_unpaired(val_rows)
    elif any("completion" in r for r in train_rows):
        raise ConfigError(f"loss {cfg.loss!r} needs paired rows (prompt/chosen/rejected); the "
                          "data is unpaired (prompt/completion/label): use loss: kto")
    if cfg.soft_labels == "ignore":
        train_rows = [{k: v for k, v in r.items() if k != "chosen_prob"} for r in train_rows]
        val_rows = [{k: v for k, v in r.items() if k != "chosen_prob"} for r in val_rows]
    elif cfg.loss != "cdpo" and any("chosen_prob" in r for r in train_rows):
        raise ConfigError(f"the training rows carry soft labels (chosen_prob), which only loss "
                          f"cdpo reads; got loss {cfg.loss!r}: use loss: cdpo, or set "
                          "soft_labels: ignore to train on the hard orientation")
    enc = encode_rows(train_rows, tokenizer, template, unpaired=unpaired,
                      max_length=cfg.max_length, seed=cfg.seed, source=cfg.data)
    val_enc = encode_rows(val_rows, tokenizer, template, unpaired=unpaired,
                          max_length=cfg.max_length, seed=cfg.seed + 1,
                          source=cfg.validation or cfg.data) if len(val_rows) >= 2 else None
    if len(enc) < cfg.train.micro_batch_size:
        raise ConfigError(f"{len(enc)} training items but micro_batch_size is "
                          f"{cfg.train.micro_batch_size}")

    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    is_main = accelerator.is_main_process
    manifest_config = cfg.model_dump(mode="json")
    pad = tokenizer.pad_token_id
    policy_entry = {}
    if cfg.data == WORLD_DATA:
        from alignkit.world.policy import load_policy

        pol = load_policy()
        policy_entry = {"policy": {"name": pol.id, "version": pol.version, "digest": pol.digest}}
    begin_run(out, "prefer", manifest_config, resume=resume, is_main=is_main, seed=cfg.seed,
              inputs=inputs, base_model={"spec": cfg.model, "digest": loaded.digest},
              template={"name": template.name, "digest": template.digest},
              decode={**cfg.decode.model_dump(mode="json"), "digest": cfg.decode.digest},
              parents=parent_of(cfg.model), **policy_entry)
    try:
        from alignkit.models.lora import apply_lora

        if cfg.lora is not None and cfg.reference == "adapters_disabled":
            model = apply_lora(model, cfg.lora)  # the reference is this model, adapters off
        all_seqs = enc.seqs + (val_enc.seqs if val_enc else [])
        key_parts = {"model_digest": loaded.digest, "template_digest": template.digest,
                     "dataset_digest": digest_obj([inputs["train"]["digest"],
                                                   inputs.get("validation", {}).get("digest")],
                                                  "dataset"),
                     "max_length": cfg.max_length,
                     "extra": {"unpaired": unpaired, "kl_seed": cfg.seed}}
        reference, ref_entry = _build_reference(cfg, model, loaded, all_seqs, out=out,
                                                key_parts=key_parts, pad=pad)
        if cfg.lora is not None and cfg.reference != "adapters_disabled":
            model = apply_lora(model, cfg.lora)  # after copying / scoring the base model
        if is_main:
            from alignkit.contract.manifest import read_manifest, update_manifest

            update_manifest(out, inputs={**read_manifest(out).inputs, "reference": ref_entry})
        loss_reference = None if cfg.loss in REFERENCE_FREE_LOSSES else reference
        model.train()
        scorer = TokenScorer(model)
        train_cfg = cfg.train.model_copy(update={"seed": cfg.seed})

        cache: dict[int, list] = {}

        def epoch_batches(epoch: int):
            if epoch not in cache:
                cache.clear()
                cache[epoch] = make_batches(enc, micro_batch_size=cfg.train.micro_batch_size,
                                            pad_token_id=pad, packing=cfg.packing,
                                            pack_length=cfg.pack_length,
                                            rng=random.Random(f"{cfg.seed}-{epoch}"))
            return cache[epoch]

        val_batches = make_batches(val_enc, micro_batch_size=cfg.train.micro_batch_size,
                                   pad_token_id=pad, packing=cfg.packing,
                                   pack_length=cfg.pack_length, rng=None,
                                   offset=len(enc.seqs)) if val_enc else []
        kl_prompts = _kl_prompts(val_rows, cfg.kl_prompts)

        def loss_fn(m, batch):
            from alignkit.train.engine import StepLoss

            out_, metrics, _ = preference_step(m, batch, cfg, loss_reference)
            real = batch["attention_mask"]
            n_tokens = int(real.sum()) if real.dim() == 2 else int((batch["seq_ids"] >= 0).sum())
            return StepLoss(loss_sum=out_.losses.sum(), n_units=int(batch["n_items"]),
                            n_tokens=n_tokens, metrics=metrics)

        last_eval: dict[str, Any] = {}  # per-item results of the latest evaluation (eval.json)

        def eval_fn(m) -> dict[str, float]:
            scorer_eval = m if isinstance(m, TokenScorer) else TokenScorer(m)
            pair_rewards: list[tuple[float, float]] = []
            kl_values: list[float] = []
            result = evaluate_pairs(scorer_eval, val_batches, cfg, loss_reference,
                                    items=pair_rewards)
            if kl_prompts:
                result.update(kl_estimate(scorer_eval.model, tokenizer, template, kl_prompts,
                                          reference, cfg.decode, pad_token_id=pad,
                                          per_sample=kl_values))
            last_eval.update(pairs=pair_rewards, kl=kl_values)
            return result

        engine = Engine(model=scorer, config=train_cfg, out_dir=out, epoch_batches=epoch_batches,
                        loss_fn=loss_fn, eval_fn=eval_fn, accelerator=accelerator,
                        run_config=manifest_config)
        if reference.strategy == "frozen_copy":
            reference.model.to(accelerator.device)  # the policy was moved by Engine/prepare
        result = engine.train(resume=resume)
        final = engine.unwrapped_model().model
        metrics = {k: float(v) for k, v in result.final_metrics.items()
                   if isinstance(v, (int, float)) and k not in ("step", "epoch")}
        # Reference forwards run (training + evaluation); 0 in training for "precomputed".
        metrics["reference_forward_calls"] = float(reference.forward_calls)
        if not last_eval:  # resumed after the final evaluation: measure the final model again
            metrics.update({f"val/{k}": float(v) for k, v in engine.evaluate().items()})
        outputs = {}
        if engine.is_main:
            digest = save_model(final, tokenizer, out / "final")
            outputs["final"] = {"path": "final", "digest": digest}
            report = prefer_eval_report(
                last_eval["pairs"], val_rows if not unpaired else [], last_eval["kl"],
                heldout={k: v for k, v in metrics.items() if k.startswith("val/")})
            report.update(model=str(out / "final"), template=template.digest,
                          decode={**cfg.decode.model_dump(mode="json"), "digest": cfg.decode.digest})
            _write_eval(out, report)
        finish_run(out, metrics=metrics, outputs=outputs, is_main=engine.is_main)
        return metrics
    except BaseException as err:
        fail_run(out, err, is_main=is_main)
        raise


def _kl_prompts(rows: list[dict], n: int) -> list[list[dict]]:
    """The first `n` distinct held-out prompts, in file order (fixed across evals and runs)."""
    seen, out = set(), []
    if n <= 0:
        return out
    for r in rows:
        key = json.dumps(r["prompt"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r["prompt"])
        if len(out) == n:
            break
    return out


def evaluate_pairs(scorer, batches: list[dict], cfg: PreferConfig, reference, *,
                   items: list[tuple[float, float]] | None = None) -> dict[str, float]:
    """Held-out loss and implicit-reward metrics, averaged over items (not batches).

    `items`, when given and the loss is paired, is extended with each pair's (chosen, rejected)
    implicit rewards, in batch order.
    """
    import torch

    from alignkit.losses.preference import UNPAIRED_LOSSES

    totals: dict[str, float] = {}
    weights: dict[str, float] = {}
    n_total = 0
    with torch.no_grad():
        for batch in batches:
            out, metrics, _ = preference_step(scorer, batch, cfg, reference)
            n = int(batch["n_items"])
            n_total += n
            if items is not None and cfg.loss not in UNPAIRED_LOSSES:
                items.extend(zip(out.chosen_rewards.tolist(), out.rejected_rewards.tolist()))
            for k, v in {"loss": float(out.losses.sum()) / n, **metrics}.items():
                totals[k] = totals.get(k, 0.0) + v * n
                weights[k] = weights.get(k, 0.0) + n
    return {k: totals[k] / weights[k] for k in totals} if n_total else {}


SLICE_FIELDS = ("category", "type")  # row fields prefer/accuracy is sliced by (when present)


def prefer_eval_report(pair_rewards: list[tuple[float, float]], rows: list[dict],
                       kl_values: list[float], *, heldout: dict[str, float],
                       slice_fields: tuple[str, ...] = SLICE_FIELDS) -> dict[str, Any]:
    """The eval.json report (module docstring, "Evaluation file") of one evaluation.

    `pair_rewards[i]` = (chosen, rejected) implicit rewards of held-out row `rows[i]` (empty
    for unpaired losses); `kl_values` = per-sample log-ratios of the KL estimate (may be
    empty); `heldout` = the evaluation's ``val/…`` numbers, kept verbatim. Returns {"schema",
    "suites": ["prefer"], "metrics", "heldout", and for paired losses "margins", "rewards"};
    the stage adds the evaluated model, template and decode settings.
    """
    from alignkit.evals.stats import mean_interval
    from alignkit.evals.suite import EVAL_SCHEMA, metric, rate_metric
    from alignkit.train.reward import margin_summary

    report: dict[str, Any] = {"schema": EVAL_SCHEMA, "suites": ["prefer"], "metrics": {},
                              "heldout": dict(heldout)}
    if pair_rewards:
        if len(pair_rewards) != len(rows):
            raise ValueError(f"{len(pair_rewards)} pair rewards for {len(rows)} held-out rows")
        records = [{"correct": c > r, **{f: row.get(f) for f in slice_fields}}
                   for (c, r), row in zip(pair_rewards, rows)]
        report["metrics"]["prefer/accuracy"] = rate_metric(records, "correct", slice_fields)
        report["margins"] = margin_summary([c - r for c, r in pair_rewards])
        n = len(pair_rewards)
        report["rewards"] = {"chosen_mean": sum(c for c, _ in pair_rewards) / n,
                             "rejected_mean": sum(r for _, r in pair_rewards) / n}
    if kl_values:
        mean, lo, hi = mean_interval(kl_values)
        report["metrics"]["prefer/kl"] = metric(mean, lo, hi, len(kl_values))
    return report


def _write_eval(out: Path, report: dict) -> None:
    """OUT/eval.json, written to a temporary file and renamed (never half-written)."""
    tmp = out / "eval.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True))
    tmp.replace(out / "eval.json")


__all__ = ["LOSS_ARGUMENTS", "PreferConfig", "SLICE_FIELDS", "derangement", "encode_rows",
           "evaluate_pairs", "kl_estimate", "load_prefer_rows", "make_batches",
           "prefer_eval_report", "preference_step", "prefer", "to_unpaired"]
