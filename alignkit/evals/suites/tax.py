"""`tax`: the alignment tax, meaning what the model lost against its base model (`ctx.base`).

Two capabilities, each measured on the model and on the base:

1. **Language modelling** on held-out pretraining-style text: documents from
   `make_corpus(facts, seed=world seed + CORPUS_SEED_OFFSET, passes=1)`. These are the world's
   facts in freshly sampled sentences (the training corpus used the world's own seed; a document
   that happens to equal a training document verbatim is dropped), at most `MAX_DOCUMENTS` of
   them (and at most `ctx.limit` when set). Each document is scored on its own, after one
   context token (the tokenizer's BOS, else its EOS): pretraining separated documents with that
   token. Corpus perplexity over all scored tokens:

       PPL = exp( Σ_d NLL_d / Σ_d n_d ),   NLL_d = −Σ_t log p(w_t | w_<t)

   `tax/perplexity` (model), `tax/base_perplexity` (base), `tax/perplexity_ratio` = model / base
   (> 1: the model got worse at the text its base was trained on). Intervals: percentile
   bootstrap over documents; the ratio's resamples draw the same documents for both (paired).
   Each model scores with its own tokenizer; per-token perplexities of different vocabularies
   are not comparable, so a note says so when the vocabularies differ.

2. **Task accuracy**: exact match of model and base on the same held-out world tasks, through
   the same chat template and DecodeSpec: `tax/exact_match`, `tax/base_exact_match` (Wilson
   intervals, sliced by `family`) and `tax/exact_match_delta` = model − base with a paired
   bootstrap interval (`stats.paired_bootstrap_diff`, seed = `ctx.seed`), also per family.
   A base model may not follow the chat format at all; measuring it through the format is the
   point: the delta is what fine-tuning bought or cost on these tasks.

Needs `ctx.base`: a ConfigError names `--base` otherwise.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from alignkit.errors import ConfigError
from alignkit.evals.exact_match import exact_match_eval
from alignkit.evals.stats import paired_bootstrap_diff
from alignkit.evals.suite import EvalContext, SuiteResult, metric, rate_metric, register_suite
from alignkit.evals.suites._intervals import bootstrap_interval
from alignkit.world.build import build_world

CORPUS_SEED_OFFSET = 7919  # held-out corpus seed = world seed + this (any value ≠ 0 works)
MAX_DOCUMENTS = 200  # cap on held-out documents scored per model
LOGPROB_BATCH = 16


def heldout_documents(ctx: EvalContext) -> list[str]:
    """The world's facts re-phrased with a different seed, capped (see module docstring)."""
    from alignkit.world.corpus import make_corpus

    world = build_world(ctx.world)
    seen = set(world.corpus)
    docs = [d for d in make_corpus(world.facts, seed=ctx.world.seed + CORPUS_SEED_OFFSET, passes=1)
            if d not in seen][:MAX_DOCUMENTS]
    return [r["text"] for r in ctx.take([{"text": d} for d in docs])]


def document_nll(model: Any, tokenizer: Any, docs: Sequence[str],
                 batch_size: int = LOGPROB_BATCH) -> tuple[list[float], list[int]]:
    """(NLL_d, n_d) per document: −Σ log p of its tokens after one context token.

    Documents are cut to the model's context length (`max_position_embeddings`, if known).
    """
    from alignkit.rollout.logprobs import sequence_logprobs

    context = tokenizer.bos_token_id
    if context is None:
        context = tokenizer.eos_token_id
    if context is None:
        raise ConfigError("suite 'tax': the tokenizer has neither a BOS nor an EOS token to put "
                          "before each document")
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs]
    if limit:
        ids = [x[:limit - 1] for x in ids]
    logps = sequence_logprobs(model, [[context]] * len(ids), ids, batch_size)
    return [-lp for lp in logps], [len(x) for x in ids]


def perplexity_metrics(nll: Sequence[float], n_tokens: Sequence[int],
                       base_nll: Sequence[float], base_n_tokens: Sequence[int], *,
                       seed: int = 0) -> dict[str, dict]:
    """`tax/perplexity`, `tax/base_perplexity`, `tax/perplexity_ratio` from per-document NLLs.

    All four sequences are per document, in the same document order (needed for the paired
    interval of the ratio).
    """
    if not len(nll) == len(n_tokens) == len(base_nll) == len(base_n_tokens):
        raise ValueError("nll, n_tokens, base_nll and base_n_tokens must have one entry per "
                         f"document, got {len(nll)}, {len(n_tokens)}, {len(base_nll)}, "
                         f"{len(base_n_tokens)}")
    a, na = np.asarray(nll, np.float64), np.asarray(n_tokens, np.float64)
    b, nb = np.asarray(base_nll, np.float64), np.asarray(base_n_tokens, np.float64)
    n = a.size
    if n == 0 or na.sum() == 0 or nb.sum() == 0:
        raise ValueError("no tokens to score: the held-out documents are empty")

    def ppl(x, t):
        return lambda idx: np.exp(x[idx].sum(axis=1) / t[idx].sum(axis=1))

    value, base_value = float(np.exp(a.sum() / na.sum())), float(np.exp(b.sum() / nb.sum()))
    ratio = lambda idx: ppl(a, na)(idx) / ppl(b, nb)(idx)  # noqa: E731  (same idx: paired)
    return {
        "tax/perplexity": metric(value, *bootstrap_interval(n, ppl(a, na), seed=seed), n),
        "tax/base_perplexity": metric(base_value, *bootstrap_interval(n, ppl(b, nb), seed=seed), n),
        "tax/perplexity_ratio": metric(value / base_value,
                                       *bootstrap_interval(n, ratio, seed=seed), n),
    }


def exact_match_delta(model_correct: Sequence[bool], base_correct: Sequence[bool],
                      families: Sequence[str] | None = None, *, seed: int = 0) -> dict:
    """Metric entry for mean(model correct) − mean(base correct) on paired examples."""
    a = [float(x) for x in model_correct]
    b = [float(x) for x in base_correct]
    if len(a) != len(b):
        raise ValueError(f"model and base must be scored on the same examples, got {len(a)} "
                         f"and {len(b)}")
    if not a:
        return metric(float("nan"), None, None, 0)
    diff, lo, hi = paired_bootstrap_diff(a, b, seed=seed)
    slices: dict[str, dict] = {}
    if families is not None:
        groups: dict[str, list[int]] = {}
        for i, fam in enumerate(families):
            groups.setdefault(str(fam), []).append(i)
        slices["family"] = {}
        for fam, idx in sorted(groups.items()):
            d, dlo, dhi = paired_bootstrap_diff([a[i] for i in idx], [b[i] for i in idx], seed=seed)
            slices["family"][fam] = {"value": d, "lo": dlo, "hi": dhi, "n": len(idx)}
    return metric(diff, lo, hi, len(a), slices)


def _note(text: str) -> dict:
    return {"kind": "note", "note": text}


@register_suite("tax")
def tax(ctx: EvalContext) -> SuiteResult:
    if ctx.base is None:
        raise ConfigError("suite 'tax' compares the model with its base model: give one with "
                          "--base (EvalContext.base)")
    base = ctx.base
    samples: list[dict] = []

    docs = heldout_documents(ctx)
    nll, n_tok = document_nll(ctx.model, ctx.tokenizer, docs)
    base_nll, base_n_tok = document_nll(base.model, base.tokenizer, docs)
    metrics = perplexity_metrics(nll, n_tok, base_nll, base_n_tok, seed=ctx.seed)
    if ctx.tokenizer is not base.tokenizer and \
            ctx.tokenizer.get_vocab() != base.tokenizer.get_vocab():
        samples.append(_note("the model and the base tokenize differently; per-token "
                             "perplexities (and their ratio) compare different units"))
    for d, a, na, b, nb in zip(docs, nll, n_tok, base_nll, base_n_tok):
        samples.append({"kind": "perplexity", "prompt": d[:200], "n_tokens": na,
                        "nll": a, "base_nll": b,
                        "judgment": "worse than base" if a / max(na, 1) > b / max(nb, 1)
                        else "not worse than base",
                        "why": f"nats/token {a / max(na, 1):.3f} vs base {b / max(nb, 1):.3f}"})

    rows = ctx.take(build_world(ctx.world).heldout, by="family")
    mine = exact_match_eval(ctx.model, ctx.tokenizer, ctx.template, rows, ctx.decode)["samples"]
    theirs = exact_match_eval(base.model, base.tokenizer, ctx.template, rows, ctx.decode)["samples"]
    metrics["tax/exact_match"] = rate_metric(mine, "correct", ["family"])
    metrics["tax/base_exact_match"] = rate_metric(theirs, "correct", ["family"])
    metrics["tax/exact_match_delta"] = exact_match_delta(
        [s["correct"] for s in mine], [s["correct"] for s in theirs],
        [r["family"] for r in rows], seed=ctx.seed)
    for s, t in zip(mine, theirs):
        samples.append({"kind": "exact_match", "prompt": s["prompt"], "family": s["family"],
                        "response": s["response"], "base_response": t["response"],
                        "answer": s["answer"], "correct": s["correct"],
                        "base_correct": t["correct"],
                        "judgment": {(True, True): "both correct", (True, False): "model only",
                                     (False, True): "base only",
                                     (False, False): "both wrong"}[(s["correct"], t["correct"])],
                        "why": f"expected {s['answer']!r}"})
    return SuiteResult(metrics, samples)

