"""LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

Each targeted linear layer W0 gets a trainable low-rank update: h = W0 x + (alpha / r) B A x
(paper eq. 3 with the alpha / r scaling of its section 4.1), A: (r, in), B: (out, r). B starts
at zero, so training starts from the base model exactly. The base weights are frozen; under
LoRA the reference model of preference/RL objectives is the same model with its adapters
disabled (no second copy in memory).

    >>> import torch
    >>> from alignkit.models.loading import load_model, register_builtin, _doc_tiny_factory
    >>> register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    >>> model = apply_lora(load_model("builtin:doc-tiny").model, LoraSpec(r=4))
    >>> x = torch.tensor([[3, 4, 5]])
    >>> with disabled_adapters(model):
    ...     ref = model(x).logits
    >>> torch.equal(ref, model(x).logits)  # B = 0 at start: adapters change nothing yet
    True
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from alignkit.errors import ConfigError

# Every projection of a Llama-style block: attention and MLP.
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSpec(BaseModel):
    """LoRA hyper-parameters. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, gt=0)  # rank of the update B A
    alpha: float = Field(16.0, gt=0)  # scale: the update is multiplied by alpha / r
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # dropout on the adapter input
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: list(DEFAULT_TARGETS))  # module name suffixes, or "all-linear"
    modules_to_save: list[str] = Field(default_factory=list)  # fully trained, e.g. ["score"] for a reward head
    bias: Literal["none", "all", "lora_only"] = "none"  # which biases train


def is_peft_model(model: Any) -> bool:
    """True for a peft PeftModel, also when wrapped by DDP/Accelerate (`.module`)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(_unwrap(model), PeftModel)


def _unwrap(model: Any) -> Any:
    # DistributedDataParallel / FSDP wrappers keep the real module in `.module`.
    while hasattr(model, "module") and not hasattr(model, "disable_adapter"):
        model = model.module
    return model


def _linear_suffixes(model: Any) -> list[str]:
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                   if isinstance(mod, torch.nn.Linear) and name})


# peft task type from the transformers class-name suffix; it decides which head peft wraps.
_TASK_TYPES = {"ForCausalLM": "CAUSAL_LM", "ForSequenceClassification": "SEQ_CLS",
               "ForTokenClassification": "TOKEN_CLS"}


def _task_type(model: Any) -> str | None:
    cls = type(model).__name__
    return next((task for suffix, task in _TASK_TYPES.items() if cls.endswith(suffix)), None)


def apply_lora(model: Any, spec: LoraSpec | dict | None = None) -> Any:
    """Wrap `model` in a peft model with fresh LoRA adapters; base weights are frozen.

    Raises ConfigError when none of `spec.target_modules` names a linear layer of the model
    (listing the linear layer names it does have), or when the model already has adapters.
    """
    from peft import LoraConfig, get_peft_model

    if not isinstance(spec, LoraSpec):
        spec = LoraSpec.model_validate(spec or {})
    if is_peft_model(model):
        raise ConfigError("model already has LoRA adapters; apply_lora expects a base model")
    available = _linear_suffixes(model)
    if spec.target_modules != "all-linear":
        if not set(spec.target_modules) & set(available):
            raise ConfigError(f"lora.target_modules {spec.target_modules} matches no linear layer "
                              f"of {type(model).__name__}; its linear layers are {available}")
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=spec.target_modules, bias=spec.bias,
                        modules_to_save=spec.modules_to_save or None,
                        task_type=_task_type(model))
    return get_peft_model(model, config)


@contextlib.contextmanager
def disabled_adapters(model: Any) -> Iterator[Any]:
    """Inside the block the model computes as its base model (the LoRA reference policy).

    Raises ConfigError on a model without adapters, deliberately: there, "adapters
    disabled" would silently make the reference identical to the policy (every log-ratio
    zero), a wrong objective that trains without error. Use a frozen copy for full
    fine-tuning instead.
    """
    if not is_peft_model(model):
        raise ConfigError(f"disabled_adapters needs a model with LoRA adapters, got "
                          f"{type(model).__name__}; for full fine-tuning use a frozen "
                          "reference copy")
    with _unwrap(model).disable_adapter():
        yield model
