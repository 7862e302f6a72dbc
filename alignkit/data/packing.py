"""Padding-free packing: several sequences per row, attention that cannot cross them.

`best_fit_decreasing` assigns sequences to rows of a fixed capacity; `pack` concatenates them;
`collate_packed` turns rows into tensors with

- ``position_ids`` restarting at 0 for every sequence (RoPE sees each as if alone),
- a boolean block-diagonal causal ``attention_mask`` of shape (B, 1, L, L), True = may attend,
  which Hugging Face models pass unchanged to SDPA/eager attention (a 4D mask is used as is),
- ``seq_ids`` naming the example each token came from (-1 for padding), so per-sequence sums
  (e.g. summed log-probs, `*_logps`) can be recovered with `sequence_sums`.

Tail padding (only at the end of a row, never between sequences) forms its own causal block
with labels -100, so no attention row is empty. The first token of every sequence gets label
-100: nothing in its own sequence predicts it, exactly as when the sequence is alone (the
shifted loss never uses label 0). With these three pieces, the packed forward pass gives every
sequence the same logits as an unpacked one.

The mask costs B·L² bytes; for FlashAttention-2 (no 4D masks) pass `position_ids` only.

    >>> best_fit_decreasing([5, 3, 4, 2, 6, 1], 8)
    [[4, 3], [0, 1], [2, 5]]
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import torch

from alignkit.data.encode import IGNORE_INDEX, EncodedExample


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bin packing by best-fit decreasing: indices of `lengths` per bin.

    Items go longest first (ties: lower index first) into the open bin with the least room that
    still fits them (ties: the older bin), else into a new bin. Each bin lists its indices in
    placement order. Uses at most 11/9·OPT + 4 bins (D. S. Johnson, "Near-optimal bin packing
    algorithms", MIT PhD thesis, 1973). Sorted free-space list: O(n log n) searches.

    Raises ValueError for a length < 1 or > capacity (the caller truncates first).
    """
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
    for i, n in enumerate(lengths):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"sequence {i} has length {n!r}; lengths must be positive integers")
        if n > capacity:
            raise ValueError(f"sequence {i} has length {n} > capacity {capacity}; truncate it first")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[tuple[int, int]] = []  # sorted (free space, bin index) of bins that are not full
    for i in order:
        n = lengths[i]
        j = bisect.bisect_left(room, (n, -1))  # the least free space >= n
        if j == len(room):
            b, free = len(bins), capacity
            bins.append([])
        else:
            free, b = room.pop(j)
        bins[b].append(i)
        if free - n > 0:
            bisect.insort(room, (free - n, b))
    return bins


@dataclass(frozen=True)
class PackedRow:
    """Several sequences laid end to end (no padding between them)."""

    input_ids: list[int]  # (L,)
    labels: list[int]  # (L,) first token of each sequence is IGNORE_INDEX
    position_ids: list[int]  # (L,) 0..n-1 per sequence
    seq_ids: list[int]  # (L,) index of the example in the list given to `pack`

    def __len__(self) -> int:
        return len(self.input_ids)


def pack(examples: Sequence[EncodedExample], max_length: int) -> list[PackedRow]:
    """Pack `examples` into rows of at most `max_length` tokens (best-fit decreasing).

        >>> rows = pack([EncodedExample([1, 2], [1, 2]), EncodedExample([3, 4, 5], [-100, 4, 5])], 8)
        >>> rows[0].input_ids, rows[0].labels, rows[0].position_ids, rows[0].seq_ids
        ([3, 4, 5, 1, 2], [-100, 4, 5, -100, 2], [0, 1, 2, 0, 1], [1, 1, 1, 0, 0])
    """
    bins = best_fit_decreasing([len(e.input_ids) for e in examples], max_length)
    rows = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        seq: list[int] = []
        for i in members:
            e = examples[i]
            n = len(e.input_ids)
            ids += e.input_ids
            labels += [IGNORE_INDEX] + list(e.labels[1:])
            pos += range(n)
            seq += [i] * n
        rows.append(PackedRow(ids, labels, pos, seq))
    return rows


def block_causal_mask(block_ids: torch.Tensor) -> torch.Tensor:
    """(B, L) block ids -> (B, 1, L, L) bool: query i may see key j iff j <= i, same block.

        >>> block_causal_mask(torch.tensor([[0, 0, 1]]))[0, 0].int().tolist()
        [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    """
    L = block_ids.shape[1]
    same = block_ids[:, :, None] == block_ids[:, None, :]  # (B, L, L)
    causal = torch.ones(L, L, dtype=torch.bool, device=block_ids.device).tril()
    return (same & causal)[:, None]  # (B, 1, L, L)


def collate_packed(rows: Sequence[PackedRow], *, pad_token_id: int = 0,
                   pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Stack packed rows into tensors, right-padding to the longest row.

    Returns input_ids, labels, position_ids, seq_ids: (B, L) int64; attention_mask:
    (B, 1, L, L) bool. The padding id is irrelevant to the result (masked, label -100).
    """
    if not rows:
        raise ValueError("cannot collate an empty list of rows")
    L = max(len(r) for r in rows)
    if pad_to_multiple_of:
        L = -(-L // pad_to_multiple_of) * pad_to_multiple_of
    B = len(rows)
    input_ids = torch.full((B, L), pad_token_id, dtype=torch.long)
    labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((B, L), dtype=torch.long)
    seq_ids = torch.full((B, L), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r)
        input_ids[b, :n] = torch.tensor(r.input_ids, dtype=torch.long)
        labels[b, :n] = torch.tensor(r.labels, dtype=torch.long)
        position_ids[b, :n] = torch.tensor(r.position_ids, dtype=torch.long)
        position_ids[b, n:] = torch.arange(L - n)  # the padding block restarts too
        seq_ids[b, :n] = torch.tensor(r.seq_ids, dtype=torch.long)
    # Padding tokens share block -1: they see each other causally, never a sequence.
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
            "attention_mask": block_causal_mask(seq_ids), "seq_ids": seq_ids}


def sequence_sums(values: torch.Tensor, seq_ids: torch.Tensor, num_sequences: int) -> torch.Tensor:
    """Sum per-token `values` (B, L) into per-sequence totals (N,) using `seq_ids` (B, L).

    Tokens with seq_id -1 (padding) are dropped.

        >>> sequence_sums(torch.tensor([[1., 2., 4.]]), torch.tensor([[1, 0, -1]]), 2)
        tensor([2., 1.])
    """
    keep = seq_ids >= 0
    out = torch.zeros(num_sequences, dtype=values.dtype, device=values.device)
    return out.index_add(0, seq_ids[keep], values[keep])


__all__ = ["PackedRow", "best_fit_decreasing", "block_causal_mask", "collate_packed", "pack",
           "sequence_sums"]
