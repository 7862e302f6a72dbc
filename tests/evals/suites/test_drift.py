"""`drift` suite: KL arithmetic by hand, stop-token handling, KL to itself and to a perturbed copy."""
import copy
import math

import pytest
import torch

from alignkit.contract.specs import DecodeSpec
from alignkit.data.templates import resolve_chat_template
from alignkit.errors import ConfigError
from alignkit.evals.suite import EvalContext
from alignkit.evals.suites import drift as dr
from alignkit.models.loading import LoadedModel, load_model, register_builtin, _doc_tiny_factory
from alignkit.rollout.logprobs import sequence_logprobs
from alignkit.world.build import WorldConfig

WORLD = WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2)


@pytest.fixture(scope="module")
def tiny():
    return load_model("builtin:world-tiny")


def make_ctx(tiny, reference, **kw):
    tpl = resolve_chat_template(tiny.tokenizer, None)
    return EvalContext(tiny.model, tiny.tokenizer, tpl, DecodeSpec(max_new_tokens=8, **kw),
                       world=WORLD, reference=reference, limit=1)


def test_kl_and_kl_per_token_by_hand():
    # log-ratios: (-1) - (-2) = 1, (-2) - (-2) = 0, (-3) - (-5) = 2 -> KL = 3/3 = 1.0
    # tokens 2 + 1 + 3 = 6 -> per token 3/6 = 0.5
    m = dr.drift_metrics([-1.0, -2.0, -3.0], [-2.0, -2.0, -5.0], [2, 1, 3], seed=0)
    kl, pt = m["drift/kl"], m["drift/kl_per_token"]
    assert kl["value"] == pytest.approx(1.0) and kl["n"] == 3
    assert 0.0 <= kl["lo"] <= 1.0 <= kl["hi"] <= 2.0  # resampled means of {1, 0, 2}
    assert pt["value"] == pytest.approx(0.5)
    assert 0.0 <= pt["lo"] <= 0.5 <= pt["hi"] <= 2 / 1  # ratios of resampled sums
    with pytest.raises(ValueError, match="same length"):
        dr.drift_metrics([0.0], [0.0, 1.0], [1])


def test_sampling_decode_forces_temperature_one():
    d = dr.sampling_decode(DecodeSpec(temperature=0.0, top_p=0.5, top_k=7, max_new_tokens=9, seed=3))
    assert (d.temperature, d.top_p, d.top_k, d.max_new_tokens, d.seed) == (1.0, 1.0, 0, 9, 3)


def test_stopped_sequence_adds_log_total_stop_probability(tiny):
    """y stopped: log π(y) + log(π(s1|y) + π(s2|y)) = logsumexp(log π(y+[s1]), log π(y+[s2]))."""
    m = tiny.model
    prompts, responses = [[5, 6, 7], [8, 9]], [[10, 11], [12]]
    got = dr.sampled_sequence_logprobs(m, prompts, responses, [True, False], [2, 3])
    with_s1 = sequence_logprobs(m, prompts[:1], [responses[0] + [2]])[0]
    with_s2 = sequence_logprobs(m, prompts[:1], [responses[0] + [3]])[0]
    want0 = math.log(math.exp(with_s1) + math.exp(with_s2))
    assert got[0] == pytest.approx(want0, abs=1e-5)
    assert got[1] == pytest.approx(sequence_logprobs(m, prompts[1:], responses[1:])[0], abs=1e-6)


def test_kl_of_a_model_to_itself_is_exactly_zero(tiny):
    same = load_model("builtin:world-tiny")  # identical weights, a separate copy
    res = dr.drift(make_ctx(tiny, same))
    assert res.metrics["drift/kl"]["value"] == 0.0
    assert res.metrics["drift/kl_per_token"]["value"] == 0.0
    rows = [s for s in res.samples if s.get("kind") != "note"]
    assert rows and all(s["kl"] == 0.0 for s in rows)


def test_kl_to_a_perturbed_copy_is_positive_and_decode_is_recorded(tiny):
    moved = copy.deepcopy(tiny.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    ref = LoadedModel(moved, tiny.tokenizer, tiny.spec, "mdl-perturbed", "builtin")
    res = dr.drift(make_ctx(tiny, ref, temperature=0.0, top_k=5))  # greedy asked: ignored
    kl = res.metrics["drift/kl"]
    assert kl["value"] > 0.1 and kl["lo"] > 0
    assert res.metrics["drift/kl_per_token"]["value"] > 0
    note = res.samples[0]
    assert note["kind"] == "note" and note["decode"]["temperature"] == 1.0
    assert note["decode"]["top_k"] == 0 and note["decode"]["seed"] == 0
    assert all(s["decode_temperature"] == 1.0 for s in res.samples[1:])
    # the per-sample values are what the two models say about the sampled replies
    s = res.samples[1]
    assert s["kl"] == pytest.approx(s["logp"] - s["ref_logp"])


def test_needs_a_reference_with_the_same_vocabulary(tiny):
    with pytest.raises(ConfigError, match="--reference"):
        dr.drift(make_ctx(tiny, None))
    register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    other = load_model("builtin:doc-tiny")
    with pytest.raises(ConfigError, match="different vocabulary"):
        dr.drift(make_ctx(tiny, other))
