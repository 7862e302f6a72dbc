"""alignkit: turn a pretrained causal LM into an aligned assistant, and prove it did.

Importing this package is cheap: heavy modules (torch, transformers) load only when a
stage function is first called.

    >>> import alignkit
    >>> alignkit.__version__
    '0.1.0'
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "sft": ("alignkit.train.sft", "sft"),
    "pretrain": ("alignkit.world.pretrain", "pretrain"),
    "evaluate": ("alignkit.evals.api", "evaluate"),
    "load_model": ("alignkit.models.loading", "load_model"),
    "read_records": ("alignkit.data.readers", "read_records"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'alignkit' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
