"""FLAN-style multitask mixtures: `alignkit synth mix --spec mix.yaml --out DIR`.

A mixture spec names tasks (world families and/or user task files), how each example is
written (templates, zero/few-shot, answer options) and how much of each task goes in
(examples-proportional with a cap, or explicit weights; see `alignkit.synth.mixing`):

    tasks:                      # "world/NAME" (= {world: NAME}), "world/*", or {name, file}
      - world/pet
      - world/add
      - {name: trivia, file: trivia.jsonl}   # relative paths: from the spec file's folder
    world: {seed: 0, rows_per_family: 300}
    templates: null             # templates per task: the first N of its registry; null = all
    shots: [0, 3]               # k per example, drawn uniformly from this list (0 = zero-shot)
    fewshot_format: inline      # inline (FLAN) | chat (exemplars as earlier turns)
    options_probability: 0.5    # chance an example of a task with a small answer set lists it
    cap: 3000                   # K of examples-proportional mixing (FLAN: 3,000); null = no cap
    weights: {}                 # task -> mass in examples, replacing min(n, K)
    seed: 0
    total: 2000                 # rows in the mixture; null = sum of the task masses

Per example (each drawn with the task's own seeded RNG, so adding a task does not change the
others): a template uniformly from the task's templates; k uniformly from `shots`; the answer
options (shuffled) with probability `options_probability` when the task has them; k exemplars
from the task's *train* rows written with the same template and options setting, never the
target row itself nor any row with the same content. A task drawn more often than it has rows
is repeated in whole passes (each row once per pass) before a random remainder.

Output in DIR: ``data.jsonl`` (``{"messages", "source": {"task", "template_id", "shots",
"options", "row", "exemplars"}}``; ``row`` and ``exemplars`` index the task's rows),
``summary.json`` / ``summary.md`` (rows per task) and ``manifest.json`` (stage ``synth-mix``;
the spec's digest is the manifest's ``config_digest``).

    >>> import tempfile
    >>> spec = MixSpec(tasks=["world/pet", "world/add"], world={"rows_per_family": 20},
    ...                shots=[0, 2], total=10)
    >>> rows, summary = build_mixture(spec, resolve_tasks(spec))
    >>> len(rows), sorted({r["source"]["task"] for r in rows})
    (10, ['world/add', 'world/pet'])
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alignkit.errors import ConfigError
from alignkit.synth.mixing import allocate_counts, mixture_masses, mixture_rates
from alignkit.synth.tasks import (DEFAULT_MAX_OPTIONS, WORLD_PREFIX, SynthTask, file_task,
                                  world_families, world_tasks)
from alignkit.synth.templates import FEWSHOT_FORMATS, fewshot, with_options

STAGE = "synth-mix"


class TaskEntry(BaseModel):
    """One task of the mixture: a world family, or a user file of instruction/input/output rows.

    In YAML, the string "world/NAME" is short for {world: NAME}; "world/*" means every family.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    world: Optional[str] = None  # a world family name, or "*" for all of them
    name: Optional[str] = None  # file task: its name in the mixture and in `weights`
    file: Optional[str] = None  # file task: JSONL/JSON path; relative = from the spec's folder
    max_options: int = Field(DEFAULT_MAX_OPTIONS, ge=2)  # file task: most outputs listed as options

    @model_validator(mode="after")
    def _one_kind(self) -> "TaskEntry":
        if self.world is not None:
            if self.name is not None or self.file is not None:
                raise ValueError("a task is either {world: NAME} or {name, file}, not both")
            known = world_families()
            if self.world != "*" and self.world not in known:
                raise ValueError(f"unknown world task {WORLD_PREFIX}{self.world}; known: "
                                 f"{WORLD_PREFIX}*, {', '.join(WORLD_PREFIX + f for f in known)}")
        elif not (self.name and self.file):
            raise ValueError("a file task needs both 'name' and 'file'")
        return self

    def names(self) -> list[str]:
        if self.world == "*":
            return [WORLD_PREFIX + f for f in world_families()]
        return [WORLD_PREFIX + self.world] if self.world is not None else [self.name]


class WorldSource(BaseModel):
    """Where world tasks' rows come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0  # the world's seed (its facts and train/held-out split)
    rows_per_family: int = Field(300, ge=1)  # train rows drawn per world family


class MixSpec(BaseModel):
    """A mixture; see the module docstring. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[TaskEntry] = Field(..., min_length=1)  # "world/NAME", "world/*" or {name, file}
    world: WorldSource = WorldSource()  # rows of the world tasks
    templates: Optional[int] = Field(None, ge=1)  # templates per task (first N); None = all
    shots: list[int] = Field(default_factory=lambda: [0, 3], min_length=1)  # k per example, uniform
    fewshot_format: Literal["inline", "chat"] = "inline"  # how exemplars precede the target
    options_probability: float = Field(0.5, ge=0.0, le=1.0)  # chance to list a task's options
    cap: Optional[int] = Field(3000, ge=1)  # K: rate_i ∝ min(n_i, K); None = no cap
    weights: dict[str, float] = Field(default_factory=dict)  # task -> mass (examples), overrides
    seed: int = 0  # sampling seed
    total: Optional[int] = Field(None, ge=1)  # rows in the mixture; None = sum of masses

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_entries(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for i, t in enumerate(value):
            if isinstance(t, str):
                if not t.startswith(WORLD_PREFIX):
                    raise ValueError(f"tasks[{i}] = {t!r}: a string task must be 'world/NAME' or "
                                     "'world/*'; a task file is {name: ..., file: ...}")
                t = {"world": t[len(WORLD_PREFIX):]}
            out.append(t)
        return out

    @field_validator("shots")
    @classmethod
    def _shots(cls, value: list[int]) -> list[int]:
        bad = [k for k in value if k < 0]
        if bad:
            raise ValueError(f"shots must be >= 0, got {bad}")
        return value

    @model_validator(mode="after")
    def _names(self) -> "MixSpec":
        names = self.task_names()
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"task(s) listed twice: {dup}")
        unknown = sorted(set(self.weights) - set(names))
        if unknown:
            raise ValueError(f"weights name unknown task(s) {unknown}; tasks: {', '.join(names)}")
        return self

    def task_names(self) -> list[str]:
        """Task names in order, with "world/*" expanded."""
        return [name for t in self.tasks for name in t.names()]


def load_mix_spec(path: str | Path) -> MixSpec:
    """Read a spec YAML; errors name the file, the line and the key."""
    from alignkit.train.config import load_config

    return load_config(MixSpec, path)


def resolve_tasks(spec: MixSpec, base_dir: str | Path | None = None) -> list[SynthTask]:
    """Load every task of `spec` (file paths relative to `base_dir`, default: the cwd)."""
    world_names = [n[len(WORLD_PREFIX):] for n in spec.task_names() if n.startswith(WORLD_PREFIX)]
    world = {t.name: t for t in world_tasks(world_names, rows_per_family=spec.world.rows_per_family,
                                            seed=spec.world.seed)}
    tasks = []
    for name in spec.task_names():
        if name in world:
            tasks.append(world[name])
            continue
        entry = next(t for t in spec.tasks if t.name == name)
        path = Path(entry.file)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        tasks.append(file_task(name, path, max_options=entry.max_options))
    return tasks


def _exemplar_rows(task: SynthTask, target: int, k: int, rng: random.Random) -> list[int]:
    """k distinct-content rows of `task`, none equal in content to row `target`."""
    if k == 0:
        return []
    n = len(task.rows)
    taken = {task.keys[target]}
    picked: list[int] = []
    for _ in range(50 * k + 100):  # rejection sampling: cheap when duplicates are rare
        j = rng.randrange(n)
        if task.keys[j] not in taken:
            taken.add(task.keys[j])
            picked.append(j)
            if len(picked) == k:
                return picked
    # Many duplicates: choose among the remaining distinct rows explicitly.
    rest = sorted({task.keys[j]: j for j in range(n) if task.keys[j] not in taken}.values())
    if len(rest) < k - len(picked):
        raise ConfigError(f"task {task.name!r}: row {target} needs {k} exemplars with other "
                          f"content, but the task has only {len(picked) + len(rest)}; "
                          "lower the shots or add rows")
    return picked + rng.sample(rest, k - len(picked))


def _row_order(n: int, count: int, rng: random.Random) -> list[int]:
    """`count` row indices of a task with n rows: whole passes, then a random remainder."""
    order = []
    for _ in range(count // n):
        p = list(range(n))
        rng.shuffle(p)
        order += p
    return order + rng.sample(range(n), count % n)


def make_example(task: SynthTask, row: int, spec: MixSpec, rng: random.Random) -> dict:
    """One mixture row for `task.rows[row]` (template, shots and options drawn from `rng`)."""
    templates = task.templates[:spec.templates] if spec.templates else task.templates
    template = rng.choice(templates)
    k = rng.choice(spec.shots)
    use_options = task.options is not None and rng.random() < spec.options_probability
    exemplars = _exemplar_rows(task, row, k, rng)
    options = None
    if use_options:
        options = list(task.options)
        rng.shuffle(options)  # no fixed position for the right answer

    def written(i: int) -> list[dict]:
        conv = task.render(i, template.id)
        return with_options(conv, options) if options else conv

    messages = fewshot([written(j) for j in exemplars], written(row), spec.fewshot_format)
    return {"messages": messages,
            "source": {"task": task.name, "template_id": template.id, "shots": len(exemplars),
                       "options": bool(options), "row": row, "exemplars": exemplars}}


def build_mixture(spec: MixSpec, tasks: list[SynthTask]) -> tuple[list[dict], list[dict]]:
    """(rows, summary): the shuffled mixture and one summary entry per task."""
    assert spec.fewshot_format in FEWSHOT_FORMATS
    sizes = {t.name: len(t.rows) for t in tasks}
    masses = mixture_masses(sizes, spec.cap, spec.weights)
    rates = mixture_rates(sizes, spec.cap, spec.weights)
    total = spec.total if spec.total is not None else max(1, round(sum(masses.values())))
    counts = allocate_counts(rates, total)
    rows: list[dict] = []
    summary = []
    for task in tasks:
        n, count = sizes[task.name], counts[task.name]
        if count and max(spec.shots) > n - 1:
            raise ConfigError(f"task {task.name!r} has {n} rows; shots up to {max(spec.shots)} "
                              f"need at least {max(spec.shots) + 1} (exemplars never include "
                              "the target row)")
        rng = random.Random(f"synth-mix-{spec.seed}-{task.name}")
        for i in (_row_order(n, count, rng) if count else []):
            rows.append(make_example(task, i, spec, rng))
        summary.append({"task": task.name, "origin": task.origin, "available": n,
                        "mass": masses[task.name], "rate": rates[task.name], "rows": count,
                        "epochs": count / n if n else 0.0,
                        "templates": len(task.templates[:spec.templates] if spec.templates
                                         else task.templates),
                        "has_options": task.options is not None})
    random.Random(f"synth-mix-{spec.seed}").shuffle(rows)
    return rows, summary


def summary_markdown(summary: list[dict]) -> str:
    lines = ["| task | available | mass | rate | rows | epochs | templates | options |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in summary:
        lines.append(f"| {s['task']} | {s['available']} | {s['mass']:g} | {s['rate']:.4f} | "
                     f"{s['rows']} | {s['epochs']:.2f} | {s['templates']} | "
                     f"{'yes' if s['has_options'] else 'no'} |")
    total = sum(s["rows"] for s in summary)
    lines.append(f"| **total** | {sum(s['available'] for s in summary)} | "
                 f"{sum(s['mass'] for s in summary):g} | 1 | {total} | | | |")
    return "\n".join(lines) + "\n"


def run_mix(spec: MixSpec, out_dir: str | Path, *, spec_path: str | Path | None = None) -> dict:
    """Build the mixture into OUT (see the module docstring); returns the summary metrics."""
    import json

    from alignkit.contract.digest import digest_file, digest_obj
    from alignkit.synth.rows import write_jsonl
    from alignkit.train.stage import begin_run, fail_run, finish_run

    out = Path(out_dir)
    base_dir = Path(spec_path).parent if spec_path is not None else None
    inputs: dict[str, dict] = {"mix_spec": {"path": str(spec_path) if spec_path else None,
                                            "digest": digest_obj(spec, "cfg")}}
    begin_run(out, STAGE, spec.model_dump(mode="json"), resume=False, seed=spec.seed,
              inputs=inputs)
    try:
        tasks = resolve_tasks(spec, base_dir)
        for t in tasks:
            if t.origin != "world":
                inputs[f"task:{t.name}"] = {"path": t.origin, "digest": digest_file(t.origin, "ds"),
                                            "n_rows": len(t.rows)}
        rows, summary = build_mixture(spec, tasks)
        write_jsonl(out / "data.jsonl", rows)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (out / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
        metrics = {"rows": float(len(rows)), "tasks": float(len(tasks)),
                   **{f"rows/{s['task']}": float(s["rows"]) for s in summary}}
        from alignkit.contract.manifest import update_manifest

        update_manifest(out, inputs=inputs)
        finish_run(out, metrics=metrics, outputs={
            "data": {"path": "data.jsonl", "digest": digest_file(out / "data.jsonl", "ds"),
                     "n_rows": len(rows)},
            "summary": {"path": "summary.json", "digest": digest_file(out / "summary.json")}})
    except BaseException as err:
        fail_run(out, err)
        raise
    return {"summary": summary, "metrics": metrics}
