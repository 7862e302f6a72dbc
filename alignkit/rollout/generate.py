"""Batched generation with a KV cache from token-id prompts.

Prompts come already tokenised (by `alignkit.data.encode.encode_prompt`, so generation sees
exactly the prefix training saw) and are left-padded so every prompt ends at the same column.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from alignkit.contract.specs import DecodeSpec


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """EOS / end-of-turn ids: the tokenizer's EOS plus the model's generation-config EOS ids."""
    ids = {tokenizer.eos_token_id}
    if model is not None and getattr(model, "generation_config", None) is not None:
        eos = model.generation_config.eos_token_id
        ids |= set(eos if isinstance(eos, (list, tuple)) else [eos])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], decode: DecodeSpec,
             *, progress: Any = None) -> list[list[int]]:
    """Generate one response per prompt; returns the new token ids, stop token excluded."""
    was_training = model.training
    model.eval()
    stops = stop_token_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    device = next(model.parameters()).device
    generator_seed = decode.seed
    out: list[list[int]] = []
    for start in range(0, len(prompts), decode.batch_size):
        chunk = prompts[start:start + decode.batch_size]
        T = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), T), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), T), dtype=torch.long)
        for i, p in enumerate(chunk):
            ids[i, T - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, T - len(p):] = 1
        kwargs: dict[str, Any] = dict(max_new_tokens=decode.max_new_tokens, eos_token_id=stops,
                                      pad_token_id=pad)
        if decode.temperature == 0:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            torch.manual_seed(generator_seed + start)
            kwargs.update(do_sample=True, temperature=decode.temperature, top_p=decode.top_p,
                          top_k=decode.top_k or None)
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        for row in gen[:, T:].tolist():
            cut = next((j for j, t in enumerate(row) if t in stops), len(row))
            out.append(row[:cut])
        if progress is not None:
            progress(len(out), len(prompts))
    if was_training:
        model.train()
    return out
