"""Stage kinds a pipeline can run: name -> (config class, stage function).

A stage function has the signature every alignkit stage shares,
``fn(config, out_dir, *, resume=False) -> dict[str, float]``, and writes
``out_dir/manifest.json`` (status running -> completed/failed) through
``alignkit.train.stage.begin_run``/``finish_run``. The pipeline relies on that manifest to
decide reuse and resume, so a function that returns without a completed manifest is an error.

The built-in kinds are imported only when first looked up, so listing names stays cheap.
Other code adds kinds (``eval``, ``rl``, ``guard`` ...) with :func:`register_stage_kind`:

    >>> from pydantic import BaseModel
    >>> class EchoConfig(BaseModel):
    ...     text: str = "hi"
    >>> def echo(config, out_dir, *, resume=False):
    ...     return {}
    >>> _ = register_stage_kind("echo-doc", EchoConfig, echo)
    >>> get_stage_kind("echo-doc").config_cls is EchoConfig
    True
    >>> unregister_stage_kind("echo-doc")
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

from alignkit.errors import ConfigError

StageFn = Callable[..., dict]
KIND_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class StageKind:
    """One runnable kind of stage."""

    name: str  # what a pipeline file writes after `stage:`
    config_cls: type[BaseModel]  # pydantic config model (extra="forbid" expected)
    fn: StageFn  # fn(config, out_dir, *, resume=False) -> metrics
    main_metrics: tuple[str, ...] = ()  # metrics shown in the pipeline summary, in order


# name -> (module, config class attribute, function attribute, main metrics). Imported lazily:
# the stage modules pull in pydantic models only, but their functions pull in torch when called.
_BUILTIN: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "pretrain": ("alignkit.world.pretrain", "PretrainConfig", "pretrain",
                 ("train/loss", "heldout/exact_match")),
    "sft": ("alignkit.train.sft", "SFTConfig", "sft", ("val/loss", "heldout/exact_match")),
    "reward": ("alignkit.train.reward", "RewardConfig", "reward",
               ("heldout/accuracy", "heldout/ece")),
    "prefer": ("alignkit.train.prefer", "PreferConfig", "prefer",
               ("val/rewards/accuracies", "val/kl")),
    "rl": ("alignkit.train.rl", "RLConfig", "rl",
           ("objective/scores", "objective/kl", "heldout/exact_match")),
    "eval": ("alignkit.evals.stage", "EvalStageConfig", "eval_stage",
             ("world_tasks/exact_match", "safety/attack_success", "over_refusal/benign_refusal")),
    "cai_sl": ("alignkit.cai.sl", "SLConfig", "sl",
               ("world/final_refusal", "world/revision_less_harmful", "n_rows")),
    "cai_label": ("alignkit.cai.label", "LabelConfig", "label",
                  ("agreement", "position_bias", "order_consistency")),
}
_REGISTERED: dict[str, StageKind] = {}


def register_stage_kind(name: str, config_cls: type[BaseModel], fn: StageFn, *,
                        main_metrics: tuple[str, ...] | list[str] = (),
                        replace: bool = False) -> StageKind:
    """Make `name` usable as `stage: NAME` in pipeline files; returns the registered kind.

    Registering an existing name (built-in or not) is an error unless `replace=True`, so two
    plug-ins cannot silently take the same name.
    """
    if not KIND_NAME.match(name or ""):
        raise ConfigError(f"stage kind name {name!r} must start with a letter and use only "
                          "letters, digits, '_' and '-'")
    if not (isinstance(config_cls, type) and issubclass(config_cls, BaseModel)):
        raise ConfigError(f"stage kind {name!r}: config_cls must be a pydantic BaseModel "
                          f"subclass, got {config_cls!r}")
    if not callable(fn):
        raise ConfigError(f"stage kind {name!r}: fn must be callable, got {fn!r}")
    if not replace and (name in _REGISTERED or name in _BUILTIN):
        raise ConfigError(f"stage kind {name!r} is already registered; pass replace=True "
                          "to override it")
    kind = StageKind(name, config_cls, fn, tuple(main_metrics))
    _REGISTERED[name] = kind
    return kind


def unregister_stage_kind(name: str) -> None:
    """Remove a kind added with register_stage_kind (a replaced built-in comes back)."""
    _REGISTERED.pop(name, None)


def stage_kind_names() -> list[str]:
    """Every kind a pipeline may name, sorted; imports nothing."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def get_stage_kind(name: str) -> StageKind:
    """The kind called `name`; unknown names are a ConfigError listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        module_name, cls_attr, fn_attr, main = _BUILTIN[name]
        module = importlib.import_module(module_name)
        return StageKind(name, getattr(module, cls_attr), getattr(module, fn_attr), main)
    raise ConfigError(f"unknown stage kind {name!r}; known: {', '.join(stage_kind_names())}")


def main_metrics_of(kind: StageKind, metrics: dict[str, Any], limit: int = 3) -> dict[str, Any]:
    """The metrics worth one summary cell: the kind's chosen ones that exist, else the first
    `limit` names in sorted order (so a new kind shows something without configuration)."""
    chosen = {k: metrics[k] for k in kind.main_metrics if k in metrics}
    if chosen:
        return chosen
    return {k: metrics[k] for k in sorted(metrics)[:limit]}
