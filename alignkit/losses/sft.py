"""Supervised fine-tuning objective: negative log-likelihood of the response tokens.

Pure functions of per-token log-probs; no model, tokenizer or config inside.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) for each row of `logits`.

    logits: (N, V) — only the positions that carry a label (never the whole sequence);
    targets: (N,) token ids. Returns (N,) float32.
    Computed with the fused cross-entropy kernel in float32, which avoids materialising a
    second (N, V) log-softmax tensor.
    """
    return -F.cross_entropy(logits.float(), targets, reduction="none")


def sft_nll(token_logps: torch.Tensor, token_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Unreduced response-only NLL: (N,) -> (N,), each token's −w·log p.

    The SFT stage reduces it as a **per-batch token average**: the sum over every trainable
    token of the optimizer step divided by the (weighted) number of those tokens. A per-sequence
    average would give a 3-token answer the same total weight as a 300-token one and make the
    loss depend on how examples are packed or accumulated; the token average is invariant to
    both (the engine divides by the token count of the whole accumulated step).
    """
    nll = -token_logps
    return nll if token_weights is None else nll * token_weights
