"""Typed training configuration, YAML loading and CLI ``--set key=value`` overrides.

Every stage nests a :class:`TrainConfig` (which nests an :class:`OptimConfig`) in its own
config model. Unknown keys are errors that name the key, the file and, for YAML files, the
line; invalid values fail here, before any compute.

    >>> cfg = TrainConfig()
    >>> cfg = apply_overrides(cfg, ["optim.lr=1e-3", "max_steps=10"])
    >>> cfg.optim.lr, cfg.max_steps
    (0.001, 10)
    >>> load_config(TrainConfig, {"grad_accum": 4}).grad_accum
    4
"""
from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alignkit.data.yaml_lines import yaml_line
from alignkit.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
_UNIONS = (Union, types.UnionType)  # `Optional[X]` and `X | None` spell unions differently


class OptimConfig(BaseModel):
    """AdamW and learning-rate schedule settings."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(3e-4, gt=0)  # peak learning rate, reached at the end of warmup
    weight_decay: float = Field(0.0, ge=0)  # decoupled AdamW decay (not biases/norms/embeddings)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW moment coefficients, each in [0, 1)
    eps: float = Field(1e-8, gt=0)  # AdamW denominator epsilon
    schedule: Literal["cosine", "linear", "constant"] = "cosine"  # shape of the decay after warmup
    warmup_steps: int = Field(0, ge=0)  # steps of linear warmup up to lr
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # decay floor as a fraction of lr

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {v}")
        return v


class TrackingConfig(BaseModel):
    """Optional mirrors of ``metrics.jsonl`` in TensorBoard and MLflow (alignkit.train.tracking).

    ``metrics.jsonl`` stays the record the report, gates and resume read; a tracker receives the
    same records (main process only) for people who browse runs in those tools.
    """

    model_config = ConfigDict(extra="forbid")

    tensorboard: bool = False  # write TensorBoard event files (needs the `tensorboard` package)
    tensorboard_dir: str | None = None  # event-file folder; None = OUT/tensorboard
    mlflow: bool = False  # log to MLflow (needs `mlflow` or `mlflow-skinny`)
    mlflow_uri: str | None = None  # tracking URI; None = a local file store in OUT/mlruns
    mlflow_experiment: str = Field("alignkit", min_length=1)  # MLflow experiment name
    run_name: str | None = None  # MLflow run name; None = the run directory's name


class TrainConfig(BaseModel):
    """Settings of the training loop shared by every stage (see ``alignkit.train.engine``)."""

    model_config = ConfigDict(extra="forbid")

    optim: OptimConfig = Field(default_factory=OptimConfig)  # optimizer and LR schedule
    epochs: int = Field(1, ge=1)  # passes over the data (ignored when max_steps is set)
    max_steps: int | None = Field(None, ge=1)  # total optimizer steps; overrides epochs
    micro_batch_size: int = Field(8, ge=1)  # examples per micro-batch per process (read by recipes)
    grad_accum: int = Field(1, ge=1)  # micro-batches per process per optimizer step
    max_grad_norm: float | None = Field(1.0, gt=0)  # clip global grad norm; None = off
    eval_every: int = Field(0, ge=0)  # run eval every N optimizer steps; 0 = only at the end
    save_every: int = Field(0, ge=0)  # checkpoint every N optimizer steps; 0 = only at the end
    keep_checkpoints: int = Field(2, ge=1)  # newest checkpoints kept on disk
    log_every: int = Field(1, ge=1)  # write a metrics.jsonl line every N optimizer steps
    seed: int = 0  # seeds python, numpy and torch at the start of training
    progress: bool = True  # rich progress bar (main process, interactive terminal only)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)  # TensorBoard / MLflow mirrors


# ---------------------------------------------------------------------------------------------
# overrides and loading


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside ``annotation`` (``Model``, ``Model | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in _UNIONS:
        for arg in get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None


def _is_mapping_annotation(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (dict, Mapping) or annotation is dict:
        return True
    return origin in _UNIONS and any(_is_mapping_annotation(a) for a in get_args(annotation))


def _valid_keys(cls: type[BaseModel]) -> str:
    return ", ".join(cls.model_fields)


def _assign(cls: type[BaseModel], data: dict, parts: list[str], value: Any, full_key: str) -> None:
    """Set ``data[parts[0]][parts[1]]... = value``, checking names against the model classes."""
    name, rest = parts[0], parts[1:]
    prefix = full_key[: len(full_key) - len(".".join(parts))].rstrip(".")
    where = f" in '{prefix}'" if prefix else ""
    if name not in cls.model_fields:
        raise ConfigError(f"unknown key '{full_key}' (valid keys{where}: {_valid_keys(cls)})")
    if not rest:
        data[name] = value
        return
    annotation = cls.model_fields[name].annotation
    sub = _nested_model(annotation)
    if sub is not None:
        if not isinstance(data.get(name), dict):
            data[name] = {}
        _assign(sub, data[name], rest, value, full_key)
    elif _is_mapping_annotation(annotation):
        # Free-form dict field: keys are not checked, only walked.
        node = data.setdefault(name, {})
        for key in rest[:-1]:
            node = node.setdefault(key, {})
        node[rest[-1]] = value
    else:
        raise ConfigError(f"'{prefix + '.' if prefix else ''}{name}' is a value, not a section; "
                          f"cannot set '{full_key}'")


def _model_at(cls: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that owns the last element of a pydantic error location."""
    for part in loc[:-1]:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        sub = _nested_model(field.annotation) if field is not None else None
        if sub is None:
            return None
        cls = sub
    return cls


def _yaml_line(text: str | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the key at ``loc`` in a YAML document (its deepest existing parent's
    when the key itself is absent), when the text parses."""
    if not text:
        return None
    try:
        return yaml_line(yaml.compose(text), loc)
    except yaml.YAMLError:
        return None


def _config_error(err: ValidationError, cls: type[BaseModel], source: str,
                  text: str | None = None) -> ConfigError:
    """One readable ConfigError listing every problem pydantic found, each with its key."""
    lines = []
    for e in err.errors():
        loc = [p for p in e["loc"] if isinstance(p, (str, int))]
        key = ".".join(str(p) for p in loc)
        line = _yaml_line(text, loc)
        where = f"{source}:{line}" if line else source
        if e["type"] == "extra_forbidden":
            owner = _model_at(cls, loc)
            valid = f" (valid keys: {_valid_keys(owner)})" if owner is not None else ""
            lines.append(f"{where}: unknown key '{key}'{valid}")
        else:
            lines.append(f"{where}: key '{key}': {e['msg']} (got {e.get('input')!r})")
    return ConfigError("; ".join(lines))


def apply_overrides(model: M, sets: Sequence[str]) -> M:
    """Return a new, re-validated copy of ``model`` with CLI ``key=value`` overrides applied.

    Keys are dotted paths into nested models (``optim.lr=1e-4``); values are parsed as YAML
    (``max_steps=10`` is an int, ``betas=[0.9,0.99]`` a list, ``max_grad_norm=null`` None).

    >>> apply_overrides(TrainConfig(), ["optim.betas=[0.9, 0.99]"]).optim.betas
    (0.9, 0.99)
    """
    data = model.model_dump()
    cls = type(model)
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
        _assign(cls, data, key.split("."), value, key)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, cls, "--set") from None


def load_config(cls: type[M], path_or_dict: str | Path | Mapping[str, Any],
                sets: Sequence[str] = ()) -> M:
    """Build ``cls`` from a YAML file (or a dict), then apply ``--set`` overrides.

    Errors name the file, the line of the offending key and the key itself.

    >>> load_config(TrainConfig, {"optim": {"lr": 0.01}}, ["seed=3"]).seed
    3
    """
    text = None
    if isinstance(path_or_dict, Mapping):
        data, source = dict(path_or_dict), "<config dict>"
    else:
        path = Path(path_or_dict)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{source}: config file not found")
        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of keys at the top level, "
                              f"got {type(data).__name__}")
    try:
        model = cls.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, cls, source, text) from None
    return apply_overrides(model, sets)
