"""Self-Instruct: grow a pool of instruction tasks from a few human-written seed tasks.

Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated Instructions"
(arXiv:2212.10560), §2. Each round:

1. **Instruction generation** (§2.2): `prompts_per_round` prompts, each listing 8 in-context
   instructions, 6 human-written seed tasks and 2 machine-generated ones from the pool (fewer
   machine ones, and more seeds, while the pool has fewer than 2), shuffled; the generator
   continues the numbered list and the new items are parsed out.
2. **Filtering** (§2.2): `alignkit.synth.instruction_filters` in a fixed order (bad first
   character, length, keyword blacklist, exact and near duplicates, ROUGE-L > 0.7 with the pool);
   a kept instruction joins the pool at once, so later candidates of the round are compared
   with it too.
3. **Classification identification** (§2.2): few-shot Yes/No prompt per kept instruction.
4. **Instance generation** (§2.2): output-first for classification tasks, input-first otherwise;
   instances with an empty output, an output equal to the input, or repeated are dropped, and a
   task left with no instance is removed (counted as `no_instances`).

Run directory:

==================  =====================================================================
pool.jsonl          generated tasks, seed format plus `provenance`; only ever appended to
rounds.jsonl        one line per finished round: prompts, candidates, kept, removed per filter
manifest.json       resolved config (API key redacted), seed-file digest, generator identity,
                    template digests, decode settings, per-round and total counts
==================  =====================================================================

The in-memory pool is the seed tasks (pinned by digest) plus pool.jsonl. A run resumes
(`resume=True`) after its last finished round with the same result as an uninterrupted run,
given a deterministic generator: each round's sampling depends only on (seed, round, pool). A
round is committed by writing it to `round.pending.json` first, then appending its rows and its
stats line; a run killed in between completes the commit when resumed.

    >>> import tempfile, json
    >>> d = tempfile.mkdtemp()
    >>> seeds = [{"id": f"s{i}", "instruction": f"Name {i} animals that can swim.",
    ...           "instances": [{"input": "", "output": "Fish"}], "is_classification": False}
    ...          for i in range(8)]
    >>> _ = open(d + "/seeds.jsonl", "w").write("\\n".join(json.dumps(s) for s in seeds))
    >>> class Canned:
    ...     id, digest = "canned", "mdl-000000000000"
    ...     def generate(self, prompts, max_new_tokens, temperature, seed):
    ...         return ["Describe the water cycle in two sentences." if "series of tasks" in p
    ...                 else "No" if "Is it classification" in p else "\\nInput:\\nOutput: Rain."
    ...                 for p in prompts]
    >>> cfg = SelfInstructConfig(seed_tasks=d + "/seeds.jsonl", prompts_per_round=2)
    >>> metrics = self_instruct(cfg, d + "/run", generator=Canned())
    >>> metrics["kept"], metrics["removed/exact_duplicate"]
    (1.0, 1.0)
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alignkit.contract.digest import digest_file, digest_obj
from alignkit.contract.manifest import (atomic_write_bytes, fsync_dir, read_manifest,
                                        start_manifest, update_manifest)
from alignkit.errors import ConfigError, DataError
from alignkit.synth.generators import Generator, GeneratorConfig, GeneratorError, build_generator
from alignkit.synth.instruction_filters import DEFAULT_BLACKLIST, FILTERS, InstructionFilter
from alignkit.synth.self_instruct_prompts import (TEMPLATE_DIGESTS, classification_prompt,
                                                  instance_prompt, instruction_prompt,
                                                  parse_classification, parse_input_first,
                                                  parse_instructions, parse_output_first,
                                                  valid_instances)

logger = logging.getLogger(__name__)

STAGE = "synth-self-instruct"
POOL_FILE = "pool.jsonl"
ROUNDS_FILE = "rounds.jsonl"
PENDING_FILE = "round.pending.json"
REMOVAL_REASONS = FILTERS + ("no_instances",)
# Settings a resumed run may change: they decide when to stop or how requests are sent,
# not what a round generates.
RESUMABLE_CHANGES = {"rounds", "target_pool_size", "generator.timeout_s", "generator.max_retries",
                     "generator.backoff_s", "generator.max_backoff_s", "generator.concurrency",
                     "generator.device", "generator.api_key"}


class SelfInstructConfig(BaseModel):
    """Settings of `alignkit synth self-instruct`. Defaults follow Wang et al. 2022 where the
    paper gives a value (8 in-context instructions, 2 of them machine-generated, ROUGE-L 0.7,
    instruction temperature 0.7, greedy classification and instances)."""

    model_config = ConfigDict(extra="forbid")

    seed_tasks: str | None = None  # Self-Instruct seed-format JSONL (required)
    generator: GeneratorConfig | None = None  # who writes the text (required unless passed in the API)
    rounds: int = Field(1, ge=1)  # rounds in total; resuming with a larger value continues
    prompts_per_round: int = Field(8, ge=1)  # instruction-generation prompts per round
    target_pool_size: int | None = Field(None, ge=1)  # stop once pool.jsonl holds this many tasks
    num_in_context: int = Field(8, ge=1)  # instructions listed in each generation prompt
    num_machine_in_context: int = Field(2, ge=0)  # of which from pool.jsonl, when it has enough
    instruction_max_new_tokens: int = Field(256, ge=1)  # reply budget, instruction generation
    classification_max_new_tokens: int = Field(8, ge=1)  # reply budget, Yes/No question
    instance_max_new_tokens: int = Field(256, ge=1)  # reply budget, instance generation
    temperature: float = Field(0.7, ge=0)  # instruction generation (0 = greedy)
    instance_temperature: float = Field(0.0, ge=0)  # classification and instances (0 = greedy)
    max_instances_per_task: int = Field(5, ge=1)  # instances kept per task
    min_words: int = Field(3, ge=1)  # shortest instruction kept, in words (inclusive)
    max_words: int = Field(150, ge=1)  # longest instruction kept, in words (inclusive)
    blacklist: list[str] = Field(default_factory=lambda: list(DEFAULT_BLACKLIST))  # whole words/phrases that reject an instruction
    rouge_threshold: float = Field(0.7, ge=0, le=1)  # reject when ROUGE-L F with a pool instruction is above this
    seed: int = 0  # in-context sampling and generation seeds derive from it and the round

    @model_validator(mode="after")
    def _check(self) -> "SelfInstructConfig":
        if self.num_machine_in_context > self.num_in_context:
            raise ValueError(f"num_machine_in_context ({self.num_machine_in_context}) exceeds "
                             f"num_in_context ({self.num_in_context})")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) exceeds max_words ({self.max_words})")
        return self

    def recorded(self) -> dict[str, Any]:
        """The config as written to the manifest (an API key is replaced by '***')."""
        data = self.model_dump(mode="json")
        if self.generator is not None:
            data["generator"] = self.generator.redacted()
        return data


# ---------------------------------------------------------------- seed tasks

def _require_str(row: dict, key: str, file: str, line: int) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in row else f"{type(value).__name__} {value!r}"[:80]
        raise DataError(f"expected a non-empty string, got {got}", file=file, line=line, field=key)
    return value


def read_seed_tasks(path: str | Path) -> list[dict]:
    """Tasks in the Self-Instruct seed format, one JSON object per line:
    ``{"id", "name"?, "instruction", "instances": [{"input", "output"}], "is_classification"}``.

    Raises DataError naming file, line and field for a malformed row or a repeated id.
    """
    file = str(path)
    if not Path(path).is_file():
        raise DataError("seed tasks file not found", file=file)
    tasks, ids = [], set()
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"not valid JSON ({e.msg}, column {e.colno})", file=file,
                                line=line_no) from None
            if not isinstance(row, dict):
                raise DataError(f"expected a JSON object, got {type(row).__name__}", file=file,
                                line=line_no)
            task_id = _require_str(row, "id", file, line_no)
            if task_id in ids:
                raise DataError(f"id {task_id!r} appears twice", file=file, line=line_no, field="id")
            ids.add(task_id)
            _require_str(row, "instruction", file, line_no)
            instances = row.get("instances")
            if not isinstance(instances, list):
                raise DataError("expected a list of {input, output} objects", file=file,
                                line=line_no, field="instances")
            for k, inst in enumerate(instances):
                if not isinstance(inst, dict):
                    raise DataError("expected an object", file=file, line=line_no,
                                    field=f"instances[{k}]")
                for key in ("input", "output"):
                    if not isinstance(inst.get(key), str):
                        got = "missing" if key not in inst else type(inst[key]).__name__
                        raise DataError(f"expected a string, got {got}", file=file,
                                        line=line_no, field=f"instances[{k}].{key}")
            if not isinstance(row.get("is_classification"), bool):
                raise DataError("expected true or false", file=file, line=line_no,
                                field="is_classification")
            tasks.append(row)
    if not tasks:
        raise DataError("seed tasks file holds no task", file=file)
    return tasks


# ---------------------------------------------------------------- run-directory files

def _read_jsonl(path: Path) -> list[dict]:
    """Rows of a run file; a line that is not a JSON object (e.g. a torn append) is a DataError."""
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"not valid JSON ({e.msg}); a write was interrupted? alignkit "
                                "never rewrites this file: remove or repair the line yourself",
                                file=str(path), line=line_no) from None
            if not isinstance(row, dict):
                raise DataError("expected a JSON object", file=str(path), line=line_no)
            rows.append(row)
    return rows


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append rows in one write, then fsync: the file only ever grows."""
    if not rows:
        path.touch()
        return
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    with open(path, "ab") as f:
        f.write(data.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------- one round

def _round_seed(seed: int, round_no: int) -> int:
    return seed * 1_000_003 + round_no


def _generate(generator: Generator, prompts: list[str], max_new_tokens: int, temperature: float,
              seed: int, what: str) -> list[str]:
    if not prompts:
        return []
    replies = generator.generate(prompts, max_new_tokens, temperature, seed)
    if len(replies) != len(prompts) or not all(isinstance(r, str) for r in replies):
        raise GeneratorError(f"{generator.id}: asked for {len(prompts)} {what} replies, got "
                             f"{len(replies)} (each must be a string)")
    return replies


def _build_filter(cfg: SelfInstructConfig, tasks: list[dict]) -> InstructionFilter:
    filt = InstructionFilter(min_words=cfg.min_words, max_words=cfg.max_words,
                             blacklist=tuple(cfg.blacklist), rouge_threshold=cfg.rouge_threshold)
    for task in tasks:
        filt.add(task["instruction"], key=task["id"])
    return filt


def run_round(cfg: SelfInstructConfig, generator: Generator, round_no: int, seeds: list[dict],
              machine: list[dict], run_id: str) -> tuple[list[dict], dict[str, Any]]:
    """Generate, filter and complete one round's tasks; returns (new rows, round stats).

    Touches no file; `seeds` and `machine` (the pool so far) are not modified.
    """
    started = time.perf_counter()
    base_seed = _round_seed(cfg.seed, round_no)
    rng = random.Random(base_seed)
    prompts, contexts = [], []
    for _ in range(cfg.prompts_per_round):
        n_machine = min(cfg.num_machine_in_context, len(machine))
        n_seed = min(cfg.num_in_context - n_machine, len(seeds))
        picked = rng.sample(machine, n_machine) + rng.sample(seeds, n_seed)
        rng.shuffle(picked)
        contexts.append([t["id"] for t in picked])
        prompts.append(instruction_prompt([t["instruction"] for t in picked]))
    replies = _generate(generator, prompts, cfg.instruction_max_new_tokens, cfg.temperature,
                        base_seed, "instruction")

    filt = _build_filter(cfg, seeds + machine)
    removed: Counter = Counter()
    kept: list[tuple[int, str, Any]] = []  # (prompt index, instruction, nearest pool match)
    n_candidates = n_empty = 0
    for k, reply in enumerate(replies):
        items = parse_instructions(reply, len(contexts[k]) + 1)
        n_empty += not items
        for text in items:
            n_candidates += 1
            verdict = filt.check(text)
            if not verdict.kept:
                removed[verdict.reason] += 1
                continue
            filt.add(text, key=f"round {round_no} candidate {n_candidates}")
            kept.append((k, text, verdict.nearest))

    cls_replies = _generate(generator, [classification_prompt(t) for _, t, _ in kept],
                            cfg.classification_max_new_tokens, cfg.instance_temperature,
                            base_seed + 1, "classification")
    labels = [parse_classification(r) for r in cls_replies]
    is_clf = [label is True for label in labels]  # an unreadable answer: the general (input-first) case
    inst_replies = _generate(generator, [instance_prompt(t, c) for (_, t, _), c in zip(kept, is_clf)],
                             cfg.instance_max_new_tokens, cfg.instance_temperature,
                             base_seed + 2, "instance")

    rows = []
    for (k, text, nearest), clf, label, reply in zip(kept, is_clf, labels, inst_replies):
        parsed = parse_output_first(reply) if clf else parse_input_first(reply)
        instances = valid_instances(parsed, cfg.max_instances_per_task)
        if not instances:
            removed["no_instances"] += 1
            continue
        rows.append({
            "id": f"self_instruct_r{round_no}_{len(rows)}",
            "instruction": text.strip(),
            "instances": instances,
            "is_classification": clf,
            "source": "self-instruct",
            "provenance": {
                "run_id": run_id,
                "round": round_no,
                "generator": generator.id,
                "generator_digest": generator.digest,
                "templates": {"instruction": TEMPLATE_DIGESTS["instruction"],
                              "classification": TEMPLATE_DIGESTS["classification"],
                              "instances": TEMPLATE_DIGESTS["output_first" if clf else "input_first"]},
                "in_context_ids": contexts[k],
                "prompt_index": k,
                "seed": base_seed,
                "classification_answer": {True: "yes", False: "no", None: "unreadable"}[label],
                "most_similar": {"id": nearest.key if nearest is not None else "",
                                 "rouge_l": round(nearest.score, 6) if nearest is not None else 0.0},
            },
        })
    stats = {
        "round": round_no,
        "prompts": len(prompts),
        "replies_without_items": n_empty,
        "candidates": n_candidates,
        "kept": len(rows),
        "removed": {reason: removed.get(reason, 0) for reason in REMOVAL_REASONS},
        "classification": {"yes": labels.count(True), "no": labels.count(False),
                           "unreadable": labels.count(None)},
        "instances": sum(len(r["instances"]) for r in rows),
        "pool_size": len(machine) + len(rows),
        "rouge_pairs_scored": filt.index.n_scored,
        "seconds": round(time.perf_counter() - started, 3),
    }
    assert stats["candidates"] == stats["kept"] + sum(stats["removed"].values())
    return rows, stats


# ---------------------------------------------------------------- the run

def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else k, v, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = float(value)


def summarize(rounds: list[dict]) -> dict[str, float]:
    """Totals over rounds (`candidates`, `kept`, `removed/<filter>`, ...), `keep_rate`, and each
    round's counts under `round_<n>/...`; seconds are left out (they are not reproducible)."""
    metrics: dict[str, float] = {"rounds": float(len(rounds))}
    totals: dict[str, float] = {}
    for stats in rounds:
        flat: dict[str, float] = {}
        _flatten("", {k: v for k, v in stats.items() if k not in ("round", "seconds", "pool_size")},
                 flat)
        for key, value in flat.items():
            totals[key] = totals.get(key, 0.0) + value
            metrics[f"round_{stats['round']}/{key}"] = value
    metrics.update(totals)
    metrics["pool_size"] = float(rounds[-1]["pool_size"]) if rounds else 0.0
    metrics["keep_rate"] = totals.get("kept", 0.0) / totals["candidates"] if totals.get("candidates") else 0.0
    return metrics


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = []
        for k in sorted(set(a) | set(b)):
            keys += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return keys
    return [] if a == b else [prefix]


def _check_resume(out: Path, cfg: SelfInstructConfig, seed_digest: str, generator: Generator):
    manifest = read_manifest(out)
    if manifest.stage != STAGE:
        raise ConfigError(f"{out} holds a '{manifest.stage}' run, not a {STAGE} run")
    changed = [k for k in _diff_keys(manifest.config, cfg.recorded())
               if k not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(f"cannot resume {out}: config keys changed since the run started: "
                          f"{changed} (only {sorted(RESUMABLE_CHANGES)} may change)")
    recorded_seed = manifest.inputs.get("seed_tasks", {}).get("digest")
    if recorded_seed != seed_digest:
        raise ConfigError(f"cannot resume {out}: seed tasks file {cfg.seed_tasks} has digest "
                          f"{seed_digest}, the run started from {recorded_seed}")
    recorded_gen = (manifest.base_model or {}).get("digest")
    if recorded_gen != generator.digest:
        raise ConfigError(f"cannot resume {out}: generator {generator.id} has digest "
                          f"{generator.digest}, the run used {recorded_gen}")
    return manifest


def _finish_pending(out: Path, pool: list[dict], rounds: list[dict]) -> None:
    """Complete a round commit that a killed run left half done (see the module docstring)."""
    pending_path = out / PENDING_FILE
    if not pending_path.exists():
        return
    try:
        pending = json.loads(pending_path.read_text(encoding="utf-8"))
        round_no, rows, stats = pending["round"], pending["rows"], pending["stats"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"unreadable pending round ({e}); it was written atomically, so it was "
                        "changed by hand", file=str(pending_path)) from None
    in_pool = [r["id"] for r in pool if r.get("provenance", {}).get("round") == round_no]
    if not in_pool:
        _append_jsonl(out / POOL_FILE, rows)
        pool.extend(rows)
    elif in_pool != [r["id"] for r in rows]:
        raise DataError(f"pool.jsonl holds {len(in_pool)} of round {round_no}'s {len(rows)} "
                        f"rows ({in_pool[:3]}...); the round was partly appended",
                        file=str(out / POOL_FILE))
    if not any(s.get("round") == round_no for s in rounds):
        _append_jsonl(out / ROUNDS_FILE, [stats])
        rounds.append(stats)
    pending_path.unlink()
    fsync_dir(out)


def _outputs(out: Path, n_pool: int) -> dict[str, dict[str, Any]]:
    outputs = {}
    for name, file in (("pool", POOL_FILE), ("rounds", ROUNDS_FILE)):
        path = out / file
        if path.exists():
            outputs[name] = {"path": file, "digest": digest_file(path, "dataset")}
    if "pool" in outputs:
        outputs["pool"]["n_rows"] = n_pool
    return outputs


def self_instruct(cfg: SelfInstructConfig, out: str | Path, *, resume: bool = False,
                  generator: Generator | None = None) -> dict[str, float]:
    """Run Self-Instruct rounds into `out` (see the module docstring); returns summary metrics.

    `generator` replaces the one `cfg.generator` describes (tests, or a model already loaded).
    Without `resume`, `out` must not already hold a run.
    """
    if cfg.seed_tasks is None:
        raise ConfigError("seed_tasks is required: a JSONL file in the Self-Instruct seed format")
    if generator is None and cfg.generator is None:
        raise ConfigError("generator is required: e.g. {kind: local, model: PATH} or "
                          "{kind: openai, base_url: URL, model: NAME}")
    out = Path(out)
    seeds = read_seed_tasks(cfg.seed_tasks)
    seed_digest = digest_file(cfg.seed_tasks, "dataset")
    existing = [f for f in ("manifest.json", POOL_FILE, ROUNDS_FILE) if (out / f).exists()]
    if existing and not resume:
        raise ConfigError(f"{out} already holds a run ({', '.join(existing)}); pass --resume to "
                          "continue it, or choose another --out")
    if resume and not (out / "manifest.json").exists():
        raise ConfigError(f"cannot resume: {out} has no manifest.json")
    if generator is None:
        generator = build_generator(cfg.generator)

    decode = {name: {"max_new_tokens": n, "temperature": t}
              for name, n, t in (("instructions", cfg.instruction_max_new_tokens, cfg.temperature),
                                 ("classification", cfg.classification_max_new_tokens,
                                  cfg.instance_temperature),
                                 ("instances", cfg.instance_max_new_tokens, cfg.instance_temperature))}
    describe = getattr(generator, "describe", None)
    base_model = describe() if callable(describe) else {"id": generator.id, "digest": generator.digest}
    if resume:
        manifest = _check_resume(out, cfg, seed_digest, generator)
        manifest = update_manifest(out, status="running", finished_at=None, config=cfg.recorded())
    else:
        manifest = start_manifest(
            out, STAGE, cfg.recorded(), seed=cfg.seed, base_model=base_model,
            inputs={"seed_tasks": {"path": str(cfg.seed_tasks), "digest": seed_digest,
                                   "n_rows": len(seeds)}},
            template={"name": "self-instruct", "digest": digest_obj(TEMPLATE_DIGESTS, "template"),
                      "parts": dict(TEMPLATE_DIGESTS)},
            decode={**decode, "digest": digest_obj(decode, "decode")})
    try:
        pool = _read_jsonl(out / POOL_FILE)
        rounds = _read_jsonl(out / ROUNDS_FILE)
        _finish_pending(out, pool, rounds)
        done = max((s["round"] for s in rounds), default=0)
        for round_no in range(done + 1, cfg.rounds + 1):
            if cfg.target_pool_size is not None and len(pool) >= cfg.target_pool_size:
                logger.info("pool holds %d tasks >= target %d; stopping", len(pool),
                            cfg.target_pool_size)
                break
            rows, stats = run_round(cfg, generator, round_no, seeds, pool, manifest.run_id)
            atomic_write_bytes(out / PENDING_FILE, json.dumps(
                {"round": round_no, "rows": rows, "stats": stats}, ensure_ascii=False).encode("utf-8"))
            _finish_pending(out, pool, rounds)
            logger.info("round %d: %d candidates, %d kept, removed %s", round_no,
                        stats["candidates"], stats["kept"],
                        {k: v for k, v in stats["removed"].items() if v})
            update_manifest(out, metrics=summarize(rounds), outputs=_outputs(out, len(pool)))
        metrics = summarize(rounds)
        update_manifest(out, status="completed", metrics=metrics, outputs=_outputs(out, len(pool)))
    except BaseException as e:
        update_manifest(out, status="failed", notes=f"{type(e).__name__}: {e}"[:2000])
        raise
    return metrics


__all__ = ["SelfInstructConfig", "read_seed_tasks", "run_round", "self_instruct", "summarize"]
