"""The KV-cache sampler: recorded log-probs = a fresh forward's, seeded reproducibility, greedy =
HF generate, EOS and stop strings, top-k / top-p filters by hand."""
import math

import pytest
import torch

from alignkit.contract.specs import DecodeSpec
from alignkit.models.loading import _doc_tiny_factory, load_model, register_builtin
from alignkit.rollout.logprobs import rollout_token_logprobs, token_logprobs
from alignkit.rollout.sampler import (Rollout, completion_texts, concat_rollouts, sample,
                                      top_k_filter, top_p_filter)


@pytest.fixture(scope="module")
def world_lm():
    """The world tokenizer with a 2-layer random Llama (4 heads so GQA-free SDPA runs)."""
    from alignkit.world.tiny import tiny_model

    tok = load_model("builtin:world-tiny").tokenizer
    model = tiny_model(tok, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, intermediate_size=128).eval()
    return model, tok


@pytest.fixture(scope="module")
def world_prompts(world_lm):
    from alignkit.data.encode import encode_prompt
    from alignkit.data.templates import resolve_chat_template
    from alignkit.world.build import WorldConfig, build_world

    _, tok = world_lm
    world = build_world(WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=1,
                                    n_people=16))
    tpl = resolve_chat_template(tok, None)
    prompts = [encode_prompt(tok, tpl, r["messages"][:-1]) for r in world.sft[:6]]
    assert len({len(p) for p in prompts}) > 1  # different lengths: left padding is exercised
    return prompts


@pytest.fixture(scope="module")
def doc_lm():
    register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    lm = load_model("builtin:doc-tiny")
    return lm.model, lm.tokenizer


def real_logps(r: Rollout) -> torch.Tensor:
    return r.logprobs[r.response_mask.bool()]


# ----------------------------------------------------------------------------- log-probs

def test_sampled_logprobs_match_a_fresh_forward_at_t1(world_lm, world_prompts):
    """The cache-decoded log-probs equal the padding-free rescoring of
    alignkit.rollout.logprobs.token_logprobs (a different code path: right padding, varlen)."""
    model, tok = world_lm
    r = sample(model, tok, world_prompts, DecodeSpec(temperature=1.0, max_new_tokens=10, seed=1))
    assert int(r.response_mask.sum()) > 20
    rescored = token_logprobs(model, r.prompts(), r.responses())
    flat = torch.tensor([x for row in rescored for x in row])
    torch.testing.assert_close(flat, real_logps(r), atol=1e-4, rtol=0)
    # the masked slots hold exactly 0
    assert torch.all(r.logprobs[~r.response_mask.bool()] == 0)


def test_unpadded_prompts_decode_without_a_mask_and_still_match(world_lm, world_prompts):
    """Prompts of one length (batch 1, or equal lengths) take the no-mask path; the recorded
    log-probs still equal a fresh forward's, and each row samples what it samples alone in a
    padded batch (greedy: the tokens are a function of the prompt only)."""
    model, tok = world_lm
    same = [world_prompts[0], list(world_prompts[0])]
    r = sample(model, tok, same, DecodeSpec(temperature=1.0, max_new_tokens=12, seed=4))
    assert bool(r.prompt_mask.all())
    rescored = token_logprobs(model, r.prompts(), r.responses())
    torch.testing.assert_close(torch.tensor([x for row in rescored for x in row]),
                               real_logps(r), atol=1e-4, rtol=0)
    greedy = DecodeSpec(temperature=0.0, max_new_tokens=12)
    alone = sample(model, tok, world_prompts[:1], greedy)
    padded = sample(model, tok, world_prompts, greedy)
    assert alone.responses()[0] == padded.responses()[0]


@pytest.mark.parametrize("decode", [
    DecodeSpec(temperature=0.7, max_new_tokens=10, seed=2),
    DecodeSpec(temperature=1.3, top_k=20, top_p=0.9, max_new_tokens=10, seed=3),
])
def test_sampled_logprobs_match_rescoring_at_temperature(world_lm, world_prompts, decode):
    """At T != 1 and with truncation, the recorded value is log softmax(z / T) of the
    untruncated tempered policy, which rollout_token_logprobs recomputes."""
    model, tok = world_lm
    r = sample(model, tok, world_prompts, decode)
    assert r.temperature == decode.temperature
    logps, entropy = rollout_token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids,
                                            r.response_mask, r.temperature, with_entropy=True)
    torch.testing.assert_close(logps, r.logprobs, atol=1e-4, rtol=0)
    # The entropy of a softmax over V tokens is in (0, ln V].
    m = r.response_mask.bool()
    assert bool((entropy[m] > 0).all()) and bool((entropy[m] <= math.log(len(tok)) + 1e-4).all())


def test_rescoring_at_the_wrong_temperature_disagrees(world_lm, world_prompts):
    """Control: the agreement above is not automatic."""
    model, tok = world_lm
    r = sample(model, tok, world_prompts, DecodeSpec(temperature=0.5, max_new_tokens=6, seed=4))
    logps, _ = rollout_token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids,
                                      r.response_mask, 1.0)
    assert (logps - r.logprobs).abs().max() > 1e-2


def test_rollout_logprobs_have_gradients(world_lm, world_prompts):
    model, tok = world_lm
    r = sample(model, tok, world_prompts[:2], DecodeSpec(temperature=1.0, max_new_tokens=4))
    logps, entropy = rollout_token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids,
                                            r.response_mask, 1.0, with_entropy=True)
    logps.sum().backward()
    grad = model.get_output_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert not entropy.requires_grad
    model.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------- reproducibility

def test_same_seed_same_samples_other_seed_other_samples(world_lm, world_prompts):
    model, tok = world_lm
    spec = DecodeSpec(temperature=1.0, max_new_tokens=8, seed=11)
    a, b = sample(model, tok, world_prompts, spec), sample(model, tok, world_prompts, spec)
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(a.logprobs, b.logprobs)
    c = sample(model, tok, world_prompts, spec.model_copy(update={"seed": 12}))
    assert not torch.equal(a.response_ids, c.response_ids)


def test_sampling_leaves_the_global_rng_alone(world_lm, world_prompts):
    model, tok = world_lm
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    sample(model, tok, world_prompts, DecodeSpec(temperature=1.0, max_new_tokens=4))
    assert torch.equal(torch.rand(3), expected)


def test_sampling_restores_train_mode(world_lm, world_prompts):
    model, tok = world_lm
    model.train()
    sample(model, tok, world_prompts[:1], DecodeSpec(temperature=1.0, max_new_tokens=2))
    assert model.training
    model.eval()


# ----------------------------------------------------------------------------- greedy

def test_greedy_equals_hf_generate(world_lm, world_prompts):
    """Same left-padded batch: the same tokens as transformers' greedy `generate`, padding
    after EOS included; log-probs are then those of the T = 1 policy."""
    model, tok = world_lm
    eos = tok.eos_token_id
    r = sample(model, tok, world_prompts, DecodeSpec(temperature=0.0, max_new_tokens=12))
    P = max(len(p) for p in world_prompts)
    ids = torch.full((len(world_prompts), P), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(world_prompts):
        ids[i, P - len(p):], mask[i, P - len(p):] = torch.tensor(p), 1
    with torch.no_grad():
        hf = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                            eos_token_id=eos, pad_token_id=tok.pad_token_id)[:, P:]
    assert torch.equal(r.prompt_ids, ids) and torch.equal(r.prompt_mask, mask)
    assert torch.equal(r.response_ids, hf[:, :r.response_ids.shape[1]])
    assert r.temperature == 1.0
    logps, _ = rollout_token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids,
                                      r.response_mask, 1.0)
    torch.testing.assert_close(logps, r.logprobs, atol=1e-4, rtol=0)


def test_chunking_does_not_change_greedy_results(world_lm, world_prompts):
    model, tok = world_lm
    one = sample(model, tok, world_prompts, DecodeSpec(max_new_tokens=6, batch_size=64))
    chunks = sample(model, tok, world_prompts, DecodeSpec(max_new_tokens=6, batch_size=4))
    assert one.responses() == chunks.responses() and one.prompts() == chunks.prompts()


# ----------------------------------------------------------------------------- stopping

def test_rows_stop_at_eos_and_keep_it(doc_lm):
    """doc-tiny has 12 tokens, EOS = 2: at T = 1 most 12-token rows meet an EOS. A finished row
    ends with exactly one EOS (its last real token), nothing is generated after it, and its
    response mask is a prefix of ones."""
    model, tok = doc_lm
    prompts = [[3, 4], [5], [6, 7, 8], [9]] * 4
    r = sample(model, tok, prompts, DecodeSpec(temperature=1.0, max_new_tokens=12, seed=5))
    assert bool(r.finished.any()) and bool((~r.finished).any())
    for ids, m, fin in zip(r.response_ids, r.response_mask, r.finished):
        n = int(m.sum())
        assert torch.equal(m[:n], torch.ones(n, dtype=m.dtype)) and int(m[n:].sum()) == 0
        real = ids[:n].tolist()
        assert (2 in real) == bool(fin)
        if fin:
            assert real.index(2) == n - 1
        else:
            assert n == 12  # ran out of tokens
        assert all(t == tok.pad_token_id for t in ids[n:].tolist())
    assert r.truncated.tolist() == [not f for f in r.finished.tolist()]


def test_stop_strings_end_a_row_at_the_completing_token(doc_lm):
    """Stop string "cat": each stopped row's text contains it, the text one token earlier does
    not, and completion_texts cuts the text before it."""
    model, tok = doc_lm
    prompts = [[3, 4], [5], [6, 7, 8], [9]] * 4
    spec = DecodeSpec(temperature=1.0, max_new_tokens=12, seed=6, stop=("cat",))
    r = sample(model, tok, prompts, spec)
    assert bool(r.stopped.any())
    texts = completion_texts(r, tok, spec.stop)
    for ids, stopped, fin, text in zip(r.responses(), r.stopped, r.finished, texts):
        full = tok.decode(ids, skip_special_tokens=True)
        assert not (stopped and fin)
        if stopped:
            assert "cat" in full and "cat" not in tok.decode(ids[:-1], skip_special_tokens=True)
            assert text == full[:full.index("cat")]
        else:
            assert "cat" not in full and text == full
    # Without the stop string the same seed runs on past "cat".
    free = sample(model, tok, prompts, spec.model_copy(update={"stop": ()}))
    assert free.lengths.sum() > r.lengths.sum()


def test_stop_strings_need_a_tokenizer(doc_lm):
    model, _ = doc_lm
    with pytest.raises(ValueError, match="tokenizer"):
        sample(model, None, [[3]], DecodeSpec(temperature=1.0, stop=("x",)), stop_ids=[2])


def test_empty_prompt_is_an_error(doc_lm):
    model, tok = doc_lm
    with pytest.raises(ValueError, match=r"prompts\[1\] is empty"):
        sample(model, tok, [[3], []], DecodeSpec())


# ----------------------------------------------------------------------------- filters by hand

def test_top_k_filter_by_hand():
    """Logits [1, 3, 2, 3]: k = 2 keeps both 3s; k = 3 keeps 3, 3, 2."""
    z = torch.tensor([[1.0, 3.0, 2.0, 3.0]])
    inf = float("-inf")
    assert top_k_filter(z, 2).tolist() == [[inf, 3.0, inf, 3.0]]
    assert top_k_filter(z, 3).tolist() == [[inf, 3.0, 2.0, 3.0]]
    assert torch.equal(top_k_filter(z, 0), z)


def test_top_p_filter_by_hand():
    """p = (0.1, 0.6, 0.3): sorted 0.6, 0.3, 0.1; mass before each: 0, 0.6, 0.9.
    top_p = 0.6 keeps only 0.6 (0.6 >= 0.6 drops the rest); top_p = 0.85 keeps 0.6 and 0.3."""
    z = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
    kept = lambda p: torch.isfinite(top_p_filter(z, p)).tolist()[0]  # noqa: E731
    assert kept(0.6) == [False, True, False]
    assert kept(0.85) == [False, True, True]
    assert kept(0.95) == [True, True, True]
    assert kept(0.01) == [False, True, False]  # the most likely token always stays


def test_top_k_sampling_only_draws_the_top_tokens(doc_lm):
    model, tok = doc_lm
    r = sample(model, tok, [[3, 4]] * 8, DecodeSpec(temperature=1.0, top_k=1, max_new_tokens=5,
                                                    seed=0))
    g = sample(model, tok, [[3, 4]] * 8, DecodeSpec(temperature=0.0, max_new_tokens=5))
    assert r.responses() == g.responses()  # top-1 sampling is greedy


def test_concat_rollouts_repads_both_sides(doc_lm):
    model, tok = doc_lm
    a = sample(model, tok, [[3, 4, 5]], DecodeSpec(max_new_tokens=2))
    b = sample(model, tok, [[6]], DecodeSpec(max_new_tokens=4))
    both = concat_rollouts([a, b], pad=tok.pad_token_id)
    assert both.prompts() == a.prompts() + b.prompts()
    assert both.responses() == a.responses() + b.responses()
    assert both.prompt_ids.shape[1] == 3 and both.response_ids.shape[1] == max(
        a.response_ids.shape[1], b.response_ids.shape[1])
