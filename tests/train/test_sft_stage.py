"""The SFT stage end to end on a small built-in world (tiny budgets; the full-size numbers are
measured by `make demo` and recorded in benchmarks/RESULTS.md)."""
import json
import subprocess
import sys

import pytest
import torch

from alignkit.contract.lineage import lineage
from alignkit.contract.manifest import read_manifest
from alignkit.errors import ConfigError
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.train.sft import SFTConfig, sft
from alignkit.world.build import WorldConfig
from alignkit.world.pretrain import PretrainConfig, pretrain

WORLD = WorldConfig(corpus_passes=1, sft_per_family=24, heldout_per_family=3, n_people=16)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    pretrain(PretrainConfig(world=WORLD, train=TrainConfig(
        max_steps=30, micro_batch_size=16, progress=False, optim=OptimConfig(lr=3e-3, warmup_steps=5))),
        root / "pre")
    # replay and copy-family repeats off: this checks the stage's mechanics, not the world recipe
    sft(SFTConfig(model=str(root / "pre" / "final"), world=WORLD, replay_docs=0,
                  sampling_weights={}, train=TrainConfig(
        epochs=6, micro_batch_size=16, eval_every=2, progress=False,
        optim=OptimConfig(lr=2e-3, warmup_steps=5))), root / "sft")
    return root


def test_sft_learns_the_response_format(runs):
    """The behaviour SFT exists for: the validation NLL of assistant tokens falls a lot, and the
    model now answers and ends its turn with the end-of-turn token, which the base model (never
    shown the chat format) does not."""
    history = [json.loads(l) for l in (runs / "sft" / "metrics.jsonl").read_text().splitlines()]
    val = [h["val/loss"] for h in history if "val/loss" in h]
    assert val[-1] < 0.5 * val[0]
    samples = [json.loads(l) for l in (runs / "sft" / "samples.jsonl").read_text().splitlines()]
    base = [json.loads(l) for l in (runs / "pre" / "samples.jsonl").read_text().splitlines()]
    finished = lambda rows: sum(r["finished"] for r in rows) / len(rows)
    assert finished(samples) >= 0.9 and finished(base) <= 0.1


def test_manifest_records_the_contract(runs):
    m = read_manifest(runs / "sft")
    assert m.stage == "sft" and m.status == "completed"
    assert m.inputs["train"]["digest"].startswith("ds-")
    assert m.template["digest"].startswith("tpl-")
    assert m.decode["digest"].startswith("dec-")
    assert m.base_model["digest"] == read_manifest(runs / "pre").outputs["final"]["digest"]
    assert m.outputs["final"]["digest"].startswith("mdl-")
    assert "heldout/exact_match" in m.metrics and "heldout/exact_match" in read_manifest(runs / "pre").metrics
    chain = lineage(runs / "sft")
    assert [c.stage for c in chain] == ["pretrain", "sft"]


def test_final_model_loads_with_transformers_alone(runs):
    code = ("import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer;"
            "m = AutoModelForCausalLM.from_pretrained(sys.argv[1]); t = AutoTokenizer.from_pretrained(sys.argv[1]);"
            "ids = t.apply_chat_template([{'role': 'user', 'content': 'hi'}], add_generation_prompt=True, return_tensors='pt', return_dict=True);"
            "print(m.generate(**ids, max_new_tokens=2).shape[1] > 0)")
    out = subprocess.run([sys.executable, "-c", code, str(runs / "sft" / "final")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("True")


def test_existing_run_is_not_overwritten(runs):
    with pytest.raises(ConfigError, match="already holds"):
        sft(SFTConfig(model=str(runs / "pre" / "final"), world=WORLD), runs / "sft")


def test_category_weights_scale_the_loss():
    """Token-weighted average: weights (1, 3) on NLLs (2, 4) per token -> (2 + 12) / 4 = 3.5."""
    from alignkit.train.sft import sft_loss

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, labels, attention_mask=None, position_ids=None):
            sel = labels[:, 1:] != -100
            return torch.tensor([-2.0, -4.0]), sel

    batch = {"input_ids": torch.zeros(2, 2, dtype=torch.long),
             "labels": torch.tensor([[-100, 5], [-100, 6]]),
             "attention_mask": torch.ones(2, 2, dtype=torch.long),
             "position_ids": torch.zeros(2, 2, dtype=torch.long),
             "token_weights": torch.tensor([[1.0, 1.0], [3.0, 3.0]])}
    step = sft_loss(Fixed(), batch)
    assert float(step.loss_sum / step.n_units) == pytest.approx(3.5)


def test_unknown_config_key_is_an_error_naming_it(tmp_path):
    from alignkit.train.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: x\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(SFTConfig, cfg)
