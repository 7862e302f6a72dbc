"""Per-token value head on a causal-LM backbone, for PPO's critic.

`ValueModel(lm)` runs the backbone of a ``*ForCausalLM`` (its LM head is never applied) and maps
every position's hidden state h_t to one number with a linear layer:

    V(s_t) = w · h_t + b        s_t = the prompt and the response tokens before t

PPO (Schulman et al. 2017) with GAE needs V at every response token; Ziegler et al. 2019 and
Ouyang et al. 2022 initialise the value function from a language model so that it starts from
useful features. The `rl` stage passes a *copy* of the starting policy (the critic is a separate
network: value-loss gradients never move the policy's weights). The head starts at exactly 0
(w = 0, b = 0): the first advantages are then the plain returns, and no random offset has to be
unlearned. Position ids come from the attention mask (0..n-1 over real tokens), so left- and
right-padded rows give the same values at the same real tokens.

    >>> from alignkit.models.loading import load_model, register_builtin, _doc_tiny_factory
    >>> register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    >>> vm = ValueModel(load_model("builtin:doc-tiny").model)
    >>> vm(torch.tensor([[3, 4, 0]]), torch.tensor([[1, 1, 0]])).tolist()   # zero head
    [[0.0, 0.0, 0.0]]
"""
from __future__ import annotations

import torch
from torch import nn


class ValueModel(nn.Module):
    """A causal LM backbone + ``value_head`` = Linear(H, 1); forward -> values (B, T) float32.

    `lm` may be a transformers ``*ForCausalLM`` or a peft model wrapping one; LoRA layers inside
    the backbone are used, the LM head is not.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        from alignkit.models.forward import backbone_and_head

        self.lm = lm
        backbone, _ = backbone_and_head(lm)
        self.value_head = nn.Linear(backbone.config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(next(lm.parameters()).dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask (B, T), any padding side -> values (B, T) (0 on padding)."""
        from alignkit.models.forward import backbone_and_head
        from alignkit.models.heads import positions_from_mask

        backbone, _ = backbone_and_head(self.lm)
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask)
        out = backbone(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=position_ids, use_cache=False)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state  # (B, T, H)
        values = self.value_head(hidden).squeeze(-1).float()  # (B, T)
        return torch.where(attention_mask.bool(), values, torch.zeros((), device=values.device))


__all__ = ["ValueModel"]
