"""Reference strategies: same log-probs from every strategy, one-forward concat, the disk cache."""
import copy
import os
from pathlib import Path

import pytest
import torch

from alignkit.data.encode import EncodedExample
from alignkit.errors import CheckpointError, ConfigError
from alignkit.models.forward import TokenScorer
from alignkit.models.loading import _doc_tiny_factory
from alignkit.models.reference import (Reference, cached_reference_logps, collate_sequences,
                                       reference_cache_key, resolve_cache_dir, score_examples,
                                       sequence_logps)

# prompt [1, 5] + response; labels only on the response (as encode_preference makes them)
CHOSEN = [EncodedExample([1, 5, 6, 7, 2], [-100, -100, 6, 7, 2]),
          EncodedExample([1, 5, 3, 2], [-100, -100, 3, 2])]
REJECTED = [EncodedExample([1, 5, 9, 10, 11, 2], [-100, -100, 9, 10, 11, 2]),
            EncodedExample([1, 5, 4, 2], [-100, -100, 4, 2])]


@pytest.fixture(scope="module")
def model():
    return _doc_tiny_factory()[0].eval()


def manual_logps(model, ex: EncodedExample) -> float:
    """Σ_t log softmax(logits[t-1])[id_t] over labelled t, from one unpadded full forward."""
    ids = torch.tensor([ex.input_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return float(sum(lp[t - 1, ex.input_ids[t]] for t in range(1, len(ex.input_ids))
                     if ex.labels[t] != -100))


class FixedScorer(torch.nn.Module):
    """Returns log p = -(t+1)/10 at scored position t of each row (a known answer)."""

    def forward(self, input_ids, labels, attention_mask=None, position_ids=None):
        selected = labels[:, 1:] != -100
        t = torch.arange(input_ids.shape[1] - 1).expand_as(selected)
        return (-(t + 1) / 10)[selected].float(), selected


def test_sequence_logps_sums_per_sequence_by_hand():
    """Padded batch of CHOSEN: row 0 scores positions t = 1, 2, 3 (labels 6, 7, 2) ->
    -(0.2 + 0.3 + 0.4) = -0.9, length 3; row 1 scores t = 1, 2 -> -(0.2 + 0.3) = -0.5, length 2."""
    batch = collate_sequences(CHOSEN, pad_token_id=0)
    logps, lengths = sequence_logps(FixedScorer(), batch)
    torch.testing.assert_close(logps, torch.tensor([-0.9, -0.5]))
    assert lengths.tolist() == [3, 2]


def test_packed_layout_keeps_sequences_apart():
    batch = collate_sequences(CHOSEN + REJECTED, pad_token_id=0, packing=True, pack_length=16)
    assert batch["n_seqs"] == 4 and batch["attention_mask"].dim() == 4
    assert sorted(set(batch["seq_ids"][batch["seq_ids"] >= 0].tolist())) == [0, 1, 2, 3]


@pytest.mark.parametrize("packing", [False, True])
def test_sequence_logps_match_a_manual_forward(model, packing):
    batch = collate_sequences(CHOSEN + REJECTED, pad_token_id=0, packing=packing, pack_length=16)
    logps, lengths = sequence_logps(TokenScorer(model), batch)
    expected = torch.tensor([manual_logps(model, e) for e in CHOSEN + REJECTED])
    torch.testing.assert_close(logps, expected, atol=1e-5, rtol=1e-5)
    assert lengths.tolist() == [3, 2, 4, 2]


@pytest.mark.parametrize("packing", [False, True])
def test_one_forward_equals_two_forwards(model, packing):
    """Chosen and rejected concatenated into one batch give the same per-sequence log-probs
    as two separate forwards (1e-5)."""
    scorer = TokenScorer(model)
    both, _ = sequence_logps(scorer, collate_sequences(CHOSEN + REJECTED, pad_token_id=0,
                                                       packing=packing, pack_length=16))
    c, _ = sequence_logps(scorer, collate_sequences(CHOSEN, pad_token_id=0, packing=packing,
                                                    pack_length=16))
    r, _ = sequence_logps(scorer, collate_sequences(REJECTED, pad_token_id=0, packing=packing,
                                                    pack_length=16))
    torch.testing.assert_close(both, torch.cat([c, r]), atol=1e-5, rtol=1e-5)


def test_frozen_copy_and_precomputed_agree(model, tmp_path):
    seqs = CHOSEN + REJECTED
    frozen = Reference.frozen_copy(model)
    batch = collate_sequences(seqs, pad_token_id=0)
    batch["example_ids"] = torch.tensor([3, 2, 1, 0])  # any order: a lookup by index
    table = score_examples(TokenScorer(model), seqs[::-1], pad_token_id=0, batch_size=3)
    pre = Reference.precomputed(table)
    torch.testing.assert_close(pre.batch_logps(batch), frozen.batch_logps(batch),
                               atol=1e-5, rtol=1e-5)
    assert frozen.forward_calls == 1 and pre.forward_calls == 0
    # The frozen copy does not move when the policy does.
    policy = copy.deepcopy(model)
    ref = Reference.frozen_copy(policy)
    before = ref.score(batch)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1)
    torch.testing.assert_close(ref.score(batch), before)
    assert not any(p.requires_grad for p in ref.model.parameters())


def test_adapters_disabled_equals_the_base_model(model):
    from alignkit.models.lora import LoraSpec, apply_lora

    base = copy.deepcopy(model)
    policy = apply_lora(copy.deepcopy(model), LoraSpec(r=2))
    with torch.no_grad():  # make the adapters do something, so the test could fail
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    batch = collate_sequences(CHOSEN + REJECTED, pad_token_id=0)
    ref = Reference.adapters_disabled(policy).score(batch)
    base_logps, _ = sequence_logps(TokenScorer(base), batch)
    pol_logps, _ = sequence_logps(TokenScorer(policy), batch)
    torch.testing.assert_close(ref, base_logps, atol=1e-5, rtol=1e-5)
    assert (pol_logps - base_logps).abs().max() > 1e-3
    policy.train()  # the policy's training mode survives a reference forward
    Reference.adapters_disabled(policy).score(batch)
    assert policy.training


def test_adapters_disabled_needs_lora(model):
    with pytest.raises(ConfigError, match="needs LoRA"):
        Reference.adapters_disabled(model)
    with pytest.raises(ConfigError, match="unknown"):
        Reference("copy")


def test_precomputed_batch_needs_example_ids():
    pre = Reference.precomputed(torch.zeros(3))
    with pytest.raises(ValueError, match="example_ids"):
        pre.batch_logps({"input_ids": torch.zeros(1, 2)})
    with pytest.raises(ConfigError, match="loader"):
        pre.score({"input_ids": torch.zeros(1, 2)})


def test_cache_key_changes_with_every_part():
    base = dict(model_digest="mdl-a", dataset_digest="ds-b", template_digest="tpl-c", max_length=64)
    k = reference_cache_key(**base)
    for field, other in [("model_digest", "mdl-x"), ("dataset_digest", "ds-x"),
                         ("template_digest", "tpl-x"), ("max_length", 32)]:
        assert reference_cache_key(**{**base, field: other}) != k
    assert reference_cache_key(**base) == k


def test_cache_is_reused_and_a_new_key_recomputes(model, tmp_path):
    """Count reference forwards: the first call scores (2 chunks of 2 sequences), the second
    reads the file (0 forwards), a different key scores again."""
    seqs = CHOSEN + REJECTED
    calls = []

    class CountingScorer(TokenScorer):
        def forward(self, *a, **k):
            calls.append(1)
            return super().forward(*a, **k)

    scorer = CountingScorer(model)
    compute = lambda: score_examples(scorer, seqs, pad_token_id=0, batch_size=2)  # noqa: E731
    key = reference_cache_key(model_digest="mdl-a", dataset_digest="ds-b",
                              template_digest="tpl-c", max_length=64)
    first, reused1 = cached_reference_logps(compute, key=key, n=4, cache_dir=tmp_path)
    assert (reused1, len(calls)) == (False, 2)
    second, reused2 = cached_reference_logps(compute, key=key, n=4, cache_dir=tmp_path)
    assert (reused2, len(calls)) == (True, 2)
    torch.testing.assert_close(first, second)
    assert (tmp_path / f"{key}.safetensors").is_file() and (tmp_path / f"{key}.json").is_file()
    other = reference_cache_key(model_digest="mdl-a", dataset_digest="ds-b",
                                template_digest="tpl-c", max_length=65)
    _, reused3 = cached_reference_logps(compute, key=other, n=4, cache_dir=tmp_path)
    assert (reused3, len(calls)) == (False, 4)
    with pytest.raises(CheckpointError, match="expected"):
        cached_reference_logps(compute, key=key, n=5, cache_dir=tmp_path)


def test_cache_dir_resolution(tmp_path):
    assert resolve_cache_dir(None) == Path(os.path.expanduser("~/.cache/alignkit/ref_logps"))
    assert resolve_cache_dir("cache", tmp_path) == tmp_path / "cache"
    assert resolve_cache_dir(str(tmp_path / "abs"), "/elsewhere") == tmp_path / "abs"
