"""Log-probabilities of given responses under a causal LM: per token and summed per sequence.

For a prompt x (token ids x_1..x_m) and a response y (y_1..y_n) the model's sequence log-prob is

    log π(y | x) = Σ_{t=1..n} log π(y_t | x, y_<t)

Prompt and response are concatenated into one row; the logits at position m+t-1 predict y_t, so
only response positions carry labels. Rows are right-padded into batches of `batch_size` and run
through `alignkit.models.forward.TokenScorer`, which applies the LM head only at the labelled
positions (and, for Llama-like models, drops the padding altogether). The model runs in eval mode
(no dropout) under `torch.no_grad()`; its previous train/eval mode is restored afterwards.

    >>> from alignkit.models.loading import load_model, register_builtin, _doc_tiny_factory
    >>> register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    >>> lm = load_model("builtin:doc-tiny").model
    >>> per_token = token_logprobs(lm, [[3, 4], [5]], [[6, 7], []])
    >>> [len(t) for t in per_token]
    [2, 0]
    >>> seq = sequence_logprobs(lm, [[3, 4], [5]], [[6, 7], []])
    >>> abs(seq[0] - sum(per_token[0])) < 1e-5, seq[1]
    (True, 0.0)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alignkit.models.forward import IGNORE, TokenScorer


def _check(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]],
           batch_size: int) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must pair up, got {len(prompts)} prompts and "
                         f"{len(responses)} responses")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            # The first response token needs at least one token of context to be predicted from.
            raise ValueError(f"prompts[{i}] is empty; give at least one context token (e.g. BOS)")


@torch.no_grad()
def token_logprobs(model: Any, prompts: Sequence[Sequence[int]],
                   responses: Sequence[Sequence[int]], batch_size: int = 16) -> list[list[float]]:
    """log π(y_t | x, y_<t) for every token of every response, as float lists (one per pair).

    prompts[i] (m_i,) and responses[i] (n_i,) are token ids; an empty response gives []. Pairs
    are batched in order of total length (less padding) and returned in the input order.
    """
    _check(prompts, responses, batch_size)
    out: list[list[float]] = [[] for _ in prompts]
    todo = sorted((i for i, r in enumerate(responses) if len(r) > 0),
                  key=lambda i: len(prompts[i]) + len(responses[i]))
    if not todo:
        return out
    scorer = TokenScorer(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            rows = [list(prompts[i]) + list(responses[i]) for i in chunk]
            T = max(len(r) for r in rows)
            ids = torch.zeros((len(rows), T), dtype=torch.long)  # pad id is irrelevant: masked
            labels = torch.full((len(rows), T), IGNORE, dtype=torch.long)
            mask = torch.zeros((len(rows), T), dtype=torch.long)
            for b, (i, row) in enumerate(zip(chunk, rows)):
                m = len(prompts[i])
                ids[b, :len(row)] = torch.tensor(row, dtype=torch.long)
                labels[b, m:len(row)] = ids[b, m:len(row)]
                mask[b, :len(row)] = 1
            logps, _ = scorer(ids.to(device), labels.to(device), mask.to(device))  # (N,)
            # TokenScorer returns the labelled positions row by row (row-major order).
            flat = logps.float().cpu().tolist()
            pos = 0
            for i in chunk:
                n = len(responses[i])
                out[i] = flat[pos:pos + n]
                pos += n
            if pos != len(flat):
                raise RuntimeError(f"scored {len(flat)} tokens but the batch holds {pos} "
                                   "response tokens")
    finally:
        model.train(was_training)
    return out


def sequence_logprobs(model: Any, prompts: Sequence[Sequence[int]],
                      responses: Sequence[Sequence[int]], batch_size: int = 16) -> list[float]:
    """log π(y | x) = Σ_t log π(y_t | x, y_<t) per (prompt, response) pair (0.0 for an empty y)."""
    return [float(sum(t)) for t in token_logprobs(model, prompts, responses, batch_size)]


__all__ = ["sequence_logprobs", "token_logprobs"]
