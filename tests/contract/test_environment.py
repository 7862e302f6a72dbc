"""collect_environment: versions, device, process count, git state; cheap to call."""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys

import pytest

from alignkit.contract.environment import TRACKED_PACKAGES, collect_environment, git_state


def test_versions_come_from_package_metadata():
    env = collect_environment(device="cpu", num_processes=1)
    assert env["python"] == platform.python_version()
    for name in ("torch", "transformers", "peft", "accelerate", "tokenizers"):
        assert env[name] == importlib.metadata.version(name)
    assert set(TRACKED_PACKAGES) <= set(env)
    assert env["alignkit"] is not None


def test_device_and_processes_are_passed_through_or_detected(monkeypatch):
    env = collect_environment(device="cuda:3", num_processes=8)
    assert env["device"] == "cuda:3" and env["num_processes"] == 8
    monkeypatch.setenv("WORLD_SIZE", "4")
    env = collect_environment()
    assert env["num_processes"] == 4
    assert env["device"] in ("cpu", "cuda", "mps")
    monkeypatch.setenv("WORLD_SIZE", "garbage")
    assert collect_environment(device="cpu")["num_processes"] == 1


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
                    reason="git not installed")
def test_git_state_reports_commit_and_dirty_flag(tmp_path):
    assert git_state(tmp_path) is None  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()
    state = git_state(tmp_path)
    assert state == {"root": str(tmp_path.resolve()), "commit": head, "dirty": False}
    (tmp_path / "a.txt").write_text("2")
    assert git_state(tmp_path)["dirty"] is True
    # A file path resolves to its directory's checkout.
    assert git_state(tmp_path / "a.txt")["commit"] == head


def test_collecting_does_not_import_heavy_packages():
    """With the device given, nothing heavy is imported (the manifest must stay cheap)."""
    code = ("import sys; from alignkit.contract.environment import collect_environment; "
            "env = collect_environment(device='cpu'); "
            "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
