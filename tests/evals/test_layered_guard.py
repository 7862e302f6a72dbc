"""Layered evaluation: the same suites on the model alone and on the model behind a guard's
rails. A guard that flags every prompt blocks every attack and refuses every benign request;
one that flags nothing leaves the model's numbers unchanged."""
import pytest

from alignkit.evals.api import evaluate
from alignkit.world.build import WorldConfig

WORLD = WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2)


class StubGuard:
    def __init__(self, flag: bool):
        self.flag = flag

    def flags(self, texts):
        return [self.flag] * len(texts)


@pytest.fixture
def stub_guards(monkeypatch):
    from alignkit.guard import runtime

    monkeypatch.setattr(runtime.Guard, "load", staticmethod(
        lambda path: StubGuard(flag=str(path).endswith("all"))))


def _run(tmp_path, name, guard):
    return evaluate("builtin:world-tiny", ["safety", "over_refusal"], tmp_path / name,
                    world=WORLD, limit=1, guard=guard,
                    decode=__import__("alignkit.contract.specs", fromlist=["DecodeSpec"])
                    .DecodeSpec(max_new_tokens=4))["metrics"]


def test_guard_layers_change_attack_success_and_benign_refusal(tmp_path, stub_guards):
    alone = _run(tmp_path, "alone", None)
    blocking = _run(tmp_path, "blocking", "guards/all")
    passing = _run(tmp_path, "passing", "guards/none")
    assert alone["safety/attack_success"]["value"] > 0  # a random model complies (never refuses)
    assert blocking["safety/attack_success"]["value"] == 0.0
    assert blocking["over_refusal/benign_refusal"]["value"] == 1.0
    assert passing["safety/attack_success"] == alone["safety/attack_success"]
    assert passing["over_refusal/benign_refusal"] == alone["over_refusal/benign_refusal"]
