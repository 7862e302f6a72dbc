"""Forward passes that score only the tokens a loss needs.

A causal LM's head turns every position into a full-vocabulary logit row; SFT, DPO and reward
losses need log-probs only at response positions. `TokenScorer` runs the backbone on the whole
sequence but applies the LM head only where labels are set, which on CPU saves most of the head's
FLOPs and all of its (B, T, V) float32 memory for prompt and padding positions.

Padding-free attention. A padded batch (2D mask, right padding) or a packed one (the 4D
block-diagonal causal mask of `alignkit.data.packing`) spends most of its FLOPs where they are
thrown away: the linear layers run on every padding slot, and SDPA with a 4D mask computes all
L² scores of each packed row although only the causal blocks on its diagonal survive. When the
batch's layout can be proven to be "independent causal segments" (the 4D mask equals the
block-causal mask of the segments where `position_ids` restart at 0; or the 2D mask is a prefix
of ones per row), `TokenScorer` instead

1. drops every token of a segment that holds no scored position (tail padding, prompt-only
   segments) and concatenates the rest into one row (1, N) with the same position ids,
2. runs the backbone with attention computed per segment (`F.scaled_dot_product_attention(...,
   is_causal=True)` on each segment's slice: the fused kernel skips the masked upper triangle),
3. applies the head at the scored positions, in the same order as the padded path.

Each scored position sees exactly the keys it saw before (its own segment's prefix), so the
log-probs equal the padded path's up to float rounding (summation order inside the kernels):
see tests/models/test_forward.py. The path is used only where it is known to be exact: Llama,
Mistral, Qwen2/3 without sliding windows, no gradient checkpointing (a recomputed layer would
not see the attention switch), and the per-segment kernel must actually run (checked on every
call). Anything else takes the padded path unchanged. `TokenScorer(model, padding_free=False)`
forces the padded path.

It is an `nn.Module` so that a distributed wrapper (DDP via Accelerate) wraps it as a whole and
gradient synchronisation still sees one forward call.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from alignkit.losses.sft import token_logps

IGNORE = -100
VARLEN_ATTENTION = "alignkit_varlen_sdpa"  # name registered in transformers' AttentionInterface
_SEQ_LENS_KW = "alignkit_seq_lens"  # kwarg the backbone passes through to the attention function
# Architectures whose attention goes through transformers' AttentionInterface with plain causal
# self-attention (no sliding window, softcap, sinks or bidirectional parts): the varlen path is
# exact for them. Others keep the padded path.
_VARLEN_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}
_registered = False
_calls = threading.local()  # per-thread count of varlen kernel calls (proves it really ran)


def _hf_model(model: nn.Module) -> nn.Module:
    """The transformers model inside peft / DDP wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        else:
            return model


def backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    hf = _hf_model(model)
    backbone = getattr(hf, getattr(hf, "base_model_prefix", "model"), None)
    head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    if backbone is None or head is None:
        raise TypeError(f"{type(hf).__name__} has no backbone/LM-head split; "
                        "alignkit needs a *ForCausalLM model")
    return backbone, head


# ----------------------------------------------------------------------------- varlen attention

def varlen_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0,
                scaling: float | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """Causal attention inside each segment of one concatenated row.

    query (1, H, N, D), key/value (1, H_kv, N, D); ``kwargs[alignkit_seq_lens]`` lists the
    segment lengths (sum N). Returns ((1, N, H, D), None) like transformers' attention functions.

        >>> q = torch.randn(1, 2, 5, 4)
        >>> out, _ = varlen_sdpa(None, q, q, q, None, alignkit_seq_lens=[3, 2])
        >>> alone = F.scaled_dot_product_attention(q[:, :, 3:], q[:, :, 3:], q[:, :, 3:], is_causal=True)
        >>> torch.allclose(out[:, 3:], alone.transpose(1, 2))
        True
    """
    seq_lens = kwargs.get(_SEQ_LENS_KW)
    if seq_lens is None or attention_mask is not None or query.shape[0] != 1:
        raise RuntimeError(f"{VARLEN_ATTENTION} needs one concatenated row, no mask and "
                           f"`{_SEQ_LENS_KW}`; it is only meant to be called through TokenScorer")
    if kwargs.get("sliding_window") is not None or kwargs.get("softcap") is not None:
        raise RuntimeError(f"{VARLEN_ATTENTION} supports neither sliding windows nor softcapping")
    _calls.n = getattr(_calls, "n", 0) + 1
    gqa = query.shape[1] != key.shape[1]
    outs, start = [], 0
    for n in seq_lens:
        end = start + n
        outs.append(F.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
            dropout_p=dropout, is_causal=n > 1, scale=scaling, enable_gqa=gqa))
        start = end
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (1, H, N, D)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    """Add `varlen_sdpa` to transformers' attention registry (once, on first use)."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(VARLEN_ATTENTION, varlen_sdpa)
        _registered = True


@contextlib.contextmanager
def _attention_implementation(config, name: str):
    """Temporarily route the model's attention layers to `name` (they read it on every call)."""
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


def supports_padding_free(model: nn.Module) -> bool:
    """Whether `TokenScorer` may run `model` padding-free (see the module docstring)."""
    hf = _hf_model(model)
    config = getattr(hf, "config", None)
    if config is None or getattr(config, "model_type", None) not in _VARLEN_MODEL_TYPES:
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False  # e.g. flash_attention_2 or flex: the user chose a kernel; keep it
    if getattr(config, "sliding_window", None) is not None and \
            getattr(config, "use_sliding_window", True):
        return False
    checkpointing = ("is_activation_checkpointing" if hasattr(type(hf), "is_activation_checkpointing")
                     else "is_gradient_checkpointing")  # renamed in transformers 5
    if getattr(hf, checkpointing, False):
        return False  # recomputed layers would run after the attention switch is undone
    return True


# ----------------------------------------------------------------------------- batch layout

@dataclass
class PaddingFreePlan:
    """Where the kept tokens of a (B, T) batch go in the concatenated row (1, N)."""

    input_ids: torch.Tensor  # (1, N)
    position_ids: torch.Tensor  # (1, N)
    seq_lens: list[int]  # lengths of the kept segments, in order (sum N)
    score_index: torch.Tensor  # (n_scored,) index into N of each scored position, row-major


def _segments(attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None,
              shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(segment ids (B, T), position ids (B, T)) when the batch is independent causal segments.

    4D bool mask (B, 1, T, T): segments start where `position_ids` is 0; the mask must equal
    their block-causal mask exactly. 2D mask (B, T): each row must be a prefix of ones (right
    padding); the real tokens form one segment, the padding another. Else None.
    """
    B, T = shape
    if attention_mask is None:
        return None
    if attention_mask.dim() == 4:
        if (attention_mask.dtype != torch.bool or tuple(attention_mask.shape) != (B, 1, T, T)
                or position_ids is None or tuple(position_ids.shape) != (B, T)):
            return None
        starts = position_ids == 0
        starts[:, 0] = True
        seg = starts.cumsum(1)  # (B, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=seg.device).tril()
        expected = (seg[:, :, None] == seg[:, None, :]) & causal  # (B, T, T)
        if not torch.equal(attention_mask[:, 0], expected):
            return None
        return seg, position_ids
    if attention_mask.dim() == 2 and tuple(attention_mask.shape) == (B, T):
        real = attention_mask.bool()
        n = real.sum(1, keepdim=True)  # (B, 1)
        cols = torch.arange(T, device=real.device)[None, :]
        if not torch.equal(real, cols < n):
            return None  # left padding or holes: keep the padded path
        if position_ids is None:
            position_ids = cols.expand(B, T)  # what the backbone would use
        return (~real).long(), position_ids  # segment 0 = real tokens, 1 = padding
    return None


def padding_free_plan(input_ids: torch.Tensor, selected: torch.Tensor,
                      attention_mask: torch.Tensor | None,
                      position_ids: torch.Tensor | None) -> PaddingFreePlan | None:
    """Plan the padding-free forward of a batch, or None when its layout is not provably exact.

    `selected` (B, T-1): position t is scored (it predicts label t+1). Segments holding no
    scored position are dropped; the kept ones are concatenated row by row.

        >>> ids = torch.tensor([[5, 6, 7, 8, 0, 0]])
        >>> pos = torch.tensor([[0, 1, 0, 1, 0, 1]])          # segments [5 6] [7 8] [pad pad]
        >>> seg = torch.tensor([[0, 0, 1, 1, 2, 2]])
        >>> mask = ((seg[:, :, None] == seg[:, None, :]) & torch.ones(6, 6).tril().bool())[:, None]
        >>> sel = torch.tensor([[False, False, True, False, False]])   # only 7 -> 8 is scored
        >>> plan = padding_free_plan(ids, sel, mask, pos)
        >>> plan.input_ids.tolist(), plan.seq_lens, plan.score_index.tolist()
        ([[7, 8]], [2], [0])
    """
    B, T = input_ids.shape
    found = _segments(attention_mask, position_ids, input_ids.shape)
    if found is None or not bool(selected.any()):
        return None
    seg, pos = found
    if attention_mask.dim() == 2 and bool((selected & ~attention_mask[:, :-1].bool()).any()):
        return None  # a padding slot would be scored: keep the padded path's exact behaviour
    # Global segment ids, increasing in row-major order: row b's ids live in [b*(T+1), ...).
    gseg = seg.to(torch.long) + torch.arange(B, device=seg.device)[:, None] * (T + 1)  # (B, T)
    wanted = torch.unique(gseg[:, :-1][selected])
    keep = torch.isin(gseg, wanted).flatten()  # (B*T,)
    kept = keep.nonzero().squeeze(1)  # (N,)
    _, counts = torch.unique_consecutive(gseg.flatten()[kept], return_counts=True)
    new_index = keep.cumsum(0) - 1  # (B*T,) index in the kept row
    rows, cols = selected.nonzero(as_tuple=True)  # row-major, like boolean indexing
    score_index = new_index[rows * T + cols]
    return PaddingFreePlan(input_ids=input_ids.flatten()[kept][None],
                           position_ids=pos.flatten()[kept][None],
                           seq_lens=counts.tolist(), score_index=score_index)


# ----------------------------------------------------------------------------- the scorer

class TokenScorer(nn.Module):
    """Wraps a causal LM; `forward` returns log p of each labelled next token.

    forward(input_ids (B, T), labels (B, T), attention_mask (B, T) or (B, 1, T, T), position_ids)
    -> (logps (N,), selected (B, T-1) bool): N = number of labelled positions; label at t+1 is
    predicted from position t (the usual causal shift). `labels` uses -100 for "not trained".

    `padding_free=True` (default) runs provably segment-separated batches without padding
    (module docstring); False always runs the padded batch as given.
    """

    def __init__(self, model: nn.Module, padding_free: bool = True):
        super().__init__()
        self.model = model
        self.padding_free = padding_free
        self._varlen_failed = False  # the kernel did not run once: never try again

    def forward(self, input_ids, labels, attention_mask=None, position_ids=None):
        backbone, head = backbone_and_head(self.model)
        targets = labels[:, 1:]                                               # (B, T-1)
        selected = targets != IGNORE
        plan = None
        if self.padding_free and not self._varlen_failed and supports_padding_free(self.model):
            with torch.no_grad():
                plan = padding_free_plan(input_ids, selected, attention_mask, position_ids)
        if plan is not None:
            hidden = self._forward_padding_free(backbone, plan)              # (n_scored, H)
            if hidden is not None:
                return token_logps(head(hidden), targets[selected]), selected
        out = backbone(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=position_ids, use_cache=False)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state  # (B, T, H)
        logits = head(hidden[:, :-1][selected])                               # (N, V)
        return token_logps(logits, targets[selected]), selected

    def _forward_padding_free(self, backbone: nn.Module, plan: PaddingFreePlan):
        """Hidden states (n_scored, H) at the scored positions, or None if the kernel never ran."""
        _register()
        config = _hf_model(self.model).config
        _calls.n = 0
        with _attention_implementation(config, VARLEN_ATTENTION):
            out = backbone(input_ids=plan.input_ids, attention_mask=None,
                           position_ids=plan.position_ids, use_cache=False,
                           **{_SEQ_LENS_KW: plan.seq_lens})
        if _calls.n == 0:  # the model does not route attention through the registry
            self._varlen_failed = True
            return None
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state  # (1, N, H)
        return hidden[0, plan.score_index]
