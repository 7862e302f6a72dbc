"""Follow a run's `parents` back to its roots: the data behind `alignkit lineage RUN_DIR`.

A run may have several parents (an RL run has a policy run and a reward-model run), so the
ancestry is a directed acyclic graph. `lineage` returns it flattened oldest first: every run
appears once, after all of its parents, and the run asked about comes last.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_manifest(root / "sft", RunManifest(stage="sft", status="completed"))
    >>> _ = write_manifest(root / "dpo", RunManifest(stage="prefer", parents=["../sft"]))
    >>> [m.stage for m in lineage(root / "dpo")]
    ['sft', 'prefer']
"""
from __future__ import annotations

import os
from pathlib import Path

from alignkit.contract.manifest import RunManifest, read_manifest, write_manifest  # noqa: F401
from alignkit.errors import DataError

MAX_METRICS_SHOWN = 4  # a lineage line stays readable; the manifest has the rest


def resolve_parent(child_dir: str | Path, parent: str) -> Path:
    """A parent entry as a path: relative entries are relative to the child's run directory."""
    p = Path(parent).expanduser()
    return p if p.is_absolute() else Path(child_dir) / p


def lineage(run_dir: str | Path) -> list[RunManifest]:
    """Manifests of `run_dir` and all its ancestors, oldest first, `run_dir`'s own last.

    Raises DataError naming the child's manifest (field `parents`) when a parent directory
    has no manifest, and when the parents form a cycle (the cycle is spelled out).
    """
    order: list[RunManifest] = []
    done: set[Path] = set()

    def key(d: Path) -> Path:
        return Path(os.path.realpath(d))  # one identity per directory, whatever the spelling

    def visit(run: Path, stack: list[Path], child: RunManifest | None, entry: str | None):
        k = key(run)
        if k in done:
            return
        if k in stack:
            cycle = " -> ".join(str(p) for p in [*stack[stack.index(k):], k])
            raise DataError(f"run parents form a cycle: {cycle}",
                            file=str(child.path) if child else None, field="parents")
        try:
            manifest = read_manifest(run)
        except DataError as e:
            if child is None:
                raise
            raise DataError(f"parent run {entry!r} (resolved to {run}) cannot be read: "
                            f"{e.message}", file=str(child.path), field="parents") from None
        stack.append(k)
        for parent in manifest.parents:
            visit(resolve_parent(run, parent), stack, manifest, parent)
        stack.pop()
        done.add(k)
        order.append(manifest)

    visit(Path(run_dir), [], None, None)
    return order


def _display_path(path: Path | None) -> str:
    if path is None:
        return "<in memory>"
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def _output_digests(m: RunManifest) -> str:
    if "final" in m.outputs and m.outputs["final"].get("digest"):
        return str(m.outputs["final"]["digest"])
    digests = [str(v["digest"]) for _, v in sorted(m.outputs.items()) if v.get("digest")]
    return ",".join(digests) or "-"


def _metrics(m: RunManifest) -> str:
    items = sorted(m.metrics.items())
    shown = " ".join(f"{k}={v:.4g}" for k, v in items[:MAX_METRICS_SHOWN])
    if len(items) > MAX_METRICS_SHOWN:
        shown += f" (+{len(items) - MAX_METRICS_SHOWN} more)"
    return shown


def format_lineage(chain: list[RunManifest]) -> str:
    """One line per run: stage, run dir, base/output digests, key metrics, status.

        sft     runs/sft  base=mdl-1a2b3c4d5e6f  out=mdl-6f5e4d3c2b1a  loss=1.23  [completed]
    """
    if not chain:
        return "(no runs)"
    width = max(len(m.stage or "?") for m in chain)
    lines = []
    for m in chain:
        base = (m.base_model or {}).get("digest") or "-"
        parts = [f"{(m.stage or '?'):<{width}}", _display_path(m.run_dir),
                 f"base={base}", f"out={_output_digests(m)}"]
        metrics = _metrics(m)
        if metrics:
            parts.append(metrics)
        parts.append(f"[{m.status}]")
        lines.append("  ".join(parts))
    return "\n".join(lines)
