"""What the over-optimisation study measures on a set of prompts: samples, proxy, gold, KL.

For a policy π, a reference π_ref, a proxy reward model r̂ and the world's gold scorer g
(exact match against the task's answer, `alignkit.world.rewards.exact_match_reward`):

- **samples**: k completions per prompt from π at the rollout temperature T, drawn with a
  seeded generator (the same seed for every policy measured, so checkpoints differ by their
  weights and not by their luck: common random numbers);
- **proxy** = mean r̂(x, y) and **gold** = mean g(x, y) over the samples;
- **KL(π ‖ π_ref)** = E_{y ~ π}[log π(y|x) − log π_ref(y|x)], estimated by the mean over the
  samples of the summed per-token log-ratio (the k1 estimator of Schulman 2020 at sequence
  level: unbiased, though single values can be negative by chance), with both policies'
  softmax taken at temperature T, as the rl stage does; d = sqrt(max(KL, 0)).

Completions are scored once per distinct (prompt, text): a confident policy repeats itself,
and the proxy is deterministic, so duplicates would only cost time.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from alignkit.contract.specs import DecodeSpec


@dataclass
class EvalPrompts:
    """The prompts a study measures on, with their checkable answers."""

    messages: list[list[dict]]  # each prompt's conversation (ends with a user message)
    answers: list[str]  # the gold answer of each
    families: list[str]  # the world task family of each
    ids: list[list[int]]  # each prompt's token ids (chat template + generation prompt)


def world_train_rows(world, families: Sequence[str] | None = None) -> list[dict]:
    """The world's SFT-train rows (the split the rl stage optimises on), of `families` only
    when given, in the world's order."""
    return [r for r in world.sft if families is None or r["family"] in families]


def world_eval_prompts(world, n: int, seed: int, tokenizer, template,
                       families: Sequence[str] | None = None) -> EvalPrompts:
    """The first `n` rows of a seeded shuffle of `world_train_rows(world, families)`, encoded
    with the policy's chat template."""
    from alignkit.data.encode import encode_prompt

    rows = world_train_rows(world, families)
    if n > len(rows):
        from alignkit.errors import ConfigError

        raise ConfigError(f"n_prompts = {n} but the world has only {len(rows)} SFT-train prompts"
                          + (f" in families {list(families)}" if families else ""))
    order = list(range(len(rows)))
    random.Random(f"overoptimization-prompts-{seed}").shuffle(order)
    chosen = [rows[i] for i in order[:n]]
    messages = [list(r["messages"][:-1]) for r in chosen]
    return EvalPrompts(messages=messages, answers=[r["answer"] for r in chosen],
                       families=[r["family"] for r in chosen],
                       ids=[list(encode_prompt(tokenizer, template, m, line=i + 1))
                            for i, m in enumerate(messages)])


@dataclass
class Samples:
    """k completions for each of P prompts, in prompt-major order (row = p·k + j)."""

    prompt_index: list[int]  # (P·k,) the prompt each completion answers
    texts: list[str]  # (P·k,) completion text (end-of-turn dropped)
    logps: torch.Tensor  # (P·k,) float64 log π_T(y | x), summed over response tokens
    lengths: torch.Tensor  # (P·k,) response tokens (end-of-turn included)
    rollout: Any  # the alignkit.rollout.sampler.Rollout they came from


def draw(model, tokenizer, prompts: EvalPrompts, k: int, decode: DecodeSpec,
         seed: int) -> Samples:
    """k samples per prompt from `model` with `decode` (temperature > 0), seeded by `seed`."""
    from alignkit.rollout.sampler import completion_texts, sample

    device = next(model.parameters()).device
    rows = [p for p in range(len(prompts.ids)) for _ in range(k)]
    generator = torch.Generator(device=device).manual_seed(seed)
    rollout = sample(model, tokenizer, [prompts.ids[p] for p in rows], decode,
                     generator=generator)
    return Samples(prompt_index=rows, texts=completion_texts(rollout, tokenizer, decode.stop),
                   logps=rollout.logprobs.double().sum(dim=1).cpu(),
                   lengths=rollout.lengths.cpu(), rollout=rollout)


@torch.no_grad()
def reference_logps(reference, samples: Samples, batch_size: int) -> torch.Tensor:
    """(P·k,) float64 log π_ref,T(y | x) of the samples, summed over response tokens."""
    from alignkit.rollout.logprobs import rollout_token_logprobs

    r = samples.rollout
    was_training = reference.training
    reference.eval()
    try:
        parts = []
        for s in range(0, len(r), batch_size):
            sl = slice(s, s + batch_size)
            lp, _ = rollout_token_logprobs(reference, r.prompt_ids[sl], r.prompt_mask[sl],
                                           r.response_ids[sl], r.response_mask[sl],
                                           r.temperature)
            parts.append(lp.double().sum(dim=1).cpu())
    finally:
        reference.train(was_training)
    return torch.cat(parts)


def score_unique(scorer, prompts: EvalPrompts, samples: Samples) -> tuple[list[float], list[float]]:
    """(proxy, gold) per sample; the proxy runs once per distinct (prompt, text)."""
    from alignkit.world.rewards import exact_match_reward

    keys = list(dict.fromkeys(zip(samples.prompt_index, samples.texts)))
    proxy_of: dict[tuple[int, str], float] = {}
    if keys:
        values, _ = scorer(prompts=[prompts.messages[p] for p, _ in keys],
                           completions=[t for _, t in keys])
        proxy_of = {key: float(v) for key, v in zip(keys, values.tolist())}
    proxy = [proxy_of[(p, t)] for p, t in zip(samples.prompt_index, samples.texts)]
    gold = exact_match_reward([""] * len(samples.texts), samples.texts,
                              [prompts.answers[p] for p in samples.prompt_index])
    return proxy, gold


def per_prompt_means(values: Sequence[float], prompt_index: Sequence[int], n_prompts: int
                     ) -> list[float]:
    """Mean of `values` over each prompt's samples.

        >>> per_prompt_means([1.0, 0.0, 1.0, 1.0], [0, 0, 1, 1], 2)
        [0.5, 1.0]
    """
    sums, counts = [0.0] * n_prompts, [0] * n_prompts
    for v, p in zip(values, prompt_index):
        sums[p] += float(v)
        counts[p] += 1
    return [s / c if c else 0.0 for s, c in zip(sums, counts)]


__all__ = ["EvalPrompts", "Samples", "draw", "per_prompt_means", "reference_logps",
           "score_unique", "world_eval_prompts", "world_train_rows"]
