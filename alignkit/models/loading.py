"""Load a causal LM and its tokenizer from wherever it lives, with a content digest.

Sources, chosen from `ModelSpec.path`:

| path                              | source_kind | digest ("mdl-…")                          |
|-----------------------------------|-------------|-------------------------------------------|
| a local Hugging Face directory    | `hf_dir`    | every file in the directory               |
| a local `.gguf` file              | `gguf`      | the file's bytes                          |
| `builtin:NAME`                    | `builtin`   | name + config + tokenizer + weight bytes  |
| anything else shaped `org/name`   | `hub`       | hub id + resolved commit (not the bytes)  |

alignkit never downloads on its own: a hub id is handed to `from_pretrained` unchanged, for
users who have a network; everything in the test suite and the built-in world is local.

    >>> import tempfile
    >>> register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    >>> lm = load_model("builtin:doc-tiny")
    >>> lm.source_kind, lm.digest[:4], lm.tokenizer.pad_token == lm.tokenizer.eos_token
    ('builtin', 'mdl-', True)
    >>> out = tempfile.mkdtemp() + "/saved"
    >>> save_model(lm.model, lm.tokenizer, out) == load_model(out).digest
    True
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from alignkit.contract.digest import digest_dir, digest_file, digest_obj
from alignkit.errors import ConfigError

logger = logging.getLogger(__name__)

SourceKind = Literal["hf_dir", "hub", "gguf", "builtin"]
BUILTIN_PREFIX = "builtin:"
# `org/name` or `name`: what the Hub accepts as a repository id (no path separators beyond one).
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")
# Modules that register built-in models when imported; imported on first use of the name so
# that `load_model("builtin:world-tiny")` works without importing alignkit.world first.
BUILTIN_PROVIDERS: dict[str, str] = {"world-tiny": "alignkit.world"}

ModelFactory = Callable[[], "tuple[Any, Any]"]  # () -> (model, tokenizer)
BUILTIN_MODELS: dict[str, ModelFactory] = {}


class ModelSpec(BaseModel):
    """Where a model comes from and how to load it. A plain string means `ModelSpec(path=s)`.

        >>> ModelSpec.model_validate("runs/sft/final").path
        'runs/sft/final'
    """

    model_config = ConfigDict(extra="forbid")

    path: str  # local HF dir, hub id, path to a .gguf file, or "builtin:NAME"
    gguf_file: str | None = None  # GGUF file name inside `path` (a dir or hub repo); implied by a .gguf path
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"  # weights dtype after loading
    revision: str | None = None  # hub branch/tag/commit; ignored for local paths
    trust_remote_code: bool = False  # run model code shipped with a hub repo (off: it executes code)
    attn_implementation: str = "sdpa"  # "sdpa" | "eager" | "flash_attention_2" | ...

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            return {"path": os.fspath(value)}
        return value

    @classmethod
    def coerce(cls, spec: "ModelSpec | str | os.PathLike | dict") -> "ModelSpec":
        """Accept a ModelSpec, a path string or a dict of fields."""
        if isinstance(spec, ModelSpec):
            return spec
        return cls.model_validate(spec)


@dataclass
class LoadedModel:
    """A model, its tokenizer, and what they are (spec, content digest, kind of source)."""

    model: Any  # transformers PreTrainedModel (causal LM), in eval mode
    tokenizer: Any  # transformers tokenizer with a pad token set
    spec: ModelSpec
    digest: str  # "mdl-…"
    source_kind: SourceKind


# ---------------------------------------------------------------- built-in registry

def register_builtin(name: str, factory: ModelFactory, *, overwrite: bool = False) -> None:
    """Make `builtin:NAME` loadable; `factory()` returns a fresh (model, tokenizer)."""
    name = name.removeprefix(BUILTIN_PREFIX)
    if not name:
        raise ValueError("built-in model name must not be empty")
    if name in BUILTIN_MODELS and BUILTIN_MODELS[name] is not factory and not overwrite:
        raise ValueError(f"built-in model {name!r} is already registered; pass overwrite=True")
    BUILTIN_MODELS[name] = factory


def _builtin_factory(name: str) -> ModelFactory:
    if name not in BUILTIN_MODELS and name in BUILTIN_PROVIDERS:
        import importlib

        provider = BUILTIN_PROVIDERS[name]
        importlib.import_module(provider)  # registers on import
        if name not in BUILTIN_MODELS:
            raise ConfigError(f"importing {provider} did not register built-in model "
                              f"{BUILTIN_PREFIX}{name} (see BUILTIN_PROVIDERS)")
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        known = sorted(set(BUILTIN_MODELS) | set(BUILTIN_PROVIDERS))
        raise ConfigError(f"unknown built-in model {BUILTIN_PREFIX}{name}; known: "
                          f"{[BUILTIN_PREFIX + k for k in known]}") from None


def _doc_tiny_factory():
    """A 2-layer random Llama with a 12-word vocabulary (docstring example only)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "hello", "world", "the", "cat", "sat", "on", "mat", "a", "dog"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>")
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=32, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg), tok


# ---------------------------------------------------------------- source resolution

def source_kind(spec: ModelSpec) -> SourceKind:
    """Which kind of source `spec.path` names (see the module table); raises ConfigError if
    it is neither an existing local path nor shaped like a hub id."""
    path = spec.path
    if path.startswith(BUILTIN_PREFIX):
        return "builtin"
    p = Path(path).expanduser()
    if p.is_dir():
        return "gguf" if spec.gguf_file else "hf_dir"
    if p.is_file():
        if p.suffix.lower() == ".gguf":
            return "gguf"
        raise ConfigError(f"model path {path!r} is a file but not a .gguf file; give a Hugging "
                          "Face model directory, a .gguf file, or builtin:NAME")
    if _looks_like_hub_id(path):
        return "hub"
    raise ConfigError(f"model path {path!r} does not exist (it is not a directory or a file), "
                      "and it is not shaped like a hub id 'org/name'")


def _looks_like_hub_id(path: str) -> bool:
    return bool(HUB_ID.match(path)) and not path.startswith(".") and not path.endswith(".gguf")


def _gguf_location(spec: ModelSpec) -> tuple[Path, str]:
    p = Path(spec.path).expanduser()
    if p.is_dir():
        assert spec.gguf_file is not None
        return p, spec.gguf_file
    return p.parent, p.name


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ConfigError("loading a .gguf model needs the `gguf` package: "
                          "pip install 'alignkit[gguf]' (or pip install gguf)") from None


def _torch_dtype(name: str):
    if name == "auto":
        return "auto"
    import torch

    return getattr(torch, name)


# ---------------------------------------------------------------- digests

def _tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        body = hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()
    else:
        body = hashlib.sha256(repr(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    return {"backend": body, "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
            "chat_template": getattr(tokenizer, "chat_template", None)}


def state_dict_sha256(model: Any) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor in the model's state dict."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode("utf-8"))
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _config_fingerprint(model: Any) -> dict[str, Any]:
    cfg = model.config.to_dict()
    for volatile in ("transformers_version", "_name_or_path", "_commit_hash"):
        cfg.pop(volatile, None)
    return cfg


# ---------------------------------------------------------------- loading

def _set_pad_token(tokenizer: Any, model: Any, where: str) -> None:
    """Give the tokenizer a pad token (its EOS) when it has none.

    Padding must then be masked with the attention mask, never by token id: masking
    pad-id positions would also mask every real EOS the model must learn to emit.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"{where}: tokenizer has neither a pad token nor an EOS token; "
                              "alignkit needs an EOS token to end generations")
        tokenizer.pad_token = tokenizer.eos_token
        logger.warning("%s: tokenizer has no pad token; using its EOS token %r as pad "
                       "(padding is masked by attention mask, never by token id)",
                       where, tokenizer.eos_token)
    pad_id = tokenizer.pad_token_id
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = pad_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = pad_id


def _from_pretrained(location: str, spec: ModelSpec, local: bool, gguf_file: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if local:
        common["local_files_only"] = True
    elif spec.revision is not None:
        common["revision"] = spec.revision
    if gguf_file is not None:
        common["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(location, **common)
    model = AutoModelForCausalLM.from_pretrained(
        location, dtype=_torch_dtype(spec.dtype), attn_implementation=spec.attn_implementation,
        **common)
    if gguf_file is not None:
        # transformers de-quantises GGUF weights into plain tensors but leaves the model marked
        # as GGUF-quantised, and then refuses save_pretrained ("quantized with gguf and is not
        # serializable"): every stage trained from a .gguf model failed when saving final/.
        # The weights are ordinary float tensors, so drop the marks; the saved directory
        # reloads to identical logits (checked on SmolLM2-135M-Instruct).
        model.hf_quantizer = None
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
    return model, tokenizer


def load_model(spec: ModelSpec | str | os.PathLike | dict) -> LoadedModel:
    """Load model + tokenizer described by `spec` (a ModelSpec or just a path string).

    The tokenizer always has a pad token afterwards (its EOS if it had none; logged).
    The model is returned in eval mode.
    """
    spec = ModelSpec.coerce(spec)
    kind = source_kind(spec)
    if kind == "builtin":
        name = spec.path.removeprefix(BUILTIN_PREFIX)
        model, tokenizer = _builtin_factory(name)()
        if spec.dtype != "auto":
            model = model.to(_torch_dtype(spec.dtype))
        digest = digest_obj({"builtin": name, "config": _config_fingerprint(model),
                             "tokenizer": _tokenizer_fingerprint(tokenizer),
                             "weights": state_dict_sha256(model)}, "mdl")
    elif kind == "hf_dir":
        directory = Path(spec.path).expanduser()
        if not (directory / "config.json").is_file() and not (directory / "adapter_config.json").is_file():
            present = sorted(p.name for p in directory.iterdir())[:10]
            raise ConfigError(f"{directory} is not a Hugging Face model directory (no "
                              f"config.json); it contains {present}")
        model, tokenizer = _from_pretrained(str(directory), spec, local=True, gguf_file=None)
        digest = digest_dir(directory, "mdl")
    elif kind == "gguf":
        directory, name = _gguf_location(spec)
        file = directory / name
        if not file.is_file():
            raise ConfigError(f"GGUF file {file} does not exist")
        _require_gguf()
        model, tokenizer = _from_pretrained(str(directory), spec, local=True, gguf_file=name)
        digest = digest_file(file, "mdl")
    else:  # hub
        try:
            model, tokenizer = _from_pretrained(spec.path, spec, local=False,
                                                gguf_file=spec.gguf_file)
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"model path {spec.path!r} is not a local directory or file, so it was tried "
                f"as a Hugging Face hub id, and that failed: {e}. alignkit itself never "
                "downloads; without a network, give a local directory or .gguf file") from None
        commit = getattr(model.config, "_commit_hash", None) or spec.revision or "unpinned"
        digest = digest_obj({"hub": spec.path, "commit": commit, "gguf_file": spec.gguf_file},
                            "mdl")
    _set_pad_token(tokenizer, model, spec.path)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, digest=digest,
                       source_kind=kind)


# ---------------------------------------------------------------- saving

def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _looks_like_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def save_model(model: Any, tokenizer: Any, out_dir: str | Path, merge: bool = True) -> str:
    """Save in Hugging Face format (safetensors) and return the digest of the saved directory.

    The digest equals `load_model(out_dir).digest`, so a run's output digest matches the
    next run's base-model digest. A peft model is merged into a *copy* of its base model
    (`merge=True`, default; the caller's adapters stay usable, e.g. as the reference with
    adapters disabled), or saved as an adapter only (`merge=False`).

    Written to a temporary directory and renamed into place. An existing `out_dir` is
    replaced only if it is empty or holds a model (config.json / adapter_config.json).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ConfigError(f"cannot save model to {out_dir}: it is a file")
        if any(out_dir.iterdir()) and not _looks_like_model_dir(out_dir):
            raise ConfigError(f"refusing to overwrite {out_dir}: it is not empty and does not "
                              "hold a saved model")
    target = model
    if _is_peft(model) and merge:
        target = copy.deepcopy(model).merge_and_unload()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        target.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            old = out_dir.parent / f".tmp-old-{out_dir.name}-{uuid.uuid4().hex[:8]}"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return digest_dir(out_dir, "mdl")
