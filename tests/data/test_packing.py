"""Packing: best-fit decreasing by hand, properties, and packed == unpacked on a real Llama."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignkit.data.encode import IGNORE_INDEX, EncodedExample
from alignkit.data.packing import (best_fit_decreasing, block_causal_mask, collate_packed, pack,
                                   sequence_sums)


def test_bfd_hand_example():
    """lengths [5, 3, 4, 2, 6, 1], capacity 8; order by length: 6(i4) 5(i0) 4(i2) 3(i1) 2(i3) 1(i5).
    6 -> new bin0 (room 2); 5 -> new bin1 (room 3); 4 -> new bin2 (room 4);
    3 -> least room that fits is bin1 (3) -> full; 2 -> bin0 (2) -> full; 1 -> bin2 (4 -> 3)."""
    assert best_fit_decreasing([5, 3, 4, 2, 6, 1], 8) == [[4, 3], [0, 1], [2, 5]]


def test_bfd_prefers_the_tightest_bin_and_breaks_ties_by_age():
    """capacity 10, lengths [6, 6, 3, 4]: 6(i0) bin0 room 4; 6(i1) bin1 room 4; 4(i3): bins 0 and 1
    both have room 4, the older wins -> bin0 full; 3(i2): bin1 (room 4) -> room 1."""
    assert best_fit_decreasing([6, 6, 3, 4], 10) == [[0, 3], [1, 2]]
    # best fit, not first fit: 2 goes to the bin with room 2 (bin1), not the first with room (bin0)
    assert best_fit_decreasing([5, 8, 2], 10) == [[1, 2], [0]]


def test_bfd_rejects_bad_lengths():
    with pytest.raises(ValueError, match="sequence 2 has length 9 > capacity 8"):
        best_fit_decreasing([1, 2, 9], 8)
    with pytest.raises(ValueError, match="sequence 0 has length 0"):
        best_fit_decreasing([0], 8)
    with pytest.raises(ValueError, match="capacity"):
        best_fit_decreasing([1], 0)
    assert best_fit_decreasing([], 4) == []


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 40), data=st.data())
def test_bfd_properties(capacity, data):
    lengths = data.draw(st.lists(st.integers(1, capacity), max_size=60))
    bins = best_fit_decreasing(lengths, capacity)
    # every index exactly once
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    loads = [sum(lengths[i] for i in b) for b in bins]
    # no bin over capacity, none empty
    assert all(0 < load <= capacity for load in loads)
    # any-fit property: a bin is opened only when nothing fits, so any two bins overflow together
    assert all(loads[i] + loads[j] > capacity for i in range(len(loads)) for j in range(i + 1, len(loads)))


def _examples(lengths, seed=0, vocab=100):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(1, vocab, (n,), generator=g).tolist()
        labels = [IGNORE_INDEX] * (n // 2) + ids[n // 2:]  # a prompt half and a response half
        out.append(EncodedExample(ids, labels))
    return out


def test_pack_and_collate_by_hand():
    """Lengths 3, 2, 1 with capacity 5: BFD puts ex0 (3) in row 0, ex1 (2) fills it, ex2 (1)
    opens row 1. L = 5; row 1 has 4 padding tokens."""
    exs = [EncodedExample([11, 12, 13], [-100, 12, 13]), EncodedExample([21, 22], [21, 22]),
           EncodedExample([31], [31])]
    rows = pack(exs, 5)
    assert [r.seq_ids for r in rows] == [[0, 0, 0, 1, 1], [2]]
    batch = collate_packed(rows, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[11, 12, 13, 21, 22], [31, 0, 0, 0, 0]]
    # first token of every sequence is never a target (nothing in its sequence predicts it)
    assert batch["labels"].tolist() == [[-100, 12, 13, -100, 22], [-100, -100, -100, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 0, 1, 2, 3]]
    assert batch["seq_ids"].tolist() == [[0, 0, 0, 1, 1], [2, -1, -1, -1, -1]]
    m = batch["attention_mask"]
    assert m.shape == (2, 1, 5, 5) and m.dtype == torch.bool
    assert m[0, 0].int().tolist() == [[1, 0, 0, 0, 0],
                                      [1, 1, 0, 0, 0],
                                      [1, 1, 1, 0, 0],
                                      [0, 0, 0, 1, 0],
                                      [0, 0, 0, 1, 1]]
    # the tail padding is its own causal block, so no query row is empty
    assert m[1, 0].int().tolist() == [[1, 0, 0, 0, 0],
                                      [0, 1, 0, 0, 0],
                                      [0, 1, 1, 0, 0],
                                      [0, 1, 1, 1, 0],
                                      [0, 1, 1, 1, 1]]


def test_collate_pad_to_multiple_and_errors():
    rows = pack([EncodedExample([1, 2, 3], [1, 2, 3])], 8)
    assert collate_packed(rows, pad_to_multiple_of=4)["input_ids"].shape == (1, 4)
    with pytest.raises(ValueError, match="empty"):
        collate_packed([])


def test_sequence_sums_by_hand():
    """values [[1, 2, 4], [8, 16, 32]], seq_ids [[1, 0, -1], [2, 2, 0]]:
    seq0 = 2 + 32 = 34, seq1 = 1, seq2 = 8 + 16 = 24; the -1 (padding) value 4 is dropped."""
    values = torch.tensor([[1., 2., 4.], [8., 16., 32.]])
    out = sequence_sums(values, torch.tensor([[1, 0, -1], [2, 2, 0]]), 3)
    torch.testing.assert_close(out, torch.tensor([34., 1., 24.]))


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(4, 32), data=st.data())
def test_pack_properties(capacity, data):
    lengths = data.draw(st.lists(st.integers(1, capacity), min_size=1, max_size=20))
    exs = _examples(lengths, seed=len(lengths))
    rows = pack(exs, capacity)
    batch = collate_packed(rows)
    ids, labels, pos, seq = (batch[k] for k in ("input_ids", "labels", "position_ids", "seq_ids"))
    seen = set()
    for b, row in enumerate(rows):
        assert len(row) <= capacity
        real = seq[b] >= 0
        # padding-free: all real tokens come first, padding only at the tail
        n = int(real.sum())
        assert bool(real[:n].all()) and not bool(real[n:].any())
        for i in torch.unique(seq[b][real]).tolist():
            where = (seq[b] == i).nonzero().flatten()
            assert where.tolist() == list(range(int(where[0]), int(where[-1]) + 1))  # contiguous
            assert pos[b, where].tolist() == list(range(len(exs[i].input_ids)))  # restart at 0
            assert ids[b, where].tolist() == exs[i].input_ids
            assert labels[b, where].tolist() == [IGNORE_INDEX] + exs[i].labels[1:]
            seen.add(i)
        # attention never crosses a sequence boundary and is causal
        mask = batch["attention_mask"][b, 0]
        same = seq[b][:, None] == seq[b][None, :]
        assert not bool((mask & ~same).any()) and not bool(mask.triu(1).any())
    assert seen == set(range(len(exs)))


# ---------------------------------------------------------------- the key test: a real model

@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=100, max_position_embeddings=64)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    assert model.config._attn_implementation == "sdpa"
    return model.eval()


def _token_nll(logits, labels):
    """(B, L, V), (B, L) -> (B, L): NLL of token t from logits t-1; 0 where label is -100 and at t=0."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    nll = -logp[:, :-1].gather(-1, target.clamp(min=0)[..., None])[..., 0] * keep
    return torch.cat([torch.zeros_like(nll[:, :1]), nll], dim=1)


def _per_sequence_alone(model, exs):
    with torch.no_grad():
        return torch.stack([
            _token_nll(model(input_ids=torch.tensor([e.input_ids])).logits, torch.tensor([e.labels])).sum()
            for e in exs])


def test_packed_loss_equals_unpacked_loss_on_llama(tiny_llama):
    exs = _examples([5, 9, 3, 12, 7, 4, 8, 2, 16, 1], seed=1)
    rows = pack(exs, 16)
    assert len(rows) < len(exs) and any(len(set(r.seq_ids)) > 1 for r in rows)  # really packed
    batch = collate_packed(rows)
    with torch.no_grad():
        out = tiny_llama(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"])
    packed = sequence_sums(_token_nll(out.logits, batch["labels"]), batch["seq_ids"], len(exs))
    alone = _per_sequence_alone(tiny_llama, exs)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=0)


def test_packing_needs_both_the_mask_and_the_position_ids(tiny_llama):
    """The model really uses what collate_packed gives: drop either and the losses change.

    (RoPE only sees relative positions, so 0..L-1 instead of restarting positions would change
    nothing inside a block; all-zero positions do change them.)"""
    exs = _examples([6, 5, 4, 3], seed=2)
    batch = collate_packed(pack(exs, 18))
    alone = _per_sequence_alone(tiny_llama, exs)
    variants = {
        "no 4D mask": dict(position_ids=batch["position_ids"]),
        "all positions 0": dict(attention_mask=batch["attention_mask"],
                                position_ids=torch.zeros_like(batch["position_ids"])),
    }
    for name, kwargs in variants.items():
        with torch.no_grad():
            out = tiny_llama(input_ids=batch["input_ids"], **kwargs)
        got = sequence_sums(_token_nll(out.logits, batch["labels"]), batch["seq_ids"], len(exs))
        assert (got - alone).abs().max() > 1e-3, name


def test_block_causal_mask_by_hand():
    assert block_causal_mask(torch.tensor([[5, 5, -1]]))[0, 0].int().tolist() == \
        [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
