"""TokenScorer: log-probs only at labelled positions; the padding-free path equals the padded one."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alignkit.data.collate import pad_collate
from alignkit.data.encode import EncodedExample
from alignkit.data.packing import collate_packed, pack
from alignkit.models import forward as fw
from alignkit.models.forward import (TokenScorer, padding_free_plan, supports_padding_free,
                                     varlen_sdpa)


def _llama(kv_heads: int = 2, **extra):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=kv_heads, vocab_size=100,
                      max_position_embeddings=128, **extra)
    return LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)


@pytest.fixture(scope="module")
def llama():
    return _llama()


def _examples(lengths, seed=0, p_prompt=0.4):
    rng = random.Random(seed)
    out = []
    for n in lengths:
        ids = [rng.randrange(100) for _ in range(n)]
        out.append(EncodedExample(ids, [-100 if rng.random() < p_prompt else t for t in ids]))
    return out


def _block_causal(seg: torch.Tensor) -> torch.Tensor:
    T = seg.shape[1]
    return ((seg[:, :, None] == seg[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril())[:, None]


# ---------------------------------------------------------------- the plan, by hand

def test_plan_packed_by_hand():
    """Row 0 = [a a | b b b | pad]: segment a has no scored position (its only target is -100),
    so it is dropped; b (3 tokens) is kept. Row 1 = [c c c c] scored at t=0 and t=2.
    Kept row: b b b c c c c -> seq_lens [3, 4]. Scored positions in the padded layout are
    (0, 2), (0, 3), (1, 0), (1, 2); in the kept row they are 0, 1, 3, 5."""
    ids = torch.tensor([[1, 2, 3, 4, 5, 0], [6, 7, 8, 9, 0, 0]])
    pos = torch.tensor([[0, 1, 0, 1, 2, 0], [0, 1, 2, 3, 0, 1]])
    seg = torch.tensor([[0, 0, 1, 1, 1, 2], [0, 0, 0, 0, 1, 1]])
    sel = torch.tensor([[False, False, True, True, False],
                        [True, False, True, False, False]])
    plan = padding_free_plan(ids, sel, _block_causal(seg), pos)
    assert plan.input_ids.tolist() == [[3, 4, 5, 6, 7, 8, 9]]
    assert plan.position_ids.tolist() == [[0, 1, 2, 0, 1, 2, 3]]
    assert plan.seq_lens == [3, 4]
    assert plan.score_index.tolist() == [0, 1, 3, 5]


def test_plan_right_padded_by_hand():
    """2D mask, lengths 3 and 2: real tokens [1 2 3] and [4 5]; scored (0,0), (0,1), (1,0)
    -> kept row 1 2 3 4 5, seq_lens [3, 2], scored at 0, 1, 3."""
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    sel = torch.tensor([[True, True], [True, False]])
    plan = padding_free_plan(ids, sel, mask, None)
    assert plan.input_ids.tolist() == [[1, 2, 3, 4, 5]]
    assert plan.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert plan.seq_lens == [3, 2]
    assert plan.score_index.tolist() == [0, 1, 3]


def test_plan_refuses_layouts_it_cannot_prove():
    ids = torch.tensor([[1, 2, 3, 4]])
    sel = torch.tensor([[True, True, True]])
    pos = torch.tensor([[0, 1, 0, 1]])
    good = _block_causal(torch.tensor([[0, 0, 1, 1]]))
    assert padding_free_plan(ids, sel, good, pos) is not None
    # a 4D mask that lets segment 2 see segment 1 (positions still restart): not block-causal
    leaky = torch.ones(4, 4, dtype=torch.bool).tril()[None, None]
    assert padding_free_plan(ids, sel, leaky, pos) is None
    # float (additive) masks, missing position ids, left padding, no mask, nothing scored
    assert padding_free_plan(ids, sel, good.float(), pos) is None
    assert padding_free_plan(ids, sel, good, None) is None
    assert padding_free_plan(ids, sel, torch.tensor([[0, 1, 1, 1]]), None) is None
    assert padding_free_plan(ids, sel, None, pos) is None
    assert padding_free_plan(ids, torch.zeros_like(sel), good, pos) is None
    # a scored padding slot (right padding, label set on the slot after it) keeps the padded path
    assert padding_free_plan(ids, sel, torch.tensor([[1, 1, 0, 0]]), None) is None


# ---------------------------------------------------------------- the kernel

def test_varlen_sdpa_equals_each_segment_alone():
    """Segments of 3, 1 and 4 tokens (GQA: 4 query heads, 2 key/value heads)."""
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 8, 16), torch.randn(1, 2, 8, 16), torch.randn(1, 2, 8, 16)
    out, weights = varlen_sdpa(None, q, k, v, None, alignkit_seq_lens=[3, 1, 4])
    assert out.shape == (1, 8, 4, 16) and weights is None
    for s, e in [(0, 3), (3, 4), (4, 8)]:
        alone = F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e].repeat_interleave(2, 1),
                                               v[:, :, s:e].repeat_interleave(2, 1), is_causal=True)
        torch.testing.assert_close(out[:, s:e], alone.transpose(1, 2))
    # the 1-token segment attends only to itself: its output is its own value
    torch.testing.assert_close(out[0, 3], v[0, :, 3].repeat_interleave(2, 0))


def test_varlen_sdpa_refuses_misuse():
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(RuntimeError, match="alignkit_seq_lens"):
        varlen_sdpa(None, q, q, q, None)
    with pytest.raises(RuntimeError, match="one concatenated row"):
        varlen_sdpa(None, q, q, q, torch.ones(1, 1, 4, 4, dtype=torch.bool), alignkit_seq_lens=[4])
    with pytest.raises(RuntimeError, match="sliding"):
        varlen_sdpa(None, q, q, q, None, alignkit_seq_lens=[4], sliding_window=2)


# ---------------------------------------------------------------- the scorer on a real model

def _score(model, batch, padding_free):
    model.zero_grad(set_to_none=True)
    scorer = TokenScorer(model, padding_free=padding_free)
    logps, selected = scorer(batch["input_ids"], batch["labels"], batch["attention_mask"],
                             batch["position_ids"])
    logps.sum().backward()
    return logps.detach(), selected, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_padding_free_equals_padded_forward_and_backward(llama, layout, monkeypatch):
    """Same log-probs (same order) and same gradients as the padded/masked forward, and the
    per-segment kernel really ran (once per layer)."""
    exs = _examples([5, 9, 3, 12, 7, 4, 8, 2, 16, 1, 20], seed=1)
    exs.append(EncodedExample([11, 12, 13], [-100, -100, -100]))  # prompt-only: dropped
    batch = collate_packed(pack(exs, 24)) if layout == "packed" else pad_collate(exs, 0)
    batch.pop("seq_ids", None)
    calls = []
    original = fw.varlen_sdpa

    def counting(*args, **kwargs):
        calls.append(kwargs[fw._SEQ_LENS_KW])
        return original(*args, **kwargs)

    from transformers import AttentionInterface

    fw._register()
    monkeypatch.setitem(AttentionInterface._global_mapping, fw.VARLEN_ATTENTION, counting)
    ref_lp, ref_sel, ref_grad = _score(llama, batch, padding_free=False)
    assert calls == []
    lp, sel, grad = _score(llama, batch, padding_free=True)
    assert len(calls) == llama.config.num_hidden_layers
    # examples with nothing to score (prompt-only, or 1 token) are dropped, padding too
    scored = [e for e in exs if any(x != -100 for x in e.labels[1:])]
    assert len(scored) < len(exs)
    if layout == "padded":  # one segment per row, in row order
        assert calls[0] == [len(e.input_ids) for e in scored]
    assert sum(calls[0]) == sum(len(e.input_ids) for e in scored) < batch["input_ids"].numel()
    assert torch.equal(sel, ref_sel) and lp.shape == ref_lp.shape
    torch.testing.assert_close(lp, ref_lp, rtol=0, atol=1e-5)
    for name in ref_grad:
        torch.testing.assert_close(grad[name], ref_grad[name], rtol=1e-4, atol=1e-6)
    # the attention implementation is restored afterwards
    assert llama.config._attn_implementation == "sdpa"


def test_padding_free_matches_each_sequence_alone(llama):
    """The sum of log-probs of each sequence equals that sequence scored alone, unpadded."""
    exs = _examples([6, 10, 3, 7], seed=3)
    batch = collate_packed(pack(exs, 16))
    seq_ids = batch.pop("seq_ids")
    with torch.no_grad():
        lp, sel = TokenScorer(llama)(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                     batch["position_ids"])
        per_seq = torch.zeros(len(exs)).index_add(0, seq_ids[:, 1:][sel], lp)
        for i, e in enumerate(exs):
            alone, _ = TokenScorer(llama, padding_free=False)(
                torch.tensor([e.input_ids]), torch.tensor([[-100] + e.labels[1:]]))
            torch.testing.assert_close(per_seq[i], alone.sum(), rtol=0, atol=1e-5)


def test_padding_free_is_off_where_it_would_not_be_exact():
    model = _llama()
    assert supports_padding_free(model)
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    assert not supports_padding_free(model)
    assert not supports_padding_free(_mistral_with_window())
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50))
    assert not supports_padding_free(gpt2)


def _mistral_with_window():
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=2, vocab_size=50,
                        sliding_window=4)
    return MistralForCausalLM._from_config(cfg, attn_implementation="sdpa")


class _NoRegistryLM(nn.Module):
    """A 'llama' whose backbone never calls the attention registry (ignores extra kwargs)."""

    base_model_prefix = "model"

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(model_type="llama", _attn_implementation="sdpa")
        self.model = _Backbone()
        self.head = nn.Linear(8, 20)

    def get_output_embeddings(self):
        return self.head


class _Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, **kw):
        return (self.emb(input_ids),)


def test_padded_path_when_the_kernel_never_runs():
    """If the model bypasses the registry, the scorer notices, falls back, and stays padded."""
    torch.manual_seed(0)
    lm = _NoRegistryLM()
    batch = pad_collate([[1, 2, 3], [4, 5]], pad_token_id=0)
    scorer = TokenScorer(lm)
    lp, _ = scorer(batch["input_ids"], batch["labels"], batch["attention_mask"],
                   batch["position_ids"])
    ref, _ = TokenScorer(lm, padding_free=False)(batch["input_ids"], batch["labels"],
                                                 batch["attention_mask"], batch["position_ids"])
    assert scorer._varlen_failed
    torch.testing.assert_close(lp, ref)
