"""The task registry of the mixer: the built-in world's families and user JSONL task files.

A `SynthTask` is a named list of *train* rows (each ``{"fields": {...}, "answer": str}``), the
instruction templates it can be written through, and, for tasks with a small answer set, the
answer options to list.

- **World families** (`alignkit.world.tasks.FAMILIES`): rows are drawn from the world's train
  entities with the family's own sampler, and each of the family's train phrasings is one
  template (10-12 per family). Held-out phrasings and entities are never used, so a mixture
  built from the world never leaks into the world's held-out evaluation. ``pet`` and
  ``town_region`` list their options (10 pets, 4 regions); the other families have open
  answers (names, numbers, copied digits).
- **User files**: JSONL (or JSON) rows ``{"instruction", "input" (optional), "output"}``, every
  row a train row, written through `GENERIC_TEMPLATES`. A file task lists options when its
  outputs form a small label set: at most `max_options` distinct outputs, and at most half as
  many distinct outputs as rows (so a free-text task with few rows is not mistaken for one),
  and at least two.

    >>> tasks = world_tasks(["pet"], rows_per_family=5, seed=0)
    >>> t = tasks[0]
    >>> t.name, len(t.rows), len(t.templates) >= 3, len(t.options)
    ('world/pet', 5, True, 10)
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from alignkit.errors import ConfigError, DataError
from alignkit.synth.rows import read_rows
from alignkit.synth.templates import GENERIC_TEMPLATES, InstructionTemplate

WORLD_PREFIX = "world/"
DEFAULT_MAX_OPTIONS = 10


@dataclass
class SynthTask:
    name: str
    rows: list[dict]  # {"fields": {name: str}, "answer": str}, all train rows
    templates: tuple[InstructionTemplate, ...]
    options: tuple[str, ...] | None = None  # answer options when the answer set is small
    origin: str = ""  # "world" or the file it came from
    keys: list[str] = field(default_factory=list)  # content identity of each row

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [json.dumps([r["fields"], r["answer"]], sort_keys=True) for r in self.rows]

    def template(self, template_id: str) -> InstructionTemplate:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise KeyError(f"task {self.name!r} has no template {template_id!r}")

    def render(self, row: int, template_id: str) -> list[dict]:
        r = self.rows[row]
        return self.template(template_id).render(r["fields"], r["answer"])


def _world_templates(family) -> tuple[InstructionTemplate, ...]:
    templates = []
    for i, phrasing in enumerate(family.train):
        followup = (family.followup_train[i % len(family.followup_train)]
                    if family.followup_train else None)
        templates.append(InstructionTemplate(f"{family.name}-{i}", phrasing, followup=followup))
    return tuple(templates)


def _world_options(name: str) -> tuple[str, ...] | None:
    from alignkit.world.facts import PETS, REGIONS

    return {"pet": tuple(PETS), "town_region": tuple(REGIONS)}.get(name)


def world_families() -> list[str]:
    from alignkit.world.tasks import FAMILIES

    return list(FAMILIES)


def world_tasks(families: list[str], *, rows_per_family: int, seed: int) -> list[SynthTask]:
    """`rows_per_family` train rows of each named world family (names without "world/").

    The facts are those of `alignkit.world.build.WorldConfig(seed=seed)` (same people, towns
    and train/held-out split); rows are drawn with the family's own train sampler.
    """
    from alignkit.world.build import WorldConfig
    from alignkit.world.facts import make_facts
    from alignkit.world.tasks import FAMILIES

    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"unknown world task(s) {unknown}; known: "
                          f"{', '.join(WORLD_PREFIX + f for f in FAMILIES)}")
    cfg = WorldConfig(seed=seed)
    facts = make_facts(cfg.seed, n_people=cfg.n_people, n_towns=cfg.n_towns)
    tasks = []
    for name in families:
        family = FAMILIES[name]
        rng = random.Random(f"synth-mix-{seed}-{name}")
        rows = []
        for _ in range(rows_per_family):
            slots, answer = family.draw(rng, facts, "train")
            rows.append({"fields": dict(slots), "answer": answer})
        tasks.append(SynthTask(WORLD_PREFIX + name, rows, _world_templates(family),
                               _world_options(name), origin="world"))
    return tasks


def _string_field(data: dict, key: str, file: str, line: int, *, required: bool) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise DataError("missing", file=file, line=line, field=key)
        return ""
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", file=file, line=line,
                        field=key)
    if required and not value.strip():
        raise DataError("must not be blank", file=file, line=line, field=key)
    return value


def file_task(name: str, path: str | Path, *,
              max_options: int = DEFAULT_MAX_OPTIONS) -> SynthTask:
    """A task from a JSONL/JSON file of ``{"instruction", "input"?, "output"}`` rows."""
    file = str(path)
    rows = []
    for row in read_rows(path):
        rows.append({"fields": {
            "instruction": _string_field(row.data, "instruction", file, row.line, required=True),
            "input": _string_field(row.data, "input", file, row.line, required=False)},
            "answer": _string_field(row.data, "output", file, row.line, required=True)})
    if not rows:
        raise DataError("task file has no rows", file=file)
    answers = sorted({r["answer"] for r in rows})
    small_set = 2 <= len(answers) <= max_options and 2 * len(answers) <= len(rows)
    return SynthTask(name, rows, GENERIC_TEMPLATES, tuple(answers) if small_set else None,
                     origin=file)
