"""`drift`: how far the model moved from a reference, as sequence-level KL(π ‖ π_ref).

    KL(π ‖ π_ref) = E_x E_{y~π(·|x)} [ log π(y|x) − log π_ref(y|x) ]

estimated by Monte Carlo on held-out prompts x (one sample y per prompt):

    KL ≈ (1/N) Σ_i [ log π(y_i|x_i) − log π_ref(y_i|x_i) ],   y_i ~ π(·|x_i),

with log π(y|x) the sum of the response's token log-probs (`alignkit.rollout.logprobs`). This is
the "k1" estimator of the RLHF KL penalty (Schulman 2020, "Approximating KL Divergence"): each
term can be negative, their expectation is the KL (≥ 0).

**Unbiased only for samples from π itself.** Greedy decoding, temperature ≠ 1, top-p or top-k
sample from a *different* distribution, and the average above is then not the KL. The suite
therefore ignores the context's temperature/top-p/top-k and samples with temperature 1.0,
top_p 1.0, top_k 0 (off), with the context's `max_new_tokens`, `batch_size` and sampling seed;
the decode settings it used are written to samples.jsonl (a `{"kind": "note"}` record and on every
sample).

What y is. A response ends at a stop token (EOS / end-of-turn) or after `max_new_tokens` tokens.
The stop token is part of the sampled sequence, so its log-prob is counted: when several ids stop
generation, the event "stopped here" has probability Σ_s π(s | x, y), so the suite adds
log Σ_s π(s | x, y) under each model. A truncated response (no stop within the budget) is
scored as the prefix it is: that is the KL between the two models' distributions over
"sequences cut at max_new_tokens", the quantity the budget defines.

Metrics
- `drift/kl`: the mean above, with a percentile-bootstrap interval over prompts
  (`stats.mean_interval`, seed = the sampling seed).
- `drift/kl_per_token`: Σ_i KL_i / Σ_i n_i (n_i = tokens in y_i, the stop token included), with a
  bootstrap interval of that ratio over prompts.

Needs `ctx.reference` (a LoadedModel whose tokenizer has the same vocabulary): a ConfigError
names `--reference` otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from alignkit.contract.specs import DecodeSpec
from alignkit.errors import ConfigError
from alignkit.evals.stats import mean_interval
from alignkit.evals.suite import EvalContext, SuiteResult, metric, register_suite
from alignkit.evals.suites._intervals import bootstrap_interval, ratio_of_sums
from alignkit.world.build import build_world

LOGPROB_BATCH = 16  # rows per scoring forward


def sampling_decode(decode: DecodeSpec) -> DecodeSpec:
    """`decode` with pure ancestral sampling: temperature 1, top_p 1, top_k off."""
    return decode.model_copy(update={"temperature": 1.0, "top_p": 1.0, "top_k": 0})


def drift_metrics(policy_logps: Sequence[float], reference_logps: Sequence[float],
                  n_tokens: Sequence[int], *, seed: int = 0) -> dict[str, dict]:
    """`drift/kl` and `drift/kl_per_token` from per-sample sequence log-probs.

    policy_logps[i] = log π(y_i|x_i), reference_logps[i] = log π_ref(y_i|x_i), n_tokens[i] = |y_i|.
    """
    if not len(policy_logps) == len(reference_logps) == len(n_tokens):
        raise ValueError(f"policy_logps, reference_logps and n_tokens must have the same length, "
                         f"got {len(policy_logps)}, {len(reference_logps)}, {len(n_tokens)}")
    if not policy_logps:
        raise ValueError("no samples: drift needs at least one held-out prompt")
    diffs = np.asarray(policy_logps, dtype=np.float64) - np.asarray(reference_logps, np.float64)
    tokens = np.asarray(n_tokens, dtype=np.float64)
    n = diffs.size
    kl, lo, hi = mean_interval(diffs, seed=seed)
    total = float(tokens.sum())
    per_token = float(diffs.sum()) / total if total > 0 else float("nan")
    pt_lo, pt_hi = bootstrap_interval(n, ratio_of_sums(diffs, tokens), seed=seed)
    return {"drift/kl": metric(kl, lo, hi, n),
            "drift/kl_per_token": metric(per_token, pt_lo, pt_hi, n)}


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def sampled_sequence_logprobs(model: Any, prompts: Sequence[Sequence[int]],
                              responses: Sequence[Sequence[int]], stopped: Sequence[bool],
                              stop_ids: Sequence[int],
                              batch_size: int = LOGPROB_BATCH) -> list[float]:
    """log π(y|x) of sampled responses, adding log Σ_s π(s|x, y) where y ended at a stop token.

    With stop ids S: log π(y, stop) = log π(y) + log Σ_{s∈S} π(s|x,y) = logsumexp_s log π(y+[s]).
    """
    from alignkit.rollout.logprobs import sequence_logprobs

    pairs: list[tuple[int, list[int]]] = []  # (sample index, scored token ids)
    for i, (resp, done) in enumerate(zip(responses, stopped)):
        if done:
            pairs.extend((i, list(resp) + [s]) for s in stop_ids)
        else:
            pairs.append((i, list(resp)))
    scores = sequence_logprobs(model, [prompts[i] for i, _ in pairs], [y for _, y in pairs],
                               batch_size)
    grouped: list[list[float]] = [[] for _ in prompts]
    for (i, _), s in zip(pairs, scores):
        grouped[i].append(s)
    return [_logsumexp(g) for g in grouped]


def _same_vocabulary(a: Any, b: Any) -> bool:
    return a is b or a.get_vocab() == b.get_vocab()


@register_suite("drift")
def drift(ctx: EvalContext) -> SuiteResult:
    from alignkit.data.encode import encode_prompt
    from alignkit.rollout.generate import generate, stop_token_ids

    if ctx.reference is None:
        raise ConfigError("suite 'drift' measures KL to a reference model: give one with "
                          "--reference (EvalContext.reference)")
    if not _same_vocabulary(ctx.tokenizer, ctx.reference.tokenizer):
        raise ConfigError("suite 'drift': the --reference model's tokenizer has a different "
                          "vocabulary from the evaluated model's; KL over token sequences needs "
                          "the same tokens")
    rows = ctx.take(build_world(ctx.world).heldout, by="family")
    decode = sampling_decode(ctx.decode)
    prompts = [encode_prompt(ctx.tokenizer, ctx.template, r["messages"][:-1]) for r in rows]
    responses = generate(ctx.model, ctx.tokenizer, prompts, decode)
    stops = stop_token_ids(ctx.tokenizer, ctx.model)
    # generate() drops the stop token; a response shorter than the budget ended on one.
    stopped = [len(y) < decode.max_new_tokens for y in responses]
    mine = sampled_sequence_logprobs(ctx.model, prompts, responses, stopped, stops)
    ref = sampled_sequence_logprobs(ctx.reference.model, prompts, responses, stopped, stops)
    n_tokens = [len(y) + int(done) for y, done in zip(responses, stopped)]
    metrics = drift_metrics(mine, ref, n_tokens, seed=decode.seed)
    used = decode.model_dump(mode="json")
    samples: list[dict] = [{
        "kind": "note", "decode": used,
        "note": "drift samples y ~ π with temperature 1.0, top_p 1.0, top_k off (the context's "
                "temperature/top_p/top_k are ignored): only samples from π itself give an "
                "unbiased KL estimate"}]
    for r, y, done, lp, lr in zip(rows, responses, stopped, mine, ref):
        samples.append({
            "prompt": r["messages"][-2]["content"], "family": r["family"],
            "response": ctx.tokenizer.decode(y, skip_special_tokens=True),
            "n_tokens": len(y) + int(done), "stopped": done, "logp": lp, "ref_logp": lr,
            "kl": lp - lr, "judgment": f"log-ratio {lp - lr:.4f}",
            "why": f"log π(y|x) = {lp:.4f}, log π_ref(y|x) = {lr:.4f}",
            "decode_temperature": used["temperature"], "decode_seed": used["seed"]})
    return SuiteResult(metrics, samples)
