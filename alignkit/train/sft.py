"""The SFT stage: instruction tuning with a response-only loss.

Objective: the mean negative log-likelihood of the assistant tokens (each assistant turn's
content and its end-of-turn token), averaged **per token over the whole optimizer step**
(see `alignkit.losses.sft.sft_nll` for why not per sequence), optionally weighted per category.

    >>> cfg = SFTConfig(model="runs/pretrain/final", data="builtin:world")
    >>> cfg.packing, cfg.train_on
    (True, 'all')

Python: `alignkit.sft(config, out_dir)`; command line: `alignkit sft --config CFG --out DIR`.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alignkit.contract.digest import digest_obj
from alignkit.contract.specs import DecodeSpec
from alignkit.errors import ConfigError, DataError
from alignkit.models.lora import LoraSpec
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.world.build import WorldConfig

WORLD_DATA = "builtin:world"


# Repeat factors of the world's copy families (see SFTConfig.sampling_weights).
WORLD_SAMPLING_WEIGHTS = {"first_item": 4.0, "last_item": 4.0, "repeat_twice": 4.0}


class SFTConfig(BaseModel):
    """Settings of `alignkit sft`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str = "builtin:world-tiny"  # HF dir, .gguf file, hub id or builtin:NAME
    data: str = WORLD_DATA  # training file (jsonl/json/csv/parquet) or builtin:world
    format: str | None = None  # force the file format (jsonl|json|csv|parquet|hh)
    validation: str | None = None  # validation file; None = hold out `val_fraction` of data
    val_fraction: float = Field(0.05, ge=0, lt=1)  # share of rows held out for the val curve
    template: str | None = None  # None = the tokenizer's own; or chatml|llama2|... or a .jinja path
    train_on: Literal["all", "last"] = "all"  # train on every assistant turn, or only the last
    max_length: int = Field(512, ge=8)  # truncate longer conversations to this many tokens
    packing: bool = True  # pack each micro-batch into padding-free rows (same loss, faster)
    pack_length: int = Field(512, ge=8)  # tokens per packed row
    lora: LoraSpec | None = None  # LoRA adapters instead of full fine-tuning
    category_field: str = "category"  # row field naming a class (world rows: "family")
    category_weights: dict[str, float] = {}  # per-category loss weight (default 1.0)
    # Per-category repeat factor per epoch. None = 1.0 everywhere, except on builtin:world data,
    # where WORLD_SAMPLING_WEIGHTS applies: the copy families are skills SFT has to teach (more
    # steps help them) while fact families lose held-out accuracy with more steps (measured,
    # benchmarks/RESULTS.md). {} = 1.0 everywhere on any data.
    sampling_weights: dict[str, float] | None = None
    on_bad_rows: Literal["error", "skip"] = "error"  # skip = quarantine bad rows and count them
    world: WorldConfig = WorldConfig()  # the world that builtin:world data comes from
    safety_per_slice: int = Field(0, ge=0)  # builtin:world only: add this many policy rows (refusals,
    # look-alike answers, abstentions, corrections) per safety slice; 0 = task rows only
    cai_teaching_per_slice: int = Field(0, ge=0)  # builtin:world only: add the rows that teach
    # Constitutional AI's critique, revision and A/B comparison (alignkit.cai.world.teaching_rows,
    # constitution builtin:world) built on this many train-split world safety rows per slice
    # (unsafe, jailbreak, look-alike: 6 rows each); each trains on its last assistant turn only
    replay_docs: int = Field(2000, ge=0)  # builtin:world only: mix this many pretraining documents
    # in as plain language-modelling rows (category "replay"), so SFT steps that teach skills do
    # not overwrite facts the model knows from pretraining (rehearsal; cf. PPO-ptx, Ouyang et al.
    # 2022). 0 = none.
    replay_weight: float = Field(0.2, ge=0)  # loss weight of replayed tokens (category_weights
    # may override it under "replay"): a document has many more trained tokens than a reply
    heldout_eval: bool = True  # measure world held-out exact match (builtin:world only)
    decode: DecodeSpec = DecodeSpec(max_new_tokens=16)  # decoding for the held-out evaluation
    train: TrainConfig = TrainConfig(
        optim=OptimConfig(lr=3e-4, warmup_steps=20), epochs=4, micro_batch_size=32,
        eval_every=50)  # loop settings
    seed: int = 0  # data order, split and initialisation


# ------------------------------------------------------------------------------- data

def _rows_to_conversations(records: list[dict], kind: str, source: str) -> list[dict]:
    rows = []
    for i, r in enumerate(records, start=1):
        if kind == "messages":
            msgs = r["messages"]
        elif kind == "prompt_completion":
            prompt = r["prompt"] if isinstance(r["prompt"], list) else [
                {"role": "user", "content": r["prompt"]}]
            completion = r["completion"] if isinstance(r["completion"], list) else [
                {"role": "assistant", "content": r["completion"]}]
            msgs = prompt + completion
        else:
            raise DataError(f"SFT needs conversational rows (messages or prompt/completion), "
                            f"got kind {kind!r}", file=source, line=i)
        rows.append({**{k: v for k, v in r.items() if k not in ("messages", "prompt",
                                                               "completion")}, "messages": msgs})
    return rows


def load_sft_rows(cfg: SFTConfig) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(train rows, validation rows, manifest input entry)."""
    rng = random.Random(cfg.seed)
    if cfg.data == WORLD_DATA:
        from alignkit.world.build import build_world

        world = build_world(cfg.world)
        rows = [dict(r) for r in world.sft]
        if cfg.safety_per_slice:
            from alignkit.world.safety import safety_sft_rows

            rows += safety_sft_rows(world.facts, seed=cfg.world.seed, split="train",
                                    n_per_slice=cfg.safety_per_slice)
        if cfg.replay_docs:
            docs = random.Random(f"replay-{cfg.seed}").sample(
                world.corpus, min(cfg.replay_docs, len(world.corpus)))
            rows += [{"text": d, "category": "replay"} for d in docs]
        teaching = cai_teaching_rows(cfg) if cfg.cai_teaching_per_slice else None
        if teaching is not None:
            rows += teaching[0]
        entry = {"source": WORLD_DATA, "digest": digest_obj(rows, "dataset"), "n_rows": len(rows),
                 "world": world.config.model_dump()}
        if teaching is not None:
            entry["cai_teaching"] = {"n_rows": len(teaching[0]),
                                     "per_slice": cfg.cai_teaching_per_slice,
                                     "constitution": teaching[1]}
    else:
        from alignkit.data.readers import read_records

        quarantine = Path(cfg.data).with_suffix(".quarantine.jsonl") if cfg.on_bad_rows == "skip" else None
        res = read_records(cfg.data, format=cfg.format, on_bad_rows=cfg.on_bad_rows,
                           quarantine_path=quarantine)
        rows = _rows_to_conversations(res.records, res.kind, cfg.data)
        entry = res.manifest_entry()
    if cfg.validation:
        from alignkit.data.readers import read_records

        val = read_records(cfg.validation, format=cfg.format)
        return rows, _rows_to_conversations(val.records, val.kind, cfg.validation), entry
    order = list(range(len(rows)))
    rng.shuffle(order)
    n_val = int(len(rows) * cfg.val_fraction)
    val = [rows[i] for i in order[:n_val]]
    train = [rows[i] for i in order[n_val:]]
    return train, val, entry


def cai_teaching_rows(cfg: SFTConfig) -> tuple[list[dict], dict[str, Any]]:
    """(rows, constitution manifest entry): the CAI teaching rows of `cfg.cai_teaching_per_slice`.

    Each row is a conversation whose earlier assistant turns are *given* replies (compliance
    stubs among them) and whose last assistant turn is the target, so it carries
    `train_on: "last"` (honoured per row by `_encode_all`) and `source: "cai-teaching"`; its
    `category` is the policy category, `task` says critique / revision / comparison.
    """
    from alignkit.cai.constitution import load_constitution
    from alignkit.cai.prompts import PromptSpec
    from alignkit.cai.world import WORLD, WorldRows, teaching_rows, world_rows

    constitution = load_constitution(WORLD)
    source = world_rows(WorldRows(n_per_slice=cfg.cai_teaching_per_slice, split="train",
                                  world=cfg.world), seed=cfg.seed)
    rows = teaching_rows(source, constitution, PromptSpec(few_shot=0), seed=cfg.seed)
    return ([{**r, "train_on": "last", "source": "cai-teaching"} for r in rows],
            constitution.manifest_entry(WORLD))


def _policy_entry() -> dict[str, Any]:
    from alignkit.world.policy import load_policy

    p = load_policy()
    return {"name": p.id, "version": p.version, "digest": p.digest}


# ------------------------------------------------------------------------------- batches

def _encode_all(rows, tokenizer, template, cfg: SFTConfig):
    from alignkit.data.encode import encode_messages, encode_text

    out = []
    for i, r in enumerate(rows, start=1):
        if "messages" in r:
            train_on = r.get("train_on", cfg.train_on)  # a row may override the config
            if train_on not in ("all", "last"):
                raise DataError(f"train_on must be 'all' or 'last', got {train_on!r}",
                                line=i, field="train_on")
            ex = encode_messages(tokenizer, template, r["messages"], train_on=train_on,
                                 max_length=cfg.max_length, line=i)
        else:  # a replayed pretraining document: every token is trained
            ex = encode_text(tokenizer, r["text"], max_length=cfg.max_length, line=i)
        category = r.get(cfg.category_field, r.get("family"))
        default = cfg.replay_weight if category == "replay" else 1.0
        out.append((ex, float(cfg.category_weights.get(category, default)), category))
    return out


def make_batches(encoded, *, micro_batch_size: int, packing: bool, pack_length: int,
                 pad_token_id: int, rng: random.Random):
    """Shuffle, group into micro-batches of `micro_batch_size` examples, collate.

    With packing, each micro-batch is packed (best-fit decreasing) into padding-free rows:
    the examples per step and hence the loss are the same as without packing.
    """
    import torch

    from alignkit.data.collate import pad_collate
    from alignkit.data.packing import collate_packed, pack

    order = list(range(len(encoded)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order) - micro_batch_size + 1, micro_batch_size):
        members = [encoded[i] for i in order[start:start + micro_batch_size]]
        examples = [ex for ex, _, _ in members]
        weights = torch.tensor([w for _, w, _ in members])
        if packing:
            batch = collate_packed(pack(examples, pack_length), pad_token_id=pad_token_id)
            token_weights = torch.where(batch["seq_ids"] >= 0,
                                        weights[batch["seq_ids"].clamp(min=0)], 0.0)
            batch["n_tokens"] = int((batch["seq_ids"] >= 0).sum())  # real tokens, for tokens/s
            batch.pop("seq_ids")
        else:
            batch = pad_collate(examples, pad_token_id)
            token_weights = weights[:, None].expand_as(batch["input_ids"]).clone()
        batch["token_weights"] = token_weights
        batches.append(batch)
    return batches


def sft_loss(model, batch):
    """StepLoss of one micro-batch: weighted NLL summed over response tokens."""
    from alignkit.losses.sft import sft_nll
    from alignkit.train.engine import StepLoss

    logps, selected = model(batch["input_ids"], batch["labels"],
                            attention_mask=batch["attention_mask"],
                            position_ids=batch["position_ids"])
    weights = batch["token_weights"][:, 1:][selected]
    nll = sft_nll(logps, weights)
    n_tokens = batch.get("n_tokens")
    if n_tokens is None:  # padded batch: the 2-D attention mask marks the real tokens
        n_tokens = int(batch["attention_mask"].sum())
    return StepLoss(loss_sum=nll.sum(), n_units=weights.sum(), n_tokens=n_tokens)


# ------------------------------------------------------------------------------- stage

def sft(config: SFTConfig | dict, out_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Run the SFT stage; returns the summary metrics written to the manifest.

    Writes OUT/manifest.json, OUT/metrics.jsonl, OUT/checkpoints/, OUT/final/ (HF format) and,
    for the built-in world, OUT/eval.json + OUT/samples.jsonl.
    """
    import torch

    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.forward import TokenScorer
    from alignkit.models.loading import load_model, save_model
    from alignkit.train.engine import Engine
    from alignkit.train.stage import begin_run, fail_run, finish_run, parent_of

    cfg = config if isinstance(config, SFTConfig) else SFTConfig.model_validate(config)
    out = Path(out_dir)
    loaded = load_model(cfg.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    template = resolve_chat_template(tokenizer, cfg.template)
    train_rows, val_rows, data_entry = load_sft_rows(cfg)
    encoded = _encode_all(train_rows, tokenizer, template, cfg)
    val_encoded = _encode_all(val_rows, tokenizer, template, cfg) if val_rows else []
    sampling = cfg.sampling_weights
    if sampling is None:
        sampling = WORLD_SAMPLING_WEIGHTS if cfg.data == WORLD_DATA else {}
    if sampling:
        encoded = _resample(encoded, sampling, random.Random(cfg.seed))
    if len(encoded) < cfg.train.micro_batch_size:
        raise ConfigError(f"{len(encoded)} training examples but micro_batch_size is "
                          f"{cfg.train.micro_batch_size}")

    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    is_main = accelerator.is_main_process  # only rank 0 writes manifests, checkpoints, models
    manifest_config = cfg.model_dump(mode="json")
    begin_run(out, "sft", manifest_config, resume=resume, is_main=is_main, seed=cfg.seed,
              inputs={"train": data_entry}, base_model={"spec": cfg.model, "digest": loaded.digest},
              template={"name": template.name, "digest": template.digest},
              decode={**cfg.decode.model_dump(mode="json"), "digest": cfg.decode.digest},
              policy=_policy_entry() if (cfg.safety_per_slice or cfg.cai_teaching_per_slice)
              and cfg.data == WORLD_DATA else None,
              parents=parent_of(cfg.model))
    try:
        if cfg.lora is not None:
            from alignkit.models.lora import apply_lora

            model = apply_lora(model, cfg.lora)
        model.train()
        scorer = TokenScorer(model)
        pad = tokenizer.pad_token_id
        train_cfg = cfg.train.model_copy(update={"seed": cfg.seed})

        cache: dict[int, list] = {}

        def epoch_batches(epoch: int):
            if epoch not in cache:
                cache.clear()
                cache[epoch] = make_batches(
                    encoded, micro_batch_size=cfg.train.micro_batch_size, packing=cfg.packing,
                    pack_length=cfg.pack_length, pad_token_id=pad,
                    rng=random.Random(f"{cfg.seed}-{epoch}"))
            return cache[epoch]

        val_batches = make_batches(val_encoded, micro_batch_size=min(64, len(val_encoded)) or 1,
                                   packing=cfg.packing, pack_length=cfg.pack_length,
                                   pad_token_id=pad, rng=random.Random(0)) if val_encoded else []

        def eval_fn(m) -> dict[str, float]:
            if not val_batches:
                return {}
            scorer_eval = m if isinstance(m, TokenScorer) else TokenScorer(m)
            total, count = 0.0, 0.0
            for b in val_batches:
                step = sft_loss(scorer_eval, b)
                total += float(step.loss_sum)
                count += float(step.n_units)
            return {"loss": total / max(count, 1e-9)}

        engine = Engine(model=scorer, config=train_cfg, out_dir=out, epoch_batches=epoch_batches,
                        loss_fn=sft_loss, eval_fn=eval_fn, accelerator=accelerator,
                        run_config=manifest_config)
        result = engine.train(resume=resume)
        final = engine.unwrapped_model().model
        metrics = {k: float(v) for k, v in result.final_metrics.items()
                   if isinstance(v, (int, float)) and k not in ("step", "epoch")}
        outputs = {}
        if engine.is_main:
            digest = save_model(final, tokenizer, out / "final")
            outputs["final"] = {"path": "final", "digest": digest}
            if cfg.heldout_eval and cfg.data == WORLD_DATA:
                metrics.update(world_heldout_eval(final, tokenizer, template, cfg.decode, out,
                                                  world=cfg.world))
        finish_run(out, metrics=metrics, outputs=outputs, is_main=engine.is_main)
        return metrics
    except BaseException as err:
        fail_run(out, err, is_main=is_main)
        raise


def _resample(encoded, weights: dict[str, float], rng: random.Random):
    """Repeat each example `weight` times (fractional part drawn at random)."""
    out = []
    for item in encoded:
        w = float(weights.get(item[2], 1.0))
        copies = int(w) + (1 if rng.random() < w - int(w) else 0)
        out.extend([item] * copies)
    return out


def world_heldout_eval(model, tokenizer, template, decode: DecodeSpec, out: Path, *,
                       world: WorldConfig = WorldConfig()) -> dict[str, float]:
    """Exact match on the world's held-out split (the `world_tasks` suite); writes OUT/eval.json
    and OUT/samples.jsonl. Returns manifest metrics: `heldout/exact_match` and per family."""
    from alignkit.evals.suite import EvalContext, run_suites

    report = run_suites(EvalContext(model, tokenizer, template, decode, world=world),
                        ["world_tasks"], out)
    em = report["metrics"]["world_tasks/exact_match"]
    metrics = {"heldout/exact_match": em["value"]}
    metrics.update({f"heldout/exact_match/{k}": v["value"]
                    for k, v in em["slices"].get("family", {}).items()})
    return metrics
