"""Atomic, checksummed training checkpoints that resume a run exactly.

Layout of one checkpoint (`RUN/checkpoints/step-00000123/`):

    model.safetensors    weights (tensors sharing storage, e.g. tied embeddings, stored once)
    optimizer.pt         torch.save(optimizer.state_dict())   - loads with weights_only=True
    scheduler.pt         torch.save(scheduler.state_dict())   - loads with weights_only=True
    rng.pt               torch CPU/CUDA, python `random` and numpy RNG states (plain types)
    trainer_state.json   step, epoch, position in epoch, anything JSON
    config.json          the run's resolved config
    checkpoint.json      sha256 of every file above, and the checkpoint digest "ckpt-…"

The directory is written under a hidden temporary name and renamed into place only when
every file is written and fsynced, so a directory named `step-*` is always complete; a crash
leaves at most a `.tmp-*` directory, which `latest_checkpoint` ignores. Loading verifies
every checksum before unpickling anything, and unpickles only with `weights_only=True`.

    >>> import tempfile, torch
    >>> run = tempfile.mkdtemp()
    >>> d = checkpoint_dir(run, 3)
    >>> digest = save_checkpoint(d, model_state={"w": torch.ones(2)}, optimizer_state=None,
    ...                          scheduler_state=None, rng_state=get_rng_state(),
    ...                          trainer_state={"step": 3}, config={"lr": 0.1})
    >>> latest_checkpoint(run).name, digest.startswith("ckpt-")
    ('step-00000003', True)
    >>> load_checkpoint(d).trainer_state["step"]
    3
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from alignkit.contract.digest import digest_obj, sha256_bytes, sha256_file
from alignkit.contract.manifest import atomic_write_bytes, fsync_dir
from alignkit.errors import CheckpointError

__all__ = [
    "Checkpoint", "atomic_write_bytes", "atomic_write_json", "checkpoint_dir",
    "get_rng_state", "latest_checkpoint", "list_checkpoints", "load_checkpoint",
    "prune_checkpoints", "save_checkpoint", "set_rng_state", "verify_checkpoint",
]

CHECKPOINTS_SUBDIR = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d{8,})$")  # step-00000123; more digits past 99,999,999 steps
INDEX_NAME = "checkpoint.json"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
ALIASES_KEY = "alignkit.aliases"  # safetensors metadata: alias name -> name actually stored
FILES = (MODEL_FILE, "optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json",
         "config.json")
TMP_PREFIX = ".tmp-"


# ---------------------------------------------------------------- atomic writes

def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write `obj` as pretty JSON with sorted keys (see atomic_write_bytes)."""
    return atomic_write_bytes(path, _json_bytes(obj, what=str(path)))


def _json_bytes(obj: Any, what: str) -> bytes:
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: cannot be written as JSON: {e}") from None
    return (text + "\n").encode("utf-8")


def _write_synced(path: Path, data: bytes) -> None:
    """Write and fsync a file inside a private temp dir (the dir rename is the atomic step)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------- RNG state

def get_rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from, as plain types that load with weights_only.

    Keys: `torch` (CPU generator, uint8 tensor), `cuda` (one tensor per device, [] if none),
    `python` (random.getstate() tuple), `numpy` (legacy global MT19937 state as a dict of
    plain ints/floats, None if numpy is not installed).
    """
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": [t.cpu() for t in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": None,
    }
    try:
        import numpy as np
    except ImportError:
        return state
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = {"bit_generator": str(name), "keys": [int(k) for k in keys],
                      "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)}
    return state


def _as_python_random_state(value: Any) -> tuple:
    # torch.load gives back tuples as tuples, but a JSON round trip would give lists.
    version, internal, gauss = value
    return (int(version), tuple(int(x) for x in internal), gauss)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNGs saved by get_rng_state (missing keys are left alone)."""
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda:
        if not torch.cuda.is_available():
            raise CheckpointError("checkpoint holds CUDA RNG states but CUDA is not available; "
                                  "resume on the same kind of device for an exact resume")
        if len(cuda) != torch.cuda.device_count():
            raise CheckpointError(f"checkpoint holds {len(cuda)} CUDA RNG states but "
                                  f"{torch.cuda.device_count()} devices are visible")
        torch.cuda.set_rng_state_all(cuda)
    if state.get("python") is not None:
        random.setstate(_as_python_random_state(state["python"]))
    if state.get("numpy") is not None:
        import numpy as np

        n = state["numpy"]
        np.random.set_state((n["bit_generator"], np.asarray(n["keys"], dtype=np.uint32),
                             n["pos"], n["has_gauss"], n["cached_gaussian"]))


# ---------------------------------------------------------------- weights

def _storage_key(t: torch.Tensor) -> tuple:
    return (t.device.type, t.device.index, t.untyped_storage().data_ptr())


def _view_key(t: torch.Tensor) -> tuple:
    return (*_storage_key(t), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def _dedup_tensors(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split a state dict into tensors to store and aliases (name -> stored name).

    safetensors refuses tensors that share memory. Tensors that are the *same view* of one
    storage (tied input/output embeddings) are stored once and recorded as aliases, so
    loading restores them as one shared tensor. Tensors that overlap differently (a slice of
    another) are copied: correct, just not shared after loading.
    """
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    by_view: dict[tuple, str] = {}
    storages_used: set[tuple] = set()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"model_state[{name!r}] is a {type(t).__name__}, not a tensor")
        t = t.detach()
        if t.numel() == 0:  # empty tensors have no storage worth sharing
            stored[name] = t.contiguous().cpu()
            continue
        vk = _view_key(t)
        if vk in by_view:
            aliases[name] = by_view[vk]
            continue
        sk = _storage_key(t)
        if sk in storages_used or not t.is_contiguous():
            t = t.contiguous().clone() if t.is_contiguous() else t.contiguous()
        storages_used.add(sk)
        by_view[vk] = name
        stored[name] = t.cpu()
    return stored, aliases


def _model_bytes(model_state: dict[str, torch.Tensor]) -> bytes:
    stored, aliases = _dedup_tensors(model_state)
    # One metadata key only: safetensors writes its metadata map in hash order, so two keys
    # would make identical checkpoints differ byte-wise (and in digest) from run to run.
    metadata = {ALIASES_KEY: json.dumps(aliases, sort_keys=True)}
    return safetensors_save(stored, metadata=metadata)


def _load_model_state(path: Path, device: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device=device) as f:
        meta = f.metadata() or {}
        for name in f.keys():
            out[name] = f.get_tensor(name)
    try:
        aliases = json.loads(meta.get(ALIASES_KEY, "{}"))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: unreadable alias metadata") from None
    for alias, target in aliases.items():
        if target not in out:
            raise CheckpointError(f"{path}: alias {alias!r} points to missing tensor {target!r}")
        out[alias] = out[target]  # the same tensor object: ties survive the round trip
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- weights_only safety

_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)


def _check_weights_only(obj: Any, where: str) -> None:
    """Refuse, at save time, anything `torch.load(weights_only=True)` could not load later.

    Finding out at resume time, hours later, that a scheduler state holds a lambda is too late.
    """
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, (dict, OrderedDict)):
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None), tuple)):
                raise CheckpointError(f"{where}: key {k!r} of type {type(k).__name__} cannot "
                                      "be loaded with weights_only=True")
            _check_weights_only(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple, set)):
        if isinstance(obj, set):
            raise CheckpointError(f"{where}: sets cannot be loaded with weights_only=True")
        for i, v in enumerate(obj):
            _check_weights_only(v, f"{where}[{i}]")
        return
    raise CheckpointError(f"{where}: a {type(obj).__name__} cannot be loaded with "
                          "weights_only=True; store plain types (tensors, numbers, str, lists, "
                          "dicts)")


def _torch_bytes(obj: Any, where: str) -> bytes:
    import io

    _check_weights_only(obj, where)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# ---------------------------------------------------------------- save / load

@dataclass
class Checkpoint:
    """One loaded checkpoint; the parts save_checkpoint was given, plus where and what."""

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict | None
    scheduler_state: dict | None
    rng_state: dict
    trainer_state: dict
    config: dict
    digest: str = ""  # "ckpt-…", digest of the file checksums
    path: Path | None = None
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """`RUN/checkpoints/step-00000123` for step 123."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return Path(run_dir) / CHECKPOINTS_SUBDIR / f"step-{step:08d}"


def _index_digest(files: dict[str, str]) -> str:
    return digest_obj({"format": FORMAT_VERSION, "files": files}, "ckpt")


def save_checkpoint(ckpt_dir: str | Path, *, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict | None, scheduler_state: dict | None,
                    rng_state: dict, trainer_state: dict, config: dict) -> str:
    """Write a complete checkpoint to `ckpt_dir` atomically; return its digest "ckpt-…".

    Everything is serialised in memory and checked first (JSON-able trainer_state/config,
    weights_only-loadable optimizer/scheduler/rng states), so a bad input raises
    CheckpointError before anything touches the disk. An existing `ckpt_dir` (the same step
    saved again after a resume) is replaced only once the new one is complete.
    """
    ckpt_dir = Path(ckpt_dir)
    blobs = {
        MODEL_FILE: _model_bytes(model_state),
        "optimizer.pt": _torch_bytes(optimizer_state, "optimizer_state"),
        "scheduler.pt": _torch_bytes(scheduler_state, "scheduler_state"),
        "rng.pt": _torch_bytes(rng_state, "rng_state"),
        "trainer_state.json": _json_bytes(trainer_state, "trainer_state"),
        "config.json": _json_bytes(config, "config"),
    }
    files = {name: sha256_bytes(data) for name, data in blobs.items()}
    digest = _index_digest(files)
    index = {"format": FORMAT_VERSION, "files": files, "digest": digest}

    parent = ckpt_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f"{TMP_PREFIX}{ckpt_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, data in blobs.items():
            _write_synced(tmp / name, data)
        _write_synced(tmp / INDEX_NAME, _json_bytes(index, INDEX_NAME))  # last: marks complete
        fsync_dir(tmp)
        if ckpt_dir.exists():
            old = parent / f"{TMP_PREFIX}old-{ckpt_dir.name}-{uuid.uuid4().hex[:8]}"
            os.replace(ckpt_dir, old)
            os.replace(tmp, ckpt_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, ckpt_dir)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return digest


def _read_index(ckpt_dir: Path) -> dict[str, Any]:
    path = ckpt_dir / INDEX_NAME
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir}: checkpoint directory does not exist")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; {ckpt_dir} is not a complete checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint index ({e})") from None
    ok = (isinstance(index, dict) and set(index) == {"format", "files", "digest"}
          and isinstance(index["files"], dict) and set(index["files"]) == set(FILES))
    if not ok:
        raise CheckpointError(f"{path}: corrupt checkpoint index (unexpected structure)")
    if index["format"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {index['format']!r} is not "
                              f"{FORMAT_VERSION}")
    if _index_digest(index["files"]) != index["digest"]:
        raise CheckpointError(f"{path}: checksum list does not match its digest "
                              f"{index['digest']!r}; the index was modified")
    return index


def _verify(ckpt_dir: Path) -> dict[str, Any]:
    index = _read_index(ckpt_dir)
    for name in FILES:
        path = ckpt_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from checkpoint")
        actual = sha256_file(path)
        if actual != index["files"][name]:
            raise CheckpointError(f"{path}: checksum mismatch (expected "
                                  f"{index['files'][name][:12]}…, got {actual[:12]}…); "
                                  "the file is corrupt or was modified")
    return index


def verify_checkpoint(ckpt_dir: str | Path) -> str:
    """Check every file's sha256 against checkpoint.json; return the digest "ckpt-…".

    Raises CheckpointError naming the first missing or mismatching file.
    """
    return _verify(Path(ckpt_dir))["digest"]


def _load_torch(path: Path, device: str) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad checkpoint file
        raise CheckpointError(f"{path}: cannot be loaded with weights_only=True: {e}") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot be read as JSON: {e}") from None


def load_checkpoint(ckpt_dir: str | Path, verify: bool = True,
                    map_location: str = "cpu") -> Checkpoint:
    """Load a checkpoint written by save_checkpoint, verifying every checksum first.

    `verify=False` skips the sha256 pass (for very large checkpoints already verified);
    the index is still read and unpickling is still weights_only.
    """
    ckpt_dir = Path(ckpt_dir)
    index = _verify(ckpt_dir) if verify else _read_index(ckpt_dir)
    model_path = ckpt_dir / MODEL_FILE
    try:
        model_state = _load_model_state(model_path, map_location)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - a truncated/corrupt safetensors file
        raise CheckpointError(f"{model_path}: cannot be read: {e}") from None
    rng = _load_torch(ckpt_dir / "rng.pt", "cpu")  # RNG states must live on the CPU
    return Checkpoint(
        model_state=model_state,
        optimizer_state=_load_torch(ckpt_dir / "optimizer.pt", map_location),
        scheduler_state=_load_torch(ckpt_dir / "scheduler.pt", map_location),
        rng_state=rng,
        trainer_state=_load_json(ckpt_dir / "trainer_state.json"),
        config=_load_json(ckpt_dir / "config.json"),
        digest=index["digest"],
        path=ckpt_dir,
        files=dict(index["files"]),
    )


# ---------------------------------------------------------------- finding / pruning

def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `RUN/checkpoints/`, as (step, path), oldest first.

    Complete = a `step-NNNNNNNN` directory holding checkpoint.json; temp dirs left by a crash
    (`.tmp-*`) and anything else are ignored.
    """
    root = Path(run_dir) / CHECKPOINTS_SUBDIR
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = STEP_DIR.match(child.name)
        if m and child.is_dir() and (child / INDEX_NAME).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under `RUN/checkpoints/`, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: str | Path, keep: int, remove_temp: bool = True) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints; return what was removed.

    With `remove_temp` (default) also removes `.tmp-*` directories left by crashed saves.
    Call it from the process that saves checkpoints, after a save, never concurrently with
    one. `keep` must be >= 1: pruning never deletes the last checkpoint.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the last checkpoint is never deleted), got {keep}")
    removed = []
    for _, path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path)
        removed.append(path)
    root = Path(run_dir) / CHECKPOINTS_SUBDIR
    if remove_temp and root.is_dir():
        for child in sorted(root.iterdir()):
            if child.name.startswith(TMP_PREFIX) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed
