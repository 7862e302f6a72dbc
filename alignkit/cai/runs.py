"""Run-directory bookkeeping shared by the CAI stages: a manifest that starts `running`, and
finishes `completed` with metrics and digested outputs (or `failed`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from alignkit.contract.digest import digest_file
from alignkit.contract.manifest import read_manifest, start_manifest, update_manifest
from alignkit.errors import ConfigError


def world_policy_entry() -> dict[str, Any]:
    """{name, version, digest} of the world's policy (for runs that read world rows)."""
    from alignkit.world.policy import load_policy

    p = load_policy()
    return {"name": p.id, "version": p.version, "digest": p.digest}


def ensure_new(out: Path) -> None:
    """A run (finished, failed or running) already in OUT is an error: never overwritten."""
    if (out / "manifest.json").exists():
        old = read_manifest(out)
        raise ConfigError(f"{out} already holds a {old.stage} run (status {old.status}); "
                          "choose another --out")


def restart_unfinished(out: Path, stage: str, files: Sequence[str]) -> bool:
    """For a stage called with `resume=True`: the CAI stages keep no checkpoint, so an
    interrupted run of `stage` in OUT (manifest `running` or `failed`) is started again from
    scratch. Its manifest and the run's own `files` (names inside OUT) are deleted; anything
    else in OUT (e.g. a pipeline's key file) stays. A completed run, or a run of another stage,
    is left alone (`ensure_new` then refuses it). Returns whether an old run was cleared.
    """
    if not (out / "manifest.json").exists():
        return False
    old = read_manifest(out)
    if old.stage != stage or old.status not in ("running", "failed"):
        return False
    for name in files:
        (out / name).unlink(missing_ok=True)
    (out / "manifest.json").unlink()
    return True


def start(out: Path, stage: str, config: dict, *, model_path: str | None = None,
          **fields: Any) -> None:
    """Create OUT with a `running` manifest (after `ensure_new`)."""
    ensure_new(out)
    parents = []
    if model_path:
        p = Path(model_path)
        if p.name == "final" and (p.parent / "manifest.json").is_file():
            parents = [str(p.parent.resolve())]  # the model came from another run
    start_manifest(out, stage, config, parents=parents,
                   **{k: v for k, v in fields.items() if v is not None})


def finish(out: Path, metrics: dict[str, float], outputs: dict[str, Path]) -> None:
    """Mark the run completed with its metrics and the dataset digests of its outputs."""
    update_manifest(out, status="completed", metrics=metrics,
                    outputs={name: {"path": str(path.relative_to(out)),
                                    "digest": digest_file(path, "dataset")}
                             for name, path in outputs.items()})


def fail(out: Path, error: BaseException) -> None:
    if (out / "manifest.json").exists():
        update_manifest(out, status="failed", notes=f"{type(error).__name__}: {error}")
