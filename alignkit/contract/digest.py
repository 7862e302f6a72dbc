"""Content digests: sha256 over a canonical serialisation, shown short as `ds-1a2b3c4d5e6f`.

Two artifacts with the same content get the same digest whatever machine, dict order or
float formatting produced them; any change of content changes it.

    >>> digest_obj({"b": 1, "a": [1, 2]}, "cfg") == digest_obj({"a": [1, 2], "b": 1}, "cfg")
    True
    >>> digest_obj({"a": 1}, "ds")[:3]
    'ds-'
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

# Short prefixes name the kind of artifact a digest belongs to.
PREFIXES = {
    "dataset": "ds",
    "ds": "ds",
    "policy": "pol",
    "pol": "pol",
    "template": "tpl",
    "tpl": "tpl",
    "decode": "dec",
    "dec": "dec",
    "config": "cfg",
    "cfg": "cfg",
    "checkpoint": "ckpt",
    "ckpt": "ckpt",
    "model": "mdl",
    "mdl": "mdl",
    "file": "file",
    "constitution": "const",
    "const": "const",
}
SHORT_HEX = 12  # 48 bits: collision-free in practice for the artifacts of one project


def _canonical(obj: Any) -> Any:
    """Convert to plain JSON types with a single representation per value."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return repr(obj)  # JSON has no NaN/Inf; keep them distinguishable
        if obj == int(obj) and abs(obj) < 2**53:
            return int(obj)  # 1.0 and 1 describe the same setting
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):  # pydantic models
        return _canonical(obj.model_dump(mode="json"))
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise TypeError(f"cannot digest object of type {type(obj).__name__}")


def canonical_json(obj: Any) -> bytes:
    """The canonical serialisation: sorted keys, no whitespace, UTF-8."""
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def short(kind: str, hexdigest: str) -> str:
    """`short('dataset', 'abcdef...')` -> 'ds-abcdef012345'."""
    try:
        prefix = PREFIXES[kind]
    except KeyError:
        raise ValueError(f"unknown digest kind {kind!r}; known: {sorted(set(PREFIXES.values()))}")
    return f"{prefix}-{hexdigest[:SHORT_HEX]}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_obj(obj: Any, kind: str) -> str:
    """Digest of any JSON-like object (dicts, lists, pydantic models)."""
    return short(kind, sha256_bytes(canonical_json(obj)))


def digest_text(text: str, kind: str) -> str:
    return short(kind, sha256_bytes(text.encode("utf-8")))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_file(path: str | Path, kind: str = "file") -> str:
    return short(kind, sha256_file(path))


def digest_dir(path: str | Path, kind: str, pattern: str = "*") -> str:
    """Digest of a directory: relative names and contents of every file matching `pattern`.

    Used for model directories, so a re-saved identical model keeps its digest.
    """
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob(pattern) if p.is_file()):
        h.update(str(f.relative_to(root)).encode("utf-8") + b"\0")
        h.update(sha256_file(f).encode("ascii") + b"\0")
    return short(kind, h.hexdigest())
