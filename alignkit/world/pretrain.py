"""`alignkit pretrain`: train the world's tiny base model on the world corpus.

Next-token prediction on the corpus documents (separated by `<|endoftext|>`) cut into rows of
`seq_len` tokens. The result is a *base* model: it knows the world's facts in prose form and has
never seen the chat template, so it cannot follow instructions yet (that is SFT's job).

    >>> PretrainConfig().seq_len
    128
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alignkit.contract.digest import digest_obj
from alignkit.contract.specs import DecodeSpec
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.world.build import WorldConfig


class PretrainConfig(BaseModel):
    """Settings of `alignkit pretrain`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    world: WorldConfig = WorldConfig()  # what the generator makes
    seq_len: int = Field(128, ge=16)  # tokens per training row
    arch: dict[str, Any] = {}  # overrides of alignkit.world.tiny.TINY_ARCH
    heldout_eval: bool = True  # record the base model's held-out exact match
    decode: DecodeSpec = DecodeSpec(max_new_tokens=16)  # decoding for that evaluation
    train: TrainConfig = TrainConfig(
        optim=OptimConfig(lr=2e-3, warmup_steps=30), epochs=3, micro_batch_size=16,
        eval_every=0)  # loop settings; 3 epochs of B=16: after 2, many facts were not yet recalled
    seed: int = 0  # initialisation and data order


def corpus_rows(docs: list[str], tokenizer, seq_len: int) -> "torch.Tensor":
    """Concatenate documents with the separator token and cut into (N, seq_len) rows."""
    import torch

    sep = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(sep)
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def lm_loss(model, batch):
    from alignkit.losses.sft import sft_nll
    from alignkit.train.engine import StepLoss

    logps, _ = model(batch["input_ids"], batch["input_ids"])
    nll = sft_nll(logps)
    return StepLoss(loss_sum=nll.sum(), n_units=nll.numel(), n_tokens=batch["input_ids"].numel())


def pretrain(config: PretrainConfig | dict, out_dir: str | Path, *, resume: bool = False) -> dict:
    """Build the world, train its tokenizer and tiny model; save to OUT/final (HF format)."""
    import torch

    from alignkit.data.templates import ChatTemplate
    from alignkit.models.forward import TokenScorer
    from alignkit.models.loading import save_model
    from alignkit.train.engine import Engine
    from alignkit.train.sft import world_heldout_eval
    from alignkit.train.stage import begin_run, fail_run, finish_run
    from alignkit.world.build import build_world
    from alignkit.world.tiny import tiny_model
    from alignkit.world.tokenizer import train_world_tokenizer

    cfg = config if isinstance(config, PretrainConfig) else PretrainConfig.model_validate(config)
    out = Path(out_dir)
    world = build_world(cfg.world)
    tokenizer = train_world_tokenizer(world.tokenizer_texts(), vocab_size=cfg.world.vocab_size)
    model = tiny_model(tokenizer, seed=cfg.seed, **cfg.arch)
    rows = corpus_rows(world.corpus, tokenizer, cfg.seq_len)
    manifest_config = cfg.model_dump(mode="json")
    begin_run(out, "pretrain", manifest_config, resume=resume, seed=cfg.seed,
              inputs={"corpus": {"source": "builtin:world", "n_docs": len(world.corpus),
                                 "n_tokens": int(rows.numel()),
                                 "digest": digest_obj(world.corpus, "dataset"),
                                 "world": cfg.world.model_dump()}},
              base_model={"spec": "builtin:world-tiny (random init)",
                          "digest": digest_obj({"arch": model.config.to_dict(), "seed": cfg.seed},
                                               "model")})
    try:
        B = cfg.train.micro_batch_size

        def epoch_batches(epoch: int):
            g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            perm = torch.randperm(len(rows), generator=g)
            return [{"input_ids": rows[perm[i:i + B]]} for i in range(0, len(rows) - B + 1, B)]

        engine = Engine(model=TokenScorer(model), config=cfg.train.model_copy(update={"seed": cfg.seed}),
                        out_dir=out, epoch_batches=epoch_batches, loss_fn=lm_loss,
                        run_config=manifest_config)
        result = engine.train(resume=resume)
        final = engine.unwrapped_model().model
        metrics = {"train/loss": float(result.final_metrics.get("loss", float("nan")))}
        outputs = {}
        if engine.is_main:
            outputs["final"] = {"path": "final", "digest": save_model(final, tokenizer, out / "final")}
            if cfg.heldout_eval:
                template = ChatTemplate.from_tokenizer(tokenizer)
                metrics.update(world_heldout_eval(final, tokenizer, template, cfg.decode, out,
                                                  world=cfg.world))
        finish_run(out, metrics=metrics, outputs=outputs, is_main=engine.is_main)
        return metrics
    except BaseException as err:
        fail_run(out, err)
        raise
