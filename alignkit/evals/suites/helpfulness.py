"""`helpfulness`: task accuracy on the world's held-out tasks, and win rate against a reference.

Metrics
- `helpfulness/exact_match`: exact match on the held-out task split (the scoring of
  `world_tasks`), sliced by `family`.
- With `ctx.reference` (a LoadedModel) **and** `ctx.judge`: both models answer the same held-out
  prompts (same chat template and DecodeSpec); the judge compares the replies twice, the model's
  first and the reference's first, and a verdict that changes with the order is a tie
  (`winrate.pairwise_verdicts`; Zheng et al. 2023 on position bias).
  - `helpfulness/win_rate`: (wins + ties/2) / n with a Wilson interval, sliced by `family`.
  - `helpfulness/lc_win_rate`: the length-controlled win rate of AlpacaEval 2 (Dubois, Galambosi,
    Liang & Hashimoto 2024, "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic
    Evaluators"): logit P(model wins) = θ + φ·tanh(Δlen / sd(Δlen)) fitted to the verdicts, reported
    as σ(θ), the win rate at equal length (`winrate.length_controlled_win_rate`). Length is the
    reply's number of characters. A small ridge penalty (`LC_L2`) keeps θ finite when the verdicts
    are separable (e.g. the model wins every comparison), which a few dozen prompts often are;
    the interval is a percentile bootstrap over prompts (`LC_BOOT` refits).
  - `helpfulness/judge_inconsistency`: share of prompts whose two verdicts disagreed; a high value
    means the judge mostly answers by position, and the win rate is mostly ties.
- Without a reference or a judge, the win-rate metrics are not reported (nothing is invented),
  and samples.jsonl says why in a note record `{"kind": "note", ...}`.

The judge receives the prompt as a string (`judges.prompt_text`: the user message, or a
transcript for multi-turn rows) and the two replies.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from alignkit.evals.exact_match import exact_match_eval
from alignkit.evals.judges import pairwise_judge, prompt_text
from alignkit.evals.suite import EvalContext, SuiteResult, metric, rate_metric, register_suite
from alignkit.evals.stats import RateEstimate, rate
from alignkit.evals.suites._intervals import bootstrap_interval
from alignkit.evals.winrate import (PairwiseResult, length_controlled_win_rate, pairwise_verdicts,
                                    win_rate)
from alignkit.world.build import build_world

LC_L2 = 1e-3  # ridge penalty of the LC fit: finite θ on separable verdicts, negligible otherwise
LC_BOOT = 300  # bootstrap refits for the LC interval


def judge_both_orders(judge: Callable, prompts: Sequence[str], model_replies: Sequence[str],
                      reference_replies: Sequence[str]) -> PairwiseResult:
    """Verdicts "a" (model wins) / "b" (reference wins) / "tie", judged in both orders."""
    return pairwise_verdicts(pairwise_judge(judge), prompts, model_replies, reference_replies)


def _lc_value(verdicts: Sequence[str], len_model: Sequence[int], len_ref: Sequence[int]) -> float:
    records = [{"preference": v, "len_a": la, "len_b": lb}
               for v, la, lb in zip(verdicts, len_model, len_ref)]
    return length_controlled_win_rate(records, l2=LC_L2).value


def win_rate_metrics(verdicts: Sequence[str], len_model: Sequence[int], len_ref: Sequence[int],
                     families: Sequence[str] | None = None, *, n_inconsistent: int = 0,
                     seed: int = 0) -> dict[str, dict]:
    """The win-rate metrics of this suite from per-prompt verdicts and reply lengths."""
    if not len(verdicts) == len(len_model) == len(len_ref):
        raise ValueError(f"verdicts, len_model and len_ref must have the same length, got "
                         f"{len(verdicts)}, {len(len_model)}, {len(len_ref)}")
    n = len(verdicts)
    overall = win_rate(verdicts)
    slices: dict[str, dict] = {}
    if families is not None:
        groups: dict[str, list[str]] = {}
        for v, fam in zip(verdicts, families):
            groups.setdefault(str(fam), []).append(v)
        slices["family"] = {f: _entry(win_rate(g)) for f, g in sorted(groups.items())}
    vs, la, lb = np.array(verdicts), np.array(len_model), np.array(len_ref)
    lc = _lc_value(verdicts, len_model, len_ref) if n else float("nan")
    lc_lo, lc_hi = bootstrap_interval(
        n, lambda idx: np.array([_lc_value(vs[i].tolist(), la[i].tolist(), lb[i].tolist())
                                 for i in idx]), n_boot=LC_BOOT, seed=seed)
    inconsistent = rate(n_inconsistent, n)
    return {
        "helpfulness/win_rate": metric(overall.value, overall.lo, overall.hi, n, slices),
        "helpfulness/lc_win_rate": metric(lc, lc_lo, lc_hi, n),
        "helpfulness/judge_inconsistency": metric(inconsistent.value, inconsistent.lo,
                                                  inconsistent.hi, n),
    }


def _entry(e: RateEstimate) -> dict:
    return {"value": e.value, "lo": e.lo, "hi": e.hi, "n": e.n}


def _note(text: str) -> dict:
    return {"kind": "note", "note": text}


@register_suite("helpfulness")
def helpfulness(ctx: EvalContext) -> SuiteResult:
    rows = ctx.take(build_world(ctx.world).heldout, by="family")
    res = exact_match_eval(ctx.model, ctx.tokenizer, ctx.template, rows, ctx.decode)
    samples = [{**s, "kind": "exact_match", "judgment": "correct" if s["correct"] else "wrong",
                "why": f"expected {s['answer']!r}"} for s in res["samples"]]
    metrics = {"helpfulness/exact_match": rate_metric(samples, "correct", ["family"])}
    missing = [opt for opt, val in (("--reference", ctx.reference), ("--judge", ctx.judge))
               if val is None]
    if missing:
        samples.append(_note("win_rate and lc_win_rate not computed: no "
                             f"{' and no '.join(missing)} given (they need a reference model "
                             "and a judge)"))
        return SuiteResult(metrics, samples)

    ref = exact_match_eval(ctx.reference.model, ctx.reference.tokenizer, ctx.template, rows,
                           ctx.decode)
    prompts = [prompt_text(r["messages"][:-1]) for r in rows]
    mine = [s["response"].strip() for s in res["samples"]]
    theirs = [s["response"].strip() for s in ref["samples"]]
    judged = judge_both_orders(ctx.judge, prompts, mine, theirs)
    families = [r["family"] for r in rows]
    metrics.update(win_rate_metrics(judged.verdicts, [len(x) for x in mine],
                                    [len(x) for x in theirs], families,
                                    n_inconsistent=judged.n_inconsistent, seed=ctx.seed))
    names = {"a": "model wins", "b": "reference wins", "tie": "tie"}
    for p, fam, a, b, v, ab, ba in zip(prompts, families, mine, theirs, judged.verdicts,
                                       judged.ab, judged.ba):
        samples.append({"kind": "win_rate", "prompt": p, "family": fam, "response": a,
                        "reference_response": b, "judgment": names[v],
                        "why": f"judge with the model's reply first: {ab}; "
                               f"with the reference's reply first: {ba}"})
    return SuiteResult(metrics, samples)
