"""From a validated pipeline file to runnable stages: references, configs and cache keys.

References. A string anywhere in a stage's config values (inline, in its config file, or in a
`set` value) may contain ``${NAME.out}``: the absolute output directory of the earlier stage
NAME (``OUT/NAME``). Naming an unknown stage, the stage itself or a later one is a ConfigError
naming the stage and the field. Only ``.out`` exists; there is no escape syntax.

Cache key. With ``config`` the stage's validated config dumped to JSON (every default filled
in, so writing a default explicitly does not change the key) and ``upstream`` the keys of the
stages it references,

    key = digest_obj({"kind": KIND, "config": config, "upstream": {NAME: KEY, ...}}, "cfg")

so any change upstream changes every key downstream of it. What the key does *not* cover: the
contents of input files named by path (a data file edited in place), and the alignkit
version; `--force STAGE` re-runs from STAGE when those change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from alignkit.contract.digest import digest_obj
from alignkit.errors import ConfigError
from alignkit.pipeline.registry import StageKind, get_stage_kind
from alignkit.pipeline.spec import Pipeline

REFERENCE = re.compile(r"\$\{([^}]*)\}")
REFERENCE_BODY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*)\.([A-Za-z_]+)$")


@dataclass
class ResolvedStage:
    """A stage ready to plan and run."""

    index: int  # position in the pipeline file
    name: str
    kind: StageKind
    config: BaseModel  # validated config passed to the stage function
    config_dump: dict[str, Any]  # config.model_dump(mode="json"): what the key covers
    upstream: dict[str, str]  # referenced stage name -> its key, in file order
    key: str  # cache key, "cfg-…"
    out: Path  # absolute run directory: ROOT/<name>
    estimate_s: float | None = None  # expected run time from the pipeline file (display only)


def stage_key(kind: str, config_dump: dict[str, Any], upstream: dict[str, str]) -> str:
    """The cache key of a stage (formula in the module docstring)."""
    return digest_obj({"kind": kind, "config": config_dump, "upstream": upstream}, "cfg")


class _References:
    """Substitutes ${NAME.out} in one stage's values and remembers which stages it used."""

    def __init__(self, pipeline: Pipeline, index: int, outs: dict[str, Path]):
        self.pipeline, self.index, self.outs = pipeline, index, outs
        self.positions = {s.name: i for i, s in enumerate(pipeline.spec.stages)}
        self.used: list[str] = []

    def substitute(self, value: Any, field: str, loc: tuple) -> Any:
        if isinstance(value, dict):
            return {k: self.substitute(v, f"{field}.{k}", (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v, f"{field}[{i}]", (*loc, i)) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        if "${" in value and value.count("${") != len(REFERENCE.findall(value)):
            self._fail(field, loc, f"unclosed '${{' in {value!r}; write ${{NAME.out}}")
        return REFERENCE.sub(lambda m: self._lookup(m.group(0), m.group(1), field, loc), value)

    def _lookup(self, text: str, body: str, field: str, loc: tuple) -> str:
        m = REFERENCE_BODY.match(body.strip())
        if m is None or m.group(2) != "out":
            self._fail(field, loc, f"{text}: only ${{NAME.out}} is supported "
                                   "(the output directory of an earlier stage NAME)")
        name = m.group(1)
        position = self.positions.get(name)
        if position is None:
            known = ", ".join(s.name for s in self.pipeline.spec.stages[: self.index]) or "none"
            self._fail(field, loc, f"{text} names no stage of this pipeline "
                                   f"(earlier stages: {known})")
        if position == self.index:
            self._fail(field, loc, f"{text} refers to the stage itself")
        if position > self.index:
            self._fail(field, loc, f"{text} refers to stage '{name}', which comes later "
                                   f"(stages[{position}]); a stage can only use the output of "
                                   "an earlier one")
        if name not in self.used:
            self.used.append(name)
        return str(self.outs[name])

    def _fail(self, field: str, loc: tuple, message: str):
        raise ConfigError(f"{self.pipeline.where(self.index, *loc)}: field '{field}': {message}")


def _read_config_file(pipeline: Pipeline, index: int) -> tuple[dict, str]:
    stage = pipeline.spec.stages[index]
    path = Path(stage.config_file)
    if not path.is_absolute():
        path = pipeline.base_dir / path
    where = pipeline.where(index, "config_file")
    if not path.is_file():
        raise ConfigError(f"{where}: config_file {path} not found (paths are relative to the "
                          "pipeline file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: {at}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {path}: expected a mapping of config keys, "
                          f"got {type(data).__name__}")
    return data, str(path)


def resolve_stages(pipeline: Pipeline, root: str | Path) -> list[ResolvedStage]:
    """Validate every stage's config (references substituted) and compute the keys."""
    from alignkit.train.config import load_config

    root = Path(root).resolve()
    outs = {s.name: root / s.name for s in pipeline.spec.stages}
    resolved: list[ResolvedStage] = []
    keys: dict[str, str] = {}
    for i, stage in enumerate(pipeline.spec.stages):
        kind = get_stage_kind(stage.stage)
        refs = _References(pipeline, i, outs)
        if stage.config_file is not None:
            raw, origin = _read_config_file(pipeline, i)
            raw = refs.substitute(raw, f"config_file ({origin})", ("config_file",))
        else:
            raw = refs.substitute(stage.config or {}, "config", ("config",))
        sets = [refs.substitute(item, f"set[{j}]", ("set", j)) for j, item in enumerate(stage.sets)]
        try:
            config = load_config(kind.config_cls, raw, sets)
        except ConfigError as err:
            # load_config names its sources "<config dict>" and "--set"; say which stage.
            detail = str(err).replace("<config dict>", "config").replace("--set", "set")
            raise ConfigError(f"{pipeline.where(i)}: invalid {kind.name} config: {detail}") from None
        dump = config.model_dump(mode="json")
        upstream = {name: keys[name] for name in refs.used}
        key = stage_key(kind.name, dump, upstream)
        keys[stage.name] = key
        resolved.append(ResolvedStage(i, stage.name, kind, config, dump, upstream, key,
                                      outs[stage.name], stage.estimate_s))
    return resolved
