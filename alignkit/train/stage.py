"""What every stage does around its loop: run directory, manifest, model output, resume.

Kept small on purpose: a recipe reads top to bottom and calls these helpers where the
bookkeeping would otherwise be copied between stages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.contract.manifest import RunManifest, read_manifest, start_manifest, update_manifest
from alignkit.errors import ConfigError


def parent_of(model_path: str) -> list[str]:
    """If the model comes from another run's `final/`, that run is this run's parent."""
    p = Path(model_path)
    if p.name == "final" and (p.parent / "manifest.json").is_file():
        return [str(p.parent.resolve())]
    return []


def begin_run(out_dir: str | Path, stage: str, config: dict[str, Any], *, resume: bool,
              is_main: bool = True, **fields: Any) -> RunManifest | None:
    """Create OUT with a `running` manifest (main process only).

    A finished run in OUT is never overwritten silently: resume it or choose another OUT.
    """
    if not is_main:  # rank 0 alone owns OUT (checking here would race with its first write)
        return None
    out = Path(out_dir)
    manifest_file = out / "manifest.json"
    if manifest_file.exists() and not resume:
        old = read_manifest(out)
        raise ConfigError(f"{out} already holds a {old.stage} run (status {old.status}); "
                          "pass --resume to continue it, or choose another --out")
    if manifest_file.exists():
        return update_manifest(out, status="running")
    return start_manifest(out, stage, config, **fields)


def finish_run(out_dir: str | Path, *, metrics: dict[str, float], outputs: dict[str, dict],
               is_main: bool = True) -> None:
    if is_main:
        update_manifest(out_dir, status="completed", metrics=metrics, outputs=outputs)


def fail_run(out_dir: str | Path, error: BaseException, is_main: bool = True) -> None:
    if is_main and (Path(out_dir) / "manifest.json").exists():
        update_manifest(out_dir, status="failed", notes=f"{type(error).__name__}: {error}")
