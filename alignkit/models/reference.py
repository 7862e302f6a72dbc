"""Reference-policy log-probs for preference objectives: three strategies, one interface.

DPO-style losses compare the policy with a fixed reference π_ref (normally the starting
model). How π_ref's per-sequence log-probs are obtained is a memory/compute trade-off, chosen
in config (`ReferenceStrategy`):

- ``frozen_copy``: a deep copy of the starting model, frozen, scored on every micro-batch
  (one extra forward per step; twice the weights in memory). Works for full fine-tuning.
- ``adapters_disabled``: under LoRA the base weights never change, so the policy with its
  adapters switched off *is* the reference: no second model in memory (one extra forward).
- ``precomputed``: every training sequence is scored once before training (with the starting
  model, which is the reference) and the per-sequence log-probs are cached on disk, keyed by
  sha256 of (reference model digest, dataset digest, template digest, max_length); a later run
  with the same key reads the file and runs no reference forward at all. New sequences (e.g.
  the policy's own samples for the KL estimate) need a model: `Reference.score` loads one
  through the `loader` given, uses it and drops it.

Sequences travel in batches built by `collate_sequences`, which records for every token the
index of the sequence it belongs to (``seq_ids``; -1 = padding), for padded and packed layouts
alike, so `sequence_logps` sums token log-probs per sequence the same way for both
(`*_logps` = summed over response tokens, DESIGN.md).

Cache file format: ``CACHE_DIR/<key>.safetensors`` with one float32 tensor ``logps`` (N,) in
the order of the examples given, and ``CACHE_DIR/<key>.json`` with the key's parts and N
(a sidecar for people; the key alone decides reuse).

    >>> import torch
    >>> from alignkit.data.encode import EncodedExample
    >>> batch = collate_sequences([EncodedExample([5, 6, 7], [-100, 6, 7]),
    ...                            EncodedExample([5, 8], [-100, 8])], pad_token_id=0)
    >>> batch["seq_ids"].tolist(), batch["n_seqs"]
    ([[0, 0, 0], [1, 1, -1]], 2)
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from alignkit.errors import CheckpointError, ConfigError

ReferenceStrategy = Literal["frozen_copy", "adapters_disabled", "precomputed"]
STRATEGIES: tuple[str, ...] = ("frozen_copy", "adapters_disabled", "precomputed")
DEFAULT_CACHE_DIR = "~/.cache/alignkit/ref_logps"


# ----------------------------------------------------------------------------- batches

def collate_sequences(examples: Sequence[Any], *, pad_token_id: int, packing: bool = False,
                      pack_length: int | None = None) -> dict[str, Any]:
    """One batch holding `examples` (EncodedExample) as sequences 0..S-1, in order.

    Padded (right padding, one sequence per row) or packed (best-fit decreasing rows with a
    block-diagonal mask). Returns input_ids, labels, attention_mask, position_ids, seq_ids
    (B, T) with -1 on padding, and n_seqs = S.
    """
    from alignkit.data.collate import pad_collate
    from alignkit.data.packing import collate_packed, pack

    if not examples:
        raise ValueError("cannot collate an empty list of sequences")
    if packing:
        longest = max(len(e.input_ids) for e in examples)
        batch = collate_packed(pack(examples, max(pack_length or longest, longest)),
                               pad_token_id=pad_token_id)
    else:
        batch = pad_collate(examples, pad_token_id)
        rows = torch.arange(len(examples))[:, None].expand_as(batch["input_ids"])
        batch["seq_ids"] = torch.where(batch["attention_mask"].bool(), rows, -1)
    batch["n_seqs"] = len(examples)
    return batch


def sequence_logps(scorer: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed response log-probs and response lengths, each (S,).

    `scorer` is an `alignkit.models.forward.TokenScorer` (or anything with its call signature);
    `batch` comes from `collate_sequences`. The token predicted at t+1 belongs to the sequence
    of t+1 (`seq_ids[:, 1:]`); a packed sequence's first label is -100, so no token is ever
    credited across a sequence boundary.
    """
    token_logps, selected = scorer(batch["input_ids"], batch["labels"],
                                   attention_mask=batch["attention_mask"],
                                   position_ids=batch["position_ids"])  # (N,), (B, T-1)
    owner = batch["seq_ids"][:, 1:][selected]  # (N,) sequence of each scored token
    n = int(batch["n_seqs"])
    # The same sum as alignkit.data.packing.sequence_sums, over the scored tokens only.
    logps = torch.zeros(n, dtype=token_logps.dtype, device=token_logps.device)
    logps = logps.index_add(0, owner, token_logps)
    lengths = torch.zeros(n, dtype=torch.long, device=owner.device).index_add(
        0, owner, torch.ones_like(owner))
    if bool((lengths == 0).any()):
        raise ValueError(f"sequences {(lengths == 0).nonzero().flatten().tolist()} have no "
                         "response token (truncated away?)")
    return logps, lengths


# ----------------------------------------------------------------------------- the cache

def reference_cache_key(*, model_digest: str, dataset_digest: str, template_digest: str,
                        max_length: int | None, extra: dict[str, Any] | None = None) -> str:
    """sha256 hex of the canonical JSON of the key parts (what decides reuse).

        >>> k = reference_cache_key(model_digest="mdl-a", dataset_digest="ds-b",
        ...                         template_digest="tpl-c", max_length=64)
        >>> len(k), k == reference_cache_key(model_digest="mdl-a", dataset_digest="ds-b",
        ...                                  template_digest="tpl-c", max_length=65)
        (64, False)
    """
    parts = {"model": model_digest, "dataset": dataset_digest, "template": template_digest,
             "max_length": max_length, "extra": extra or {}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def resolve_cache_dir(cache_dir: str | Path | None, out_dir: str | Path | None = None) -> Path:
    """None -> DEFAULT_CACHE_DIR; a relative path is taken relative to `out_dir` when given."""
    p = Path(os.path.expanduser(str(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR)))
    if not p.is_absolute() and out_dir is not None:
        p = Path(out_dir) / p
    return p


@torch.no_grad()
def score_examples(scorer: nn.Module, examples: Sequence[Any], *, pad_token_id: int,
                   batch_size: int = 32, packing: bool = False,
                   pack_length: int | None = None) -> torch.Tensor:
    """(N,) float32 summed response log-probs of every example, scored in chunks, in order."""
    model = scorer.model if hasattr(scorer, "model") else scorer
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for start in range(0, len(examples), batch_size):
            batch = collate_sequences(examples[start:start + batch_size], pad_token_id=pad_token_id,
                                      packing=packing, pack_length=pack_length)
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            out.append(sequence_logps(scorer, batch)[0].float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def cached_reference_logps(compute: Callable[[], torch.Tensor], *, key: str, n: int,
                           cache_dir: str | Path, meta: dict[str, Any] | None = None
                           ) -> tuple[torch.Tensor, bool]:
    """(logps (n,), reused): read CACHE_DIR/<key>.safetensors, or call `compute()` and write it.

    Written atomically (temp file + rename). A file whose length is not `n` is an error (the
    same key must mean the same sequences).
    """
    from safetensors.torch import load_file, save_file

    d = Path(cache_dir)
    file = d / f"{key}.safetensors"
    if file.is_file():
        try:
            logps = load_file(str(file))["logps"]
        except Exception as err:  # a torn or foreign file: say which, do not guess
            raise CheckpointError(f"reference log-prob cache {file} is unreadable: {err}") from None
        if logps.shape != (n,):
            raise CheckpointError(f"reference log-prob cache {file} holds {tuple(logps.shape)} "
                                  f"values, expected ({n},); delete it to recompute")
        return logps, True
    logps = compute().float().contiguous()
    if logps.shape != (n,):
        raise ValueError(f"compute() returned shape {tuple(logps.shape)}, expected ({n},)")
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    save_file({"logps": logps}, str(tmp))
    os.replace(tmp, file)
    (d / f"{key}.json").write_text(json.dumps({"key": key, "n": n, **(meta or {})},
                                              indent=2, sort_keys=True))
    return logps, False


# ----------------------------------------------------------------------------- the strategies

class Reference:
    """Reference per-sequence log-probs for batches from `collate_sequences`.

    Build with one of the class methods; `batch_logps(batch)` gives (S,) for a training batch
    (for ``precomputed`` the batch must carry ``example_ids`` (S,), the sequences' indices in
    the precomputed table), `score(batch)` for any batch (new sequences). Both run without grad.
    """

    def __init__(self, strategy: str, *, model: nn.Module | None = None,
                 table: torch.Tensor | None = None,
                 loader: Callable[[], nn.Module] | None = None, padding_free: bool = True):
        if strategy not in STRATEGIES:
            raise ConfigError(f"reference strategy {strategy!r} is unknown; choose one of {STRATEGIES}")
        self.strategy = strategy
        self.model = model  # frozen copy, or the policy itself (adapters_disabled)
        self.table = table  # (N,) precomputed
        self.loader = loader
        self.padding_free = padding_free
        self.forward_calls = 0  # reference forwards run (tests and logs read it)

    @classmethod
    def frozen_copy(cls, model: nn.Module, padding_free: bool = True) -> "Reference":
        import copy

        frozen = copy.deepcopy(model).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        return cls("frozen_copy", model=frozen, padding_free=padding_free)

    @classmethod
    def adapters_disabled(cls, policy: nn.Module, padding_free: bool = True) -> "Reference":
        from alignkit.models.lora import is_peft_model

        if not is_peft_model(policy):
            raise ConfigError("reference 'adapters_disabled' needs LoRA (set `lora:`); for full "
                              "fine-tuning use 'frozen_copy' or 'precomputed'")
        return cls("adapters_disabled", model=policy, padding_free=padding_free)

    @classmethod
    def precomputed(cls, table: torch.Tensor, loader: Callable[[], nn.Module] | None = None,
                    padding_free: bool = True) -> "Reference":
        return cls("precomputed", table=table, loader=loader, padding_free=padding_free)

    @torch.no_grad()
    def _forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        from alignkit.models.forward import TokenScorer

        was_training = model.training
        model.eval()  # no dropout in the reference
        try:
            self.forward_calls += 1
            return sequence_logps(TokenScorer(model, padding_free=self.padding_free), batch)[0]
        finally:
            model.train(was_training)

    def score(self, batch: dict[str, Any]) -> torch.Tensor:
        """(S,) reference log-probs of any sequences (runs a reference forward)."""
        if self.strategy == "frozen_copy":
            return self._forward(self.model, batch)
        if self.strategy == "adapters_disabled":
            from alignkit.models.lora import disabled_adapters

            with disabled_adapters(self.model):
                return self._forward(self.model, batch)
        if self.loader is None:
            raise ConfigError("the precomputed reference has no model to score new sequences; "
                              "pass `loader`")
        model = self.loader()
        device = batch["input_ids"].device
        try:
            return self._forward(model.to(device), batch)
        finally:
            del model

    def batch_logps(self, batch: dict[str, Any]) -> torch.Tensor:
        """(S,) reference log-probs of a training batch (a table lookup when precomputed)."""
        if self.strategy != "precomputed":
            return self.score(batch)
        ids = batch.get("example_ids")
        if ids is None:
            raise ValueError("a batch for the precomputed reference needs `example_ids` (S,)")
        return self.table.to(ids.device)[ids]


__all__ = ["DEFAULT_CACHE_DIR", "STRATEGIES", "Reference", "ReferenceStrategy",
           "cached_reference_logps", "collate_sequences", "reference_cache_key",
           "resolve_cache_dir", "score_examples", "sequence_logps"]
