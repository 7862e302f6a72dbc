"""Scalar reward head on a causal-LM backbone, pooled at the last non-padding token.

`RewardModel(lm)` runs the backbone of a ``*ForCausalLM`` (its LM head is never applied), takes
the hidden state of each row's **last real token** and maps it to one number with a linear layer
(the usual RLHF reward model: Ouyang et al. 2022, Sec. 3.5; Stiennon et al. 2020). The last real
token is found from the attention mask, not from token ids (the pad id is often the EOS id,
which also ends every real reply), so left and right padding pool the same position of the same
sequence: index = (position of the last 1 in the mask). Position ids are recomputed from the mask
(0..n-1 over real tokens) so RoPE sees a left-padded row as if it were unpadded.

Saved format (`save_reward_model(model, tokenizer, DIR)`), documented because other tools read it:

    DIR/config.json, model.safetensors, tokenizer files   the backbone as a Hugging Face causal LM
                                                           (LoRA merged; loads with transformers)
    DIR/reward_head.safetensors                            "score.weight" (1, H), "score.bias" (1,)
    DIR/reward_config.json                                 {"format": "alignkit-reward-v1",
                                                            "pooling": "last_non_padding",
                                                            "hidden_size": H}

    >>> import torch
    >>> from alignkit.models.loading import load_model, register_builtin, _doc_tiny_factory
    >>> register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    >>> rm = RewardModel(load_model("builtin:doc-tiny").model)
    >>> right = rm(torch.tensor([[3, 4, 0]]), torch.tensor([[1, 1, 0]]))
    >>> left = rm(torch.tensor([[0, 3, 4]]), torch.tensor([[0, 1, 1]]))
    >>> right.shape, torch.allclose(right, left, atol=1e-5)
    (torch.Size([1]), True)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.errors import CheckpointError, ConfigError

FORMAT = "alignkit-reward-v1"
HEAD_FILE = "reward_head.safetensors"
CONFIG_FILE = "reward_config.json"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B,) index of each row's last real token (any padding side).

    Right padding [1, 1, 0] -> 1; left padding [0, 1, 1] -> 2; a row without padding -> T-1.

        >>> last_token_index(torch.tensor([[1, 1, 0], [0, 1, 1], [1, 1, 1]])).tolist()
        [1, 2, 2]
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask: expected shape (B, T), got {tuple(attention_mask.shape)}")
    real = attention_mask.bool()
    if not bool(real.any(dim=1).all()):
        raise ValueError("attention_mask: a row has no real token to pool")
    T = real.shape[1]
    # Flip so the last 1 becomes the first; argmax of a bool tensor returns the first True.
    return T - 1 - real.flip(1).long().argmax(dim=1)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T) position ids 0..n-1 over the real tokens (0 on padding).

        >>> positions_from_mask(torch.tensor([[0, 1, 1], [1, 1, 0]])).tolist()
        [[0, 0, 1], [0, 1, 0]]
    """
    m = attention_mask.long()
    return ((m.cumsum(1) - 1) * m).clamp(min=0)


class RewardModel(nn.Module):
    """A causal LM backbone + `score` = Linear(H, 1); forward -> rewards (B,).

    `lm` may be a transformers ``*ForCausalLM`` or a peft model wrapping one (LoRA): the LoRA
    layers live inside the backbone, so they are used; the LM head is not. The head is a plain
    `nn.Linear` outside any peft wrapper, so it is always fully trained.
    """

    def __init__(self, lm: nn.Module, head_init_std: float | None = None):
        super().__init__()
        from alignkit.models.forward import backbone_and_head

        self.lm = lm
        backbone, _ = backbone_and_head(lm)
        hidden = backbone.config.hidden_size
        self.score = nn.Linear(hidden, 1)
        # Small init (std 1/sqrt(H+1), as Stiennon et al. 2020 App. of their reward head): the
        # initial rewards are near 0, so the initial Bradley-Terry loss is near log 2.
        std = head_init_std if head_init_std is not None else 1.0 / (hidden + 1) ** 0.5
        nn.init.normal_(self.score.weight, std=std)
        nn.init.zeros_(self.score.bias)
        self.score.to(next(lm.parameters()).dtype)

    @property
    def hidden_size(self) -> int:
        return self.score.in_features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) 2-D, either padding side -> rewards (B,)."""
        from alignkit.models.forward import backbone_and_head

        backbone, _ = backbone_and_head(self.lm)
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask)
        out = backbone(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=position_ids, use_cache=False)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state  # (B, T, H)
        idx = last_token_index(attention_mask)  # (B,)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]  # (B, H)
        return self.score(pooled).squeeze(-1).float()  # (B,)


def save_reward_model(model: RewardModel, tokenizer: Any, out_dir: str | Path) -> str:
    """Write the format in the module docstring; returns the digest ("mdl-…") of OUT_DIR."""
    from safetensors.torch import save_file

    from alignkit.contract.digest import digest_dir
    from alignkit.models.loading import save_model

    out = Path(out_dir)
    save_model(model.lm, tokenizer, out)  # atomic; LoRA merged into a copy
    head = {"score.weight": model.score.weight.detach().cpu().contiguous(),
            "score.bias": model.score.bias.detach().cpu().contiguous()}
    save_file(head, str(out / HEAD_FILE))
    (out / CONFIG_FILE).write_text(json.dumps(
        {"format": FORMAT, "pooling": "last_non_padding", "hidden_size": model.hidden_size},
        indent=2, sort_keys=True))
    return digest_dir(out, "mdl")


def load_reward_model(path: str | Path) -> tuple[RewardModel, Any]:
    """(RewardModel, tokenizer) from a directory written by `save_reward_model`."""
    from safetensors.torch import load_file

    from alignkit.models.loading import load_model

    p = Path(path)
    if not (p / CONFIG_FILE).is_file() or not (p / HEAD_FILE).is_file():
        raise ConfigError(f"{p} is not a reward model directory (needs {CONFIG_FILE} and "
                          f"{HEAD_FILE}; write one with save_reward_model)")
    meta = json.loads((p / CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p / CONFIG_FILE}: format {meta.get('format')!r}, expected {FORMAT!r}")
    loaded = load_model(str(p))
    model = RewardModel(loaded.model)
    head = load_file(str(p / HEAD_FILE))
    if tuple(head["score.weight"].shape) != (1, model.hidden_size):
        raise CheckpointError(f"{p / HEAD_FILE}: score.weight has shape "
                              f"{tuple(head['score.weight'].shape)}, expected (1, {model.hidden_size})")
    model.score.load_state_dict({"weight": head["score.weight"], "bias": head["score.bias"]})
    model.eval()
    return model, loaded.tokenizer


__all__ = ["RewardModel", "last_token_index", "load_reward_model", "positions_from_mask",
           "save_reward_model"]
