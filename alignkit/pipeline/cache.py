"""What the pipeline keeps on disk next to the stage runs, and how it reads it back.

- ``OUT/<stage>/pipeline_key.json`` (the *key file*): the stage's cache key and what it was
  computed from (kind, resolved config, upstream keys) plus the output digests of the upstream
  runs this run was started from. A sidecar rather than a manifest field because the manifest
  belongs to the stage function (``begin_run`` creates it, ``fail_run`` overwrites ``notes``)
  and the key must exist *before* the function starts: after a SIGKILL at any moment the
  directory still says which key its partial run belongs to.
- ``OUT/pipeline_force.json``: an unfinished ``--force STAGE`` request and the stages whose
  forced re-run has already started, so that running the same command again continues them
  instead of starting them over.
- ``OUT/.pipeline.lock``: held (flock) while a pipeline runs in OUT; the kernel releases it
  when the process dies, even by SIGKILL.
- ``OUT/<stage>.stale-<UTC time>``: where a run with another key is moved. Nothing is deleted.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from alignkit.contract.manifest import MANIFEST_NAME, atomic_write_bytes, read_manifest, utc_now
from alignkit.errors import AlignkitError, ConfigError

KEY_FILE = "pipeline_key.json"
FORCE_FILE = "pipeline_force.json"
LOCK_FILE = ".pipeline.lock"
KEY_FILE_VERSION = 1


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


# ------------------------------------------------------------------------------- key file

def write_key_file(out: Path, *, key: str, name: str, kind: str, config: dict,
                   upstream: dict[str, str], upstream_outputs: dict[str, dict],
                   source: str) -> None:
    """Atomically write OUT/<stage>/pipeline_key.json (creating the directory)."""
    _write_json(out / KEY_FILE, {
        "version": KEY_FILE_VERSION, "key": key, "name": name, "kind": kind, "config": config,
        "upstream": upstream, "upstream_outputs": upstream_outputs, "pipeline": source,
        "written_at": utc_now()})


@dataclass
class StageDirState:
    """What a stage directory holds right now."""

    exists: bool
    key_file: dict | None = None  # parsed pipeline_key.json; None when absent
    key_file_error: str | None = None  # why it could not be read
    status: str | None = None  # manifest status: running | completed | failed; None = no manifest
    manifest_error: str | None = None  # why the manifest could not be read
    notes: str = ""  # manifest notes (why a run failed)
    outputs: dict[str, Any] = field(default_factory=dict)  # manifest outputs


def read_stage_dir(out: Path) -> StageDirState:
    if not out.exists():
        return StageDirState(exists=False)
    state = StageDirState(exists=True)
    key_path = out / KEY_FILE
    if key_path.is_file():
        try:
            data = json.loads(key_path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "key" not in data:
                raise ValueError("no 'key' field")
            state.key_file = data
        except (OSError, ValueError) as exc:
            state.key_file_error = f"{key_path} unreadable ({exc})"
    if (out / MANIFEST_NAME).is_file():
        try:
            manifest = read_manifest(out)
            state.status, state.notes, state.outputs = manifest.status, manifest.notes, manifest.outputs
        except AlignkitError as exc:
            state.manifest_error = str(exc)
    return state


def output_digests(outputs: dict[str, Any]) -> dict[str, Any]:
    """{output name: digest} of a manifest's outputs: the content a downstream stage used."""
    return {name: (entry or {}).get("digest") for name, entry in sorted(outputs.items())}


# ------------------------------------------------------------------------------- stale runs

def move_aside(out: Path) -> Path:
    """Rename OUT to OUT.stale-<UTC time> (with -2, -3 ... if taken); returns the new path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = out.with_name(f"{out.name}.stale-{stamp}")
    n = 2
    while target.exists():
        target = out.with_name(f"{out.name}.stale-{stamp}-{n}")
        n += 1
    os.replace(out, target)
    return target


# ------------------------------------------------------------------------------- --force

@dataclass
class ForceRecord:
    """An unfinished `--force STAGE` request."""

    stage: str  # the STAGE given to --force
    started: list[str] = field(default_factory=list)  # stages whose forced re-run has begun


def read_force_record(root: Path) -> ForceRecord | None:
    path = root / FORCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ForceRecord(stage=str(data["stage"]), started=[str(s) for s in data["started"]])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); delete it to forget the interrupted "
                          "--force request") from None


def write_force_record(root: Path, record: ForceRecord) -> None:
    _write_json(root / FORCE_FILE, {"stage": record.stage, "started": record.started})


def clear_force_record(root: Path) -> None:
    (root / FORCE_FILE).unlink(missing_ok=True)


# ------------------------------------------------------------------------------- lock

@contextlib.contextmanager
def pipeline_lock(root: Path) -> Iterator[None]:
    """Exclusive lock on ROOT for one pipeline process (POSIX flock; a no-op elsewhere).

    Two pipelines in one root would move each other's directories aside and resume the
    same checkpoints; the second one fails at once instead.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; single-writer use is then the user's job
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another pipeline is running in {root} (lock {root / LOCK_FILE} "
                              "is held); wait for it or choose another --out") from None
        yield
    finally:
        os.close(fd)
