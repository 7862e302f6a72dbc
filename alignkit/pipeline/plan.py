"""Cache decisions: for each stage, run it, resume it, or reuse what is already in OUT/<stage>.

The rules, first match wins (the `why` column of the plan says which one fired):

1. ``--force STAGE``: STAGE and every later stage in the file re-run, except those whose
   forced re-run an earlier, interrupted run of the same ``--force STAGE`` already started
   (recorded in OUT/pipeline_force.json): running the same command again continues them.
2. No directory (or an empty one): run.
3. A stage it references (``${NAME.out}``) will run or resume: run. Its input is being
   rebuilt, so nothing built from the old one may be reused -- even under the same key,
   because training is not guaranteed to be bit-reproducible across machines.
4. No or unreadable key file, a different key, a referenced stage whose outputs (manifest
   output digests) differ from the ones this run started from, an unreadable manifest, or a
   listed output missing from disk: the old directory is moved aside and the stage re-runs.
5. Same key, no manifest (stopped before the stage function began): run in place.
6. Same key, manifest completed: reuse.
7. Same key, manifest running or failed: resume (the stage continues from its checkpoint).

Why move aside rather than stop with an error on a key change: both keep every byte, but
moving aside lets the edited pipeline proceed while the old run stays complete and intact
(manifest, key file and all) under OUT/<stage>.stale-<time>; putting it back under its old
name with the old config restores the cache hit. An error would only add a manual step to
every config edit, and an ``rm -rf`` typed in a hurry is how runs actually get lost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from alignkit.errors import ConfigError
from alignkit.pipeline.cache import ForceRecord, StageDirState, output_digests, read_stage_dir
from alignkit.pipeline.resolve import ResolvedStage

Action = Literal["run", "resume", "reuse"]
MAX_CHANGES_SHOWN = 3
MAX_NOTE_CHARS = 120  # of a failed run's error, quoted in `why`


@dataclass
class PlannedStage:
    stage: ResolvedStage
    action: Action
    why: str  # the rule that decided, in words
    move_aside: bool  # move the existing OUT/<stage> to OUT/<stage>.stale-<time> first
    forced: bool  # re-run because of --force (recorded in the force file once started)
    state: StageDirState  # what the directory held when planned


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        flat: dict[str, Any] = {}
        for k, v in obj.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat
    return {prefix: obj}


def describe_key_change(old: dict, stage: ResolvedStage) -> str:
    """Why the key in OUT differs from the new one, in the user's terms."""
    if old.get("kind") != stage.kind.name:
        return f"stage kind changed ({old.get('kind')} -> {stage.kind.name})"
    old_up = old.get("upstream") or {}
    for name in sorted(set(old_up) | set(stage.upstream)):
        if old_up.get(name) != stage.upstream.get(name):
            return f"upstream '{name}' changed (key {old_up.get(name)} -> {stage.upstream.get(name)})"
    before, after = _flatten(old.get("config") or {}), _flatten(stage.config_dump)
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    if not changed:
        return "key changed (same config: the key's formula or canonical form changed)"
    shown = ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed[:MAX_CHANGES_SHOWN])
    more = len(changed) - MAX_CHANGES_SHOWN
    return f"config changed: {shown}" + (f" (+{more} more)" if more > 0 else "")


def _missing_output(stage: ResolvedStage, state: StageDirState) -> str | None:
    for name, entry in sorted(state.outputs.items()):
        rel = (entry or {}).get("path")
        if rel and not (stage.out / rel).exists():
            return name
    return None


def _decide(stage: ResolvedStage, state: StageDirState,
            decided: dict[str, PlannedStage]) -> tuple[Action, str, bool]:
    """(action, why, move_aside) by rules 2-7 of the module docstring."""
    if not state.exists:
        return "run", "no previous run", False
    if not stage.out.is_dir():
        return "run", "a file, not a run directory, is in the way", True
    if not any(stage.out.iterdir()):
        return "run", "empty directory", False
    for name in stage.upstream:
        if decided[name].action != "reuse":
            return "run", f"upstream '{name}' will {decided[name].action}", True
    if state.key_file is None:
        why = state.key_file_error or "directory not made by a pipeline (no pipeline_key.json)"
        return "run", why, True
    if state.key_file["key"] != stage.key:
        return "run", describe_key_change(state.key_file, stage), True
    recorded = state.key_file.get("upstream_outputs") or {}
    for name in stage.upstream:
        if recorded.get(name) != output_digests(decided[name].state.outputs):
            return "run", f"upstream '{name}' outputs changed since this run started", True
    if state.manifest_error is not None:
        return "run", f"manifest unreadable: {state.manifest_error}", True
    if state.status is None:
        return "run", "same key; the last attempt stopped before the stage began", False
    if state.status == "completed":
        missing = _missing_output(stage, state)
        if missing is not None:
            return "run", f"output '{missing}' listed in the manifest is missing", True
        return "reuse", "completed run with the same key", False
    note = state.notes.strip().splitlines()[0] if state.notes.strip() else ""
    if len(note) > MAX_NOTE_CHARS:
        note = note[: MAX_NOTE_CHARS - 3] + "..."
    notes = f": {note}" if note else ""
    return "resume", f"interrupted run with the same key (status {state.status}{notes})", False


def plan_stages(stages: list[ResolvedStage], *, force: str | None = None,
                force_record: ForceRecord | None = None) -> list[PlannedStage]:
    """Decide every stage's action from what its directory holds (reads, never writes)."""
    names = [s.name for s in stages]
    if force is not None and force not in names:
        raise ConfigError(f"--force {force!r}: no such stage (stages: {', '.join(names)})")
    force_from = names.index(force) if force is not None else len(stages)
    continuing = set(force_record.started) if (
        force is not None and force_record is not None and force_record.stage == force) else set()
    decided: dict[str, PlannedStage] = {}
    for stage in stages:
        state = read_stage_dir(stage.out)
        forced = stage.index >= force_from and stage.name not in continuing
        if forced:
            action, why, move = "run", f"forced (--force {force})", state.exists
        else:
            action, why, move = _decide(stage, state, decided)
            if stage.name in continuing:
                why += f" (its --force {force} re-run already started)"
        decided[stage.name] = PlannedStage(stage, action, why, move, forced, state)
    return [decided[n] for n in names]
