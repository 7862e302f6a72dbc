"""RewardModel: pooling at the last real token (left and right padding), save/load, LoRA."""
import json

import pytest
import torch

from alignkit.errors import CheckpointError, ConfigError
from alignkit.models.heads import (RewardModel, last_token_index, load_reward_model,
                                   positions_from_mask, save_reward_model)
from alignkit.models.loading import _doc_tiny_factory, load_model, register_builtin


@pytest.fixture(scope="module")
def loaded():
    register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    return load_model("builtin:doc-tiny")


@pytest.fixture
def rm(loaded):
    torch.manual_seed(0)
    return RewardModel(_doc_tiny_factory()[0]).eval()


def test_last_token_index_by_hand():
    """Rows: right-padded [1 1 0 0] -> 1; left-padded [0 0 1 1] -> 3; full [1 1 1 1] -> 3;
    single token in the middle [0 1 0 0] -> 1 (holes are allowed: the last 1 wins)."""
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 0]])
    assert last_token_index(mask).tolist() == [1, 3, 3, 1]


def test_positions_from_mask_by_hand():
    """Left padding [0 0 1 1 1] -> positions [0 0 0 1 2] (real tokens count from 0)."""
    assert positions_from_mask(torch.tensor([[0, 0, 1, 1, 1]])).tolist() == [[0, 0, 0, 1, 2]]


def test_empty_row_is_an_error():
    with pytest.raises(ValueError, match="no real token"):
        last_token_index(torch.tensor([[1, 1], [0, 0]]))


def test_left_and_right_padding_give_the_same_reward(rm):
    """Two sequences of lengths 5 and 3, padded right and left, and each alone unpadded:
    the same three numbers (up to float rounding of the masked attention)."""
    a, b = [3, 4, 5, 6, 7], [8, 9, 10]
    pad = 0
    right_ids = torch.tensor([a, b + [pad, pad]])
    right_mask = torch.tensor([[1] * 5, [1, 1, 1, 0, 0]])
    left_ids = torch.tensor([a, [pad, pad] + b])
    left_mask = torch.tensor([[1] * 5, [0, 0, 1, 1, 1]])
    with torch.no_grad():
        right = rm(right_ids, right_mask)
        left = rm(left_ids, left_mask)
        alone = torch.stack([rm(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long))[0]
                             for s in (a, b)])
    torch.testing.assert_close(right, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=1e-5)
    # The pooled position matters: pooling the pad slot instead would give another number.
    with torch.no_grad():
        wrong = rm(right_ids, torch.ones_like(right_mask))
    assert abs(float(wrong[1] - alone[1])) > 1e-4


def test_reward_depends_on_the_head(rm):
    """score(h) = w·h + b: adding 1.5 to the bias adds exactly 1.5 to every reward."""
    ids, mask = torch.tensor([[3, 4, 5]]), torch.ones(1, 3, dtype=torch.long)
    with torch.no_grad():
        before = rm(ids, mask)
        rm.score.bias.add_(1.5)
        after = rm(ids, mask)
    torch.testing.assert_close(after - before, torch.tensor([1.5]))


def test_save_and_load_round_trip(rm, loaded, tmp_path):
    digest = save_reward_model(rm, loaded.tokenizer, tmp_path / "rm")
    assert digest.startswith("mdl-")
    meta = json.loads((tmp_path / "rm" / "reward_config.json").read_text())
    assert meta == {"format": "alignkit-reward-v1", "pooling": "last_non_padding",
                    "hidden_size": 16}
    again, tok = load_reward_model(tmp_path / "rm")
    ids, mask = torch.tensor([[3, 4, 5, 0]]), torch.tensor([[1, 1, 1, 0]])
    with torch.no_grad():
        torch.testing.assert_close(again(ids, mask), rm(ids, mask))
    # The backbone directory is a plain causal LM for transformers.
    assert load_model(str(tmp_path / "rm")).model.config.hidden_size == 16


def test_load_rejects_other_directories(tmp_path, rm, loaded):
    with pytest.raises(ConfigError, match="not a reward model"):
        load_reward_model(tmp_path)
    save_reward_model(rm, loaded.tokenizer, tmp_path / "rm")
    (tmp_path / "rm" / "reward_config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="format"):
        load_reward_model(tmp_path / "rm")


def test_lora_backbone_trains_adapters_and_head_only():
    from alignkit.models.lora import LoraSpec, apply_lora

    lm = apply_lora(_doc_tiny_factory()[0], LoraSpec(r=2))
    rm = RewardModel(lm)
    trainable = {n for n, p in rm.named_parameters() if p.requires_grad}
    assert {"score.weight", "score.bias"} <= trainable
    assert all("lora_" in n or n.startswith("score.") for n in trainable)
    r = rm(torch.tensor([[3, 4, 5]]), torch.ones(1, 3, dtype=torch.long))
    r.sum().backward()
    assert rm.score.weight.grad is not None
