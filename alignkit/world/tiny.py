"""The world's tiny Llama-architecture model (about 2 M parameters with the default vocabulary).

Sized so that pretraining on the world corpus takes a couple of minutes on two CPU cores.
"""
from __future__ import annotations

from typing import Any

TINY_ARCH = dict(
    hidden_size=192, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
    intermediate_size=512, max_position_embeddings=512, tie_word_embeddings=True,
    rope_theta=10000.0, rms_norm_eps=1e-5,
)


def tiny_model(tokenizer: Any, seed: int = 0, **overrides: Any):
    """A randomly initialised LlamaForCausalLM whose vocabulary matches `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = {**TINY_ARCH, **overrides}
    config = LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **arch)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def world_tiny_factory():
    """`builtin:world-tiny`: untrained tiny model + the default world's tokenizer."""
    from alignkit.world.build import build_world
    from alignkit.world.tokenizer import train_world_tokenizer

    world = build_world()
    tokenizer = train_world_tokenizer(world.tokenizer_texts(), vocab_size=world.config.vocab_size)
    return tiny_model(tokenizer), tokenizer
