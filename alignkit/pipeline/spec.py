"""The pipeline file: a root directory and an ordered list of stages.

    out: runs/world                 # root; stage NAME runs in OUT/NAME (CLI --out overrides)
    stages:
      - name: base                  # directory name and the handle used in ${base.out}
        stage: pretrain             # a registered stage kind
        config: {train: {epochs: 1}}
      - name: sft
        stage: sft
        config_file: sft.yaml       # relative to this file; or inline `config:`, not both
        set: ["train.epochs=2", "model=${base.out}/final"]

Everything is checked before any stage runs: unknown keys, duplicate names, unknown stage
kinds and bad names are a ConfigError naming the file, the line and the stage
(``stages[1] 'sft'``). The stage configs themselves are validated by ``resolve.py``, once the
``${NAME.out}`` references are known.

    >>> p = load_pipeline({"stages": [{"name": "a", "stage": "sft"}]})
    >>> [s.name for s in p.spec.stages], p.spec.out
    (['a'], None)
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alignkit.data.yaml_lines import yaml_line
from alignkit.errors import ConfigError
from alignkit.pipeline.registry import stage_kind_names

# Stage names become directory names and appear in `${name.out}`: no dots, slashes or spaces.
STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class StageSpec(BaseModel):
    """One stage of a pipeline. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    name: str  # unique; the stage runs in OUT/<name>; referenced as ${<name>.out}
    stage: str  # the stage kind: pretrain | sft | reward | prefer | any registered kind
    config: dict[str, Any] | None = None  # inline config of that kind (defaults fill the rest)
    config_file: str | None = None  # YAML config file, relative to the pipeline file
    sets: list[str] = Field(default_factory=list, alias="set")  # key=value overrides, applied last
    estimate_s: float | None = Field(None, gt=0)  # expected run time (s): the time-left display;
    # not part of the cache key


class PipelineSpec(BaseModel):
    """A whole pipeline file. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    out: str | None = None  # root directory (relative to the working directory); CLI --out wins
    stages: list[StageSpec] = Field(min_length=1)  # run in this order


@dataclass
class Pipeline:
    """A validated pipeline and where it came from (for paths and error messages)."""

    spec: PipelineSpec
    source: str  # the file name, or "<pipeline dict>"
    base_dir: Path  # config_file paths are relative to it
    node: Any = field(default=None, repr=False)  # the composed YAML tree, for line numbers

    def line_of(self, loc: Sequence[Any]) -> int | None:
        """1-based line of the key or item at `loc` (e.g. ("stages", 1, "config", "model"))."""
        return yaml_line(self.node, loc)

    def where(self, index: int, *loc: Any) -> str:
        """'FILE:LINE: stages[I] 'NAME'' -- the prefix of every error about stage I."""
        line = self.line_of(("stages", index, *loc)) or self.line_of(("stages", index))
        name = self.spec.stages[index].name
        return f"{self.source}{f':{line}' if line else ''}: stages[{index}] '{name}'"


def _stage_label(raw: Any, loc: Sequence[Any]) -> str:
    """'stages[1] 'sft'' for an error location inside the stage list, else ''."""
    if len(loc) < 2 or loc[0] != "stages" or not isinstance(loc[1], int):
        return ""
    index = loc[1]
    name = None
    stages = raw.get("stages") if isinstance(raw, dict) else None
    if isinstance(stages, list) and index < len(stages) and isinstance(stages[index], dict):
        name = stages[index].get("name")
    return f"stages[{index}]" + (f" '{name}'" if name is not None else "")


_VALID_KEYS = {
    "pipeline": "out, stages",
    "stage": "name, stage, config, config_file, set, estimate_s",
}


def _validation_error(err: ValidationError, raw: Any, source: str, node: Any) -> ConfigError:
    problems = []
    for e in err.errors():
        loc = [p for p in e["loc"] if isinstance(p, (str, int))]
        line = yaml_line(node, loc)
        where = f"{source}:{line}" if line else source
        label = _stage_label(raw, loc)
        in_stage = bool(label)
        key = ".".join(str(p) for p in (loc[2:] if in_stage else loc))
        prefix = f"{where}: {label + ': ' if label else ''}"
        if e["type"] == "extra_forbidden":
            valid = _VALID_KEYS["stage" if in_stage and len(loc) == 3 else "pipeline"]
            problems.append(f"{prefix}unknown key '{key}' (valid keys: {valid})")
        elif e["type"] == "missing":
            problems.append(f"{prefix}missing required key '{key}'")
        else:
            problems.append(f"{prefix}key '{key or '<root>'}': {e['msg']} (got {e.get('input')!r})")
    return ConfigError("; ".join(problems))


def load_pipeline(path_or_dict: str | Path | Mapping[str, Any]) -> Pipeline:
    """Read and validate a pipeline file (or a dict, whose config files are relative to the
    working directory). Raises ConfigError naming the file, line and stage."""
    node = None
    if isinstance(path_or_dict, Mapping):
        raw: Any = dict(path_or_dict)
        source, base_dir = "<pipeline dict>", Path.cwd()
    else:
        path = Path(path_or_dict)
        source, base_dir = str(path), path.parent
        if not path.is_file():
            raise ConfigError(f"{source}: pipeline file not found")
        text = path.read_text(encoding="utf-8")
        try:
            raw = yaml.safe_load(text)
            node = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'stages:' at the top level, "
                          f"got {type(raw).__name__}")
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, raw, source, node) from None
    pipeline = Pipeline(spec=spec, source=source, base_dir=base_dir, node=node)
    _check_stages(pipeline)
    return pipeline


def _check_stages(pipeline: Pipeline) -> None:
    """What pydantic cannot see: names, uniqueness, kinds, config vs config_file."""
    known = stage_kind_names()
    first_index: dict[str, int] = {}
    for i, stage in enumerate(pipeline.spec.stages):
        where = pipeline.where(i)
        if not STAGE_NAME.match(stage.name):
            raise ConfigError(f"{where}: invalid stage name {stage.name!r}: use letters, digits, "
                              "'_' and '-' (it becomes a directory name and ${NAME.out})")
        if stage.name in first_index:
            j = first_index[stage.name]
            raise ConfigError(f"{where}: duplicate stage name {stage.name!r} (also stages[{j}]); "
                              "each stage needs its own name and directory")
        first_index[stage.name] = i
        if stage.stage not in known:
            raise ConfigError(f"{pipeline.where(i, 'stage')}: unknown stage kind "
                              f"{stage.stage!r}; known: {', '.join(known)}")
        if stage.config is not None and stage.config_file is not None:
            raise ConfigError(f"{where}: give either 'config' (inline) or 'config_file', not both "
                              "(use 'set' for a few overrides on top of a file)")
