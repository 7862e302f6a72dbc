"""`manifest.json`: the record every run directory holds, written atomically.

A manifest pins what went in (resolved config, input digests, base model, template, policy,
decode settings, seed, environment), what came out (output digests, summary metrics) and where
the run came from (parent run directories). Release gates and `alignkit lineage` read it;
nothing downstream trusts loose numbers.

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> m = RunManifest(stage="sft", config={"lr": 1e-4}, seed=0, environment={"device": "cpu"})
    >>> m.config_digest.startswith("cfg-")
    True
    >>> _ = write_manifest(out, m)
    >>> read_manifest(out).config == {"lr": 0.0001}
    True
    >>> update_manifest(out, status="completed", metrics={"loss": 1.5}).status
    'completed'

The file is pretty-printed JSON with sorted keys. Non-finite floats (a NaN metric, an infinite
clipping threshold) are written as the literals `NaN`/`Infinity`, which Python's `json` reads
back exactly; strict JSON parsers in other languages may need to allow them.
"""
from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from alignkit.contract.digest import digest_obj
from alignkit.errors import DataError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
Status = Literal["running", "completed", "failed"]
# write_manifest always writes every field; a file without these was not written by it.
REQUIRED_ON_READ = ("stage", "run_id", "created_at", "status")


def utc_now() -> str:
    """Current UTC time as ISO 8601 with seconds, e.g. '2025-01-31T12:00:00+00:00'."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id(stage: str = "run") -> str:
    """Sortable, unique run id: 'sft-20250131T120000Z-1a2b3c4d'."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stage or 'run'}-{stamp}-{uuid.uuid4().hex[:8]}"


class RunManifest(BaseModel):
    """Everything needed to say what a run did and to reproduce it. Unknown keys are errors."""

    # "constants": NaN/inf survive model_dump(mode="json") (the default turns them into null).
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    schema_version: int = SCHEMA_VERSION  # bumped when a field changes meaning
    stage: str = ""  # which stage wrote the run: "sft", "prefer", "eval", ...
    run_id: str = Field(default_factory=new_run_id)  # unique id; directories may be renamed
    created_at: str = Field(default_factory=utc_now)  # UTC ISO 8601 time the run started
    finished_at: str | None = None  # UTC ISO 8601 time status became completed/failed
    config: dict[str, Any] = Field(default_factory=dict)  # the resolved config, every default filled
    config_digest: str | None = None  # digest_obj(config, "cfg"); filled in when left None
    inputs: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> {digest, path, n_rows, n_bad, quarantine_path, ...}
    base_model: dict[str, Any] | None = None  # {digest: "mdl-…", spec: {...}} of the starting model
    template: dict[str, Any] | None = None  # {name, digest: "tpl-…"} of the chat template
    policy: dict[str, Any] | None = None  # {name, version, digest: "pol-…"} of the safety policy/rubric
    decode: dict[str, Any] | None = None  # decode settings and their "dec-…" digest
    seed: int | None = None  # the global seed the run used
    environment: dict[str, Any] = Field(default_factory=dict)  # collect_environment() output
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> {path (relative to the run dir), digest}
    metrics: dict[str, float] = Field(default_factory=dict)  # summary metrics, name -> value
    parents: list[str] = Field(default_factory=list)  # parent run directories, as given (relative = to this run's dir)
    status: Status = "running"  # running | completed | failed
    notes: str = ""  # free text: why the run was made, or why it failed

    # Where this manifest was read from; set by read_manifest, never serialised.
    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _fill_config_digest(self) -> "RunManifest":
        # Computed once, at validation: change a config through update_manifest, which
        # recomputes it, rather than by assigning to `.config`.
        if self.config_digest is None:
            self.config_digest = digest_obj(self.config, "cfg")
        return self

    @property
    def path(self) -> Path | None:
        """The manifest file this object was read from (None if built in memory)."""
        return self._path

    @property
    def run_dir(self) -> Path | None:
        """The run directory this manifest was read from (None if built in memory)."""
        return None if self._path is None else self._path.parent

    def to_json(self) -> str:
        """Pretty JSON, sorted keys, trailing newline: the exact bytes write_manifest stores."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True,
                          ensure_ascii=False) + "\n"


def fsync_dir(directory: Path) -> None:
    """Persist a rename: fsync the directory entry (not possible on every OS; best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` so readers see the old file or the new one, never a torn one.

    Temp file in the same directory (so the rename cannot cross file systems), flush, fsync,
    os.replace, then fsync the directory so the rename itself survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, like open()
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def manifest_path(path_or_dir: str | Path) -> Path:
    """`RUN/manifest.json` for a run directory; a path to a file is returned unchanged."""
    p = Path(path_or_dir)
    return p / MANIFEST_NAME if p.is_dir() or p.suffix != ".json" else p


def write_manifest(out_dir: str | Path, manifest: RunManifest) -> Path:
    """Atomically write `OUT/manifest.json` (creating OUT); returns the file's path."""
    path = Path(out_dir) / MANIFEST_NAME
    atomic_write_bytes(path, manifest.to_json().encode("utf-8"))
    manifest._path = path
    return path


def _validation_to_data_error(err: ValidationError, file: Path) -> DataError:
    problems = err.errors()
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in problems)
    return DataError(f"invalid run manifest: {detail}", file=str(file), field=field)


def read_manifest(path_or_dir: str | Path) -> RunManifest:
    """Read and validate a manifest from a run directory or a manifest file path.

    Raises DataError naming the file when it is missing, not JSON, or fails validation.
    """
    path = manifest_path(path_or_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = Path(path_or_dir)
        hint = "" if where.exists() else f" ({where} does not exist)"
        raise DataError(f"no run manifest found{hint}; is this a run directory?",
                        file=str(path)) from None
    except OSError as e:
        raise DataError(f"cannot read run manifest: {e}", file=str(path)) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"run manifest is not valid JSON: {e.msg} (column {e.colno})",
                        file=str(path), line=e.lineno) from None
    if not isinstance(raw, dict):
        raise DataError(f"run manifest must be a JSON object, got {type(raw).__name__}",
                        file=str(path))
    version = raw.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise DataError(f"manifest schema_version {version} is newer than this alignkit "
                        f"understands ({SCHEMA_VERSION}); upgrade alignkit",
                        file=str(path), field="schema_version")
    missing = [k for k in REQUIRED_ON_READ if k not in raw]
    if missing:  # defaults would invent a fresh id and time for a run that never had them
        raise DataError(f"run manifest lacks required field(s) {missing}",
                        file=str(path), field=missing[0])
    try:
        manifest = RunManifest.model_validate(raw)
    except ValidationError as e:
        raise _validation_to_data_error(e, path) from None
    manifest._path = path
    return manifest


def update_manifest(out_dir: str | Path, **changes: Any) -> RunManifest:
    """Read OUT's manifest, replace the given top-level fields, validate, write it back.

    Fields are replaced, not merged: to add a metric pass `metrics={**m.metrics, "x": 1.0}`.
    Setting status to "completed"/"failed" stamps `finished_at` unless it is given.
    Returns the updated manifest.
    """
    current = read_manifest(out_dir)
    path = current.path
    assert path is not None
    unknown = sorted(set(changes) - set(RunManifest.model_fields))
    if unknown:
        raise DataError(f"unknown manifest field(s) {unknown}; known: "
                        f"{sorted(RunManifest.model_fields)}", file=str(path), field=unknown[0])
    data = current.model_dump()
    if "config" in changes and "config_digest" not in changes:
        data["config_digest"] = None  # recomputed from the new config
    data.update(changes)
    if changes.get("status") in ("completed", "failed") and "finished_at" not in changes:
        data["finished_at"] = utc_now()
    try:
        updated = RunManifest.model_validate(data)
    except ValidationError as e:
        raise _validation_to_data_error(e, path) from None
    write_manifest(path.parent, updated)
    return updated


def start_manifest(out_dir: str | Path, stage: str, config: dict[str, Any], *,
                   environment: dict[str, Any] | None = None, **fields: Any) -> RunManifest:
    """Create OUT and write a `status="running"` manifest for a run that is starting.

    `environment` defaults to `collect_environment()`; other fields pass through to
    RunManifest (e.g. `seed=`, `inputs=`, `parents=`). The run id starts with the stage name.
    """
    if environment is None:
        from alignkit.contract.environment import collect_environment

        environment = collect_environment()
    fields.setdefault("run_id", new_run_id(stage))
    manifest = RunManifest(stage=stage, config=config, environment=environment,
                           status="running", **fields)
    write_manifest(out_dir, manifest)
    return manifest
