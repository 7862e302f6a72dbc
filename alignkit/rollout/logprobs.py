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


# ----------------------------------------------------------------------------- RL rollouts
# Appended for the `rl` stage (alignkit.rollout.sampler): the same log π(y_t | x, y_<t), on the
# sampler's tensor layout, at a sampling temperature, with gradients when enabled.

def rollout_token_logprobs(model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                           response_ids: torch.Tensor, response_mask: torch.Tensor,
                           temperature: float = 1.0, *, with_entropy: bool = False
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log π_T(y_t | x, y_<t) = log softmax(z_t / T)[y_t] of a batch of rollouts.

    Layout of `alignkit.rollout.sampler.Rollout`: prompt_ids / prompt_mask (B, P) left-padded,
    response_ids / response_mask (B, R) right-padded. One forward over ``cat(prompt, response)``
    with position ids counting real tokens only; the logits z_t at column P-1+t predict response
    token t. The LM head runs only at response tokens; T is the sampling temperature (the
    sampler records log-probs of the same tempered, untruncated softmax, so at the sampled
    policy's weights the two agree up to float rounding).

    Returns ``(logps (B, R) float32, entropy (B, R) float32 or None)``, 0 where the response
    mask is 0; ``entropy`` is H(π_T(. | x, y_<t)) in nats when ``with_entropy`` (detached: it
    is logged, not trained). Gradients flow through ``logps`` when called with grad enabled
    (the RL training forward); the model's train/eval mode is left to the caller.
    """
    from alignkit.losses.rl import entropy_from_logits
    from alignkit.losses.sft import token_logps
    from alignkit.models.forward import backbone_and_head
    from alignkit.models.heads import positions_from_mask

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (greedy rollouts are "
                         "rescored at T = 1)")
    if prompt_ids.shape != prompt_mask.shape or response_ids.shape != response_mask.shape:
        raise ValueError("ids and masks must have the same shape: prompt "
                         f"{tuple(prompt_ids.shape)} vs {tuple(prompt_mask.shape)}, response "
                         f"{tuple(response_ids.shape)} vs {tuple(response_mask.shape)}")
    B, P = prompt_ids.shape
    R = response_ids.shape[1]
    if P == 0:
        raise ValueError("the prompt block is empty; the first response token needs a context")
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P+R)
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    backbone, head = backbone_and_head(model)
    out = backbone(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=positions_from_mask(attention_mask), use_cache=False)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state  # (B, P+R, H)
    selected = response_mask.bool()  # (B, R)
    logits = head(hidden[:, P - 1:P + R - 1][selected]).float() / temperature  # (N, V)
    zeros = torch.zeros(B, R, dtype=torch.float32, device=hidden.device)
    logps = zeros.masked_scatter(selected, token_logps(logits, response_ids[selected]))
    entropy = None
    if with_entropy:  # a logged metric: no graph (it would hold another (N, V) tensor)
        with torch.no_grad():
            entropy = zeros.masked_scatter(selected, entropy_from_logits(logits.detach()))
    return logps, entropy


__all__ += ["rollout_token_logprobs"]
