"""`tax` suite: perplexity and exact-match-delta arithmetic by hand, end-to-end runs."""
import copy
import math

import pytest
import torch

from alignkit.contract.specs import DecodeSpec
from alignkit.data.templates import resolve_chat_template
from alignkit.errors import ConfigError
from alignkit.evals.suite import EvalContext
from alignkit.evals.suites import tax as tx
from alignkit.models.loading import LoadedModel, load_model
from alignkit.world.build import WorldConfig, build_world

WORLD = WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2)


@pytest.fixture(scope="module")
def tiny():
    return load_model("builtin:world-tiny")


def make_ctx(tiny, base, limit=3):
    tpl = resolve_chat_template(tiny.tokenizer, None)
    return EvalContext(tiny.model, tiny.tokenizer, tpl, DecodeSpec(max_new_tokens=4), world=WORLD,
                       base=base, limit=limit)


def test_perplexity_by_hand():
    # model: NLL 2 + 4 = 6 over 1 + 3 = 4 tokens -> exp(1.5) = 4.48169
    # base:  NLL 1 + 3 = 4 over 4 tokens         -> exp(1.0) = 2.71828
    # ratio exp(1.5) / exp(1.0) = exp(0.5) = 1.64872
    m = tx.perplexity_metrics([2.0, 4.0], [1, 3], [1.0, 3.0], [1, 3], seed=0)
    assert m["tax/perplexity"]["value"] == pytest.approx(math.exp(1.5))
    assert m["tax/base_perplexity"]["value"] == pytest.approx(math.e)
    assert m["tax/perplexity_ratio"]["value"] == pytest.approx(math.exp(0.5))
    # resamples: model per-doc rates are 2 and 4/3, so every resampled PPL lies in
    # [exp(4/3), exp(2)]; the ratio's resamples use the same documents for both models
    lo, hi = m["tax/perplexity"]["lo"], m["tax/perplexity"]["hi"]
    assert math.exp(4 / 3) - 1e-9 <= lo <= hi <= math.exp(2) + 1e-9
    assert m["tax/perplexity"]["n"] == 2
    with pytest.raises(ValueError, match="one entry per document"):
        tx.perplexity_metrics([1.0], [1], [1.0, 2.0], [1, 1])


def test_exact_match_delta_by_hand():
    # model 1,1,0,1 (3/4), base 0,1,0,0 (1/4): delta 0.5; family x: (1,1) vs (0,1) -> 0.5,
    # family y: (0,1) vs (0,0) -> 0.5
    m = tx.exact_match_delta([True, True, False, True], [False, True, False, False],
                             ["x", "x", "y", "y"], seed=0)
    assert m["value"] == pytest.approx(0.5) and m["n"] == 4
    assert -1.0 <= m["lo"] <= 0.5 <= m["hi"] <= 1.0
    assert m["slices"]["family"]["x"]["value"] == pytest.approx(0.5)
    assert m["slices"]["family"]["y"]["n"] == 2
    # per-example differences are 1, 0, 0, 1: no resample can go below 0
    assert m["lo"] >= 0.0


def test_document_nll_is_the_sum_over_tokens_after_bos(tiny):
    tok, model = tiny.tokenizer, tiny.model
    doc = "Migour lives in Drefika."
    nll, n = tx.document_nll(model, tok, [doc])
    ids = [tok.bos_token_id] + tok(doc, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    hand = -sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)))
    assert n == [len(ids) - 1] and nll[0] == pytest.approx(hand, abs=1e-4)


def test_heldout_documents_are_new_and_capped(tiny):
    ctx = make_ctx(tiny, None, limit=5)
    docs = tx.heldout_documents(ctx)
    assert len(docs) == 5 and not set(docs) & set(build_world(WORLD).corpus)


def test_model_against_itself_has_no_tax(tiny):
    res = tx.tax(make_ctx(tiny, load_model("builtin:world-tiny")))
    m = res.metrics
    assert m["tax/perplexity"]["value"] == pytest.approx(m["tax/base_perplexity"]["value"], rel=1e-6)
    assert m["tax/perplexity_ratio"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert m["tax/exact_match_delta"]["value"] == 0.0
    n_rows = 2 * len(build_world(WORLD).families)  # 2 held-out rows per family (< limit 3)
    assert m["tax/exact_match"]["n"] == m["tax/base_exact_match"]["n"] == n_rows
    assert m["tax/perplexity"]["n"] == 3


def test_a_perturbed_base_changes_the_ratio_and_missing_base_is_named(tiny):
    moved = copy.deepcopy(tiny.model)
    with torch.no_grad():
        moved.get_output_embeddings().weight.zero_()  # uniform next-token distribution
    base = LoadedModel(moved, tiny.tokenizer, tiny.spec, "mdl-flat", "builtin")
    m = tx.tax(make_ctx(tiny, base)).metrics
    # a uniform base has perplexity exactly V, the vocabulary size
    assert m["tax/base_perplexity"]["value"] == pytest.approx(moved.config.vocab_size, rel=1e-4)
    assert m["tax/perplexity_ratio"]["value"] == pytest.approx(
        m["tax/perplexity"]["value"] / moved.config.vocab_size, rel=1e-4)
    assert m["tax/perplexity_ratio"]["value"] != pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ConfigError, match="--base"):
        tx.tax(make_ctx(tiny, None))
