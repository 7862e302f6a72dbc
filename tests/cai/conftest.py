"""Shared fixtures: a small world, its tokenizer, and a tiny random chat model saved to disk."""
import pytest

from alignkit.world.build import WorldConfig

# Small enough that building it (facts, one corpus pass, a few tasks) takes well under a second.
SMALL_WORLD = WorldConfig(corpus_passes=1, sft_per_family=12, heldout_per_family=6, n_people=16)


@pytest.fixture(scope="session")
def small_tokenizer():
    """The world's byte-level BPE with its ChatML template, trained on the small world only."""
    from alignkit.world.build import build_world
    from alignkit.world.tokenizer import train_world_tokenizer

    return train_world_tokenizer(build_world(SMALL_WORLD).tokenizer_texts(), vocab_size=400)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, small_tokenizer):
    """A 1-layer, 32-wide random Llama with that tokenizer, saved in Hugging Face format."""
    from alignkit.models.loading import save_model
    from alignkit.world.tiny import tiny_model

    path = tmp_path_factory.mktemp("cai-model") / "tiny"
    save_model(tiny_model(small_tokenizer, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, intermediate_size=64),
               small_tokenizer, path)
    return str(path)
