"""Padding collator: one sequence per row, padding masked by *position*, never by token id.

Why position: many tokenizers reuse their EOS as the pad token (SmolLM2: pad = eos =
``<|im_end|>``). A collator that finds padding by comparing ids with `pad_token_id` would also
mask every real ``<|im_end|>``, the end-of-turn token the model must learn to emit, and the
model would never learn to stop. Here padding is exactly the positions beyond each sequence's
length, whatever ids they hold.

    >>> batch = pad_collate([[5, 2], [7]], pad_token_id=2)
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[5, 2], [7, 2]], [[1, 1], [1, 0]], [[5, 2], [7, -100]])
"""
from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch

from alignkit.data.encode import IGNORE_INDEX, EncodedExample
from alignkit.errors import ConfigError


def _ids_and_labels(example: Any, index: int) -> tuple[list[int], list[int]]:
    if isinstance(example, EncodedExample):
        ids, labels = example.input_ids, example.labels
    elif isinstance(example, Mapping):
        if "input_ids" not in example:
            raise ValueError(f"example {index} has no 'input_ids'")
        ids = list(example["input_ids"])
        labels = list(example["labels"]) if example.get("labels") is not None else list(ids)
    else:  # a bare sequence of ids, e.g. a prompt for generation
        ids = list(example)
        labels = list(ids)
    if len(ids) == 0:
        raise ValueError(f"example {index} has no tokens")
    if len(labels) != len(ids):
        raise ValueError(f"example {index}: {len(ids)} input_ids but {len(labels)} labels")
    return list(ids), list(labels)


def pad_collate(examples: Sequence[EncodedExample | Mapping[str, Any] | Sequence[int]],
                pad_token_id: int, *, padding_side: Literal["right", "left"] = "right",
                pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Pad a batch to a common length T.

    Examples are `EncodedExample`s, mappings with 'input_ids' (and optionally 'labels'), or
    bare id lists; missing labels default to the ids. Returns (B, T) int64 tensors:
    input_ids, attention_mask (1 = real token), labels (IGNORE_INDEX on padding),
    position_ids (0..n-1 over the real tokens, 0 on padding). Use padding_side='left' for
    batched generation so every prompt ends at the last column.
    """
    if padding_side not in ("right", "left"):
        raise ConfigError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    if pad_token_id is None:
        raise ConfigError("pad_token_id is None; any id works (padding is masked by position), "
                          "e.g. the EOS id")
    if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int)
                                           or pad_to_multiple_of < 1):
        raise ConfigError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
    if len(examples) == 0:
        raise ValueError("cannot collate an empty batch")
    pairs = [_ids_and_labels(e, i) for i, e in enumerate(examples)]
    T = max(len(ids) for ids, _ in pairs)
    if pad_to_multiple_of:
        T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    B = len(pairs)
    input_ids = torch.full((B, T), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    for b, (ids, labs) in enumerate(pairs):
        n = len(ids)
        where = slice(0, n) if padding_side == "right" else slice(T - n, T)
        input_ids[b, where] = torch.tensor(ids, dtype=torch.long)
        attention_mask[b, where] = 1
        labels[b, where] = torch.tensor(labs, dtype=torch.long)
        position_ids[b, where] = torch.arange(n)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "position_ids": position_ids}


__all__ = ["pad_collate"]
