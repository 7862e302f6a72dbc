"""Shared fixtures: the fake stage kinds, registered for each test and removed after it."""
import io
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # pipeline_fakes is imported by name here and in subprocesses
    sys.path.insert(0, str(HERE))

import pipeline_fakes  # noqa: E402


@pytest.fixture(autouse=True)
def fake_kinds():
    pipeline_fakes.register()
    pipeline_fakes.FAIL_NEXT.clear()
    yield pipeline_fakes
    pipeline_fakes.unregister()
    pipeline_fakes.FAIL_NEXT.clear()


@pytest.fixture
def write_pipeline(tmp_path):
    """write_pipeline(stages, **top) -> path of a pipeline YAML file in tmp_path."""
    def write(stages, name="pipe.yaml", **top):
        path = tmp_path / name
        path.write_text(yaml.safe_dump({**top, "stages": stages}, sort_keys=False))
        return path
    return write


@pytest.fixture
def quiet():
    """A console that records instead of printing (wide, so table cells are not wrapped)."""
    return Console(file=io.StringIO(), width=250, color_system=None)
