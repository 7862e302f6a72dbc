"""What a run ran on: package versions, platform, device, process count and source revision.

Recorded in every manifest so a result can be traced to the code and libraries that made it.
Cheap: versions come from package metadata (no heavy import), git is asked with a short
timeout, and torch is consulted only to name the device when the caller did not.

    >>> env = collect_environment(device="cpu", num_processes=1)
    >>> env["device"], env["num_processes"]
    ('cpu', 1)
    >>> env["torch"] is None or env["torch"][0].isdigit()
    True
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

# Distributions whose versions change results; recorded under their own names.
TRACKED_PACKAGES = (
    "alignkit", "torch", "transformers", "peft", "accelerate", "tokenizers",
    "safetensors", "numpy",
)
GIT_TIMEOUT_S = 5.0  # git is a courtesy: never let a slow file system stall a run start


def package_version(name: str) -> str | None:
    """Installed version of distribution `name`, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(args: list[str], cwd: Path) -> str | None:
    """Output of `git ARGS` run in `cwd`, or None if git is missing or the call fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip()


def git_state(path: str | Path) -> dict[str, Any] | None:
    """`{"root", "commit", "dirty"}` of the git checkout containing `path`, else None.

    `dirty` counts tracked changes and untracked, non-ignored files: either can change what
    the code does.
    """
    path = Path(path)
    if not path.is_dir():
        path = path.parent
    if not path.exists():
        return None
    root = _git(["rev-parse", "--show-toplevel"], path)
    if root is None:
        return None
    commit = _git(["rev-parse", "HEAD"], path)  # None in a repository with no commit yet
    status = _git(["status", "--porcelain"], path)
    return {"root": root, "commit": commit, "dirty": None if status is None else bool(status)}


def _default_device() -> str:
    """Best accelerator torch can see ("cuda", "mps" or "cpu")."""
    import torch  # stages import torch anyway; this is only reached when the caller did not say

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _default_num_processes() -> int:
    """Process count from the launcher's environment (torchrun / accelerate set WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def collect_environment(device: str | None = None, num_processes: int | None = None,
                        cwd: str | Path | None = None) -> dict[str, Any]:
    """The `environment` block of a RunManifest.

    Keys: `python`, one key per TRACKED_PACKAGES entry (version or None), `platform`,
    `machine`, `device`, `num_processes`, `cuda` (torch's CUDA build, when torch is already
    imported), and `git` — the checkout holding the alignkit package if there is one, else
    the one holding `cwd` (default: the current directory), else None.
    """
    env: dict[str, Any] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        env[name] = package_version(name)
    if env["alignkit"] is None:  # running from a source tree that was never installed
        env["alignkit"] = _source_tree_version()
    env["platform"] = platform.platform()
    env["machine"] = platform.machine()
    env["device"] = device if device is not None else _default_device()
    env["num_processes"] = num_processes if num_processes is not None else _default_num_processes()
    torch = sys.modules.get("torch")
    env["cuda"] = getattr(getattr(torch, "version", None), "cuda", None) if torch else None
    package_dir = Path(__file__).resolve().parent
    env["git"] = git_state(package_dir) or git_state(Path(cwd) if cwd else Path.cwd())
    return env


def _source_tree_version() -> str | None:
    """alignkit.__version__ read from the source file, without importing the package."""
    init = Path(__file__).resolve().parent.parent / "__init__.py"
    try:
        for line in init.read_text(encoding="utf-8").splitlines():
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        pass
    return None
