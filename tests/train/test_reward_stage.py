"""The reward stage: evaluation arithmetic by hand, and a reward model learning world pairs."""
import json
import math

import pytest
import torch

from alignkit.contract.manifest import read_manifest
from alignkit.errors import ConfigError, DataError
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.train.reward import (RewardConfig, calibration_report, make_pair_batches,
                                   margin_summary, reward, reward_eval_report, reward_step)
from alignkit.world.build import WorldConfig

WORLD = WorldConfig(corpus_passes=1, sft_per_family=12, heldout_per_family=6, n_people=16)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from alignkit.models.loading import load_model, save_model
    from alignkit.world.tiny import tiny_model

    tok = load_model("builtin:world-tiny").tokenizer
    path = tmp_path_factory.mktemp("model") / "small"
    save_model(tiny_model(tok, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, intermediate_size=128), tok, path)
    return str(path)


# ----------------------------------------------------------------------------- by hand

def test_margin_summary_by_hand():
    """Margins [-1, 0, 2, 3]: mean 1, population std sqrt((4+1+1+4)/4) = sqrt(2.5);
    median (0+2)/2 = 1 (linear interpolation). Histogram, 4 bins over [-1, 3] (width 1):
    edges -1, 0, 1, 2, 3; [-1, 0) holds -1, [0, 1) holds 0, [1, 2) nothing, [2, 3] holds 2, 3."""
    s = margin_summary([-1.0, 0.0, 2.0, 3.0], n_bins=4)
    assert s["mean"] == 1.0 and s["q50"] == 1.0 and s["min"] == -1.0 and s["max"] == 3.0
    assert s["std"] == pytest.approx(math.sqrt(2.5))
    assert s["histogram"] == {"edges": [-1.0, 0.0, 1.0, 2.0, 3.0], "counts": [1, 1, 0, 2]}


def test_accuracy_is_strict_and_sliced():
    """r_c = [1, 0, 0.5, 2], r_r = [0, 0, 1, 1]: wins T, tie (= wrong), F, T -> 2/4, Wilson
    interval at p = 0.5, n = 4: centre 0.5 ± 0.99978·sqrt(0.0625 + 0.060024) = ± 0.34996.
    Slices a = pairs 0, 1 -> 1/2; b = pairs 2, 3 -> 1/2. The report is in the suite schema;
    the ECE entries count the test half of the pairs (calibration_fraction 0.5 -> 2)."""
    rows = [{"category": "a"}, {"category": "a"}, {"category": "b"}, {"category": "b"}]
    rep = reward_eval_report([1.0, 0.0, 0.5, 2.0], [0.0, 0.0, 1.0, 1.0], rows,
                             slice_fields=["category"], seed=0, calibration_fraction=0.5)
    assert rep["schema"] == "alignkit.eval/v1" and rep["suites"] == ["reward"]
    acc = rep["metrics"]["reward/accuracy"]
    assert acc["value"] == 0.5 and acc["n"] == 4
    assert acc["lo"] == pytest.approx(0.1500, abs=1e-4) and acc["hi"] == pytest.approx(0.8500, abs=1e-4)
    assert acc["slices"]["category"]["a"]["value"] == 0.5
    assert acc["slices"]["category"]["b"]["n"] == 2
    for name, key in (("reward/ece", "ece"), ("reward/ece_after_temperature", "ece_temp")):
        entry = rep["metrics"][name]
        assert entry["value"] == rep["calibration"][key] and entry["n"] == 2
        assert entry["lo"] is None and entry["hi"] is None
    assert rep["margins"]["mean"] == pytest.approx((1 + 0 - 0.5 + 1) / 4)


def test_ece_of_confident_correct_margins_by_hand():
    """Every margin r_c - r_r = 10. A pair shown unflipped has p = σ(10) = 0.9999546, label 1
    (bin 15, gap 4.54e-5); flipped, p = σ(-10) = 4.54e-5, label 0 (bin 1, same gap). So
    ECE = 4.54e-5 whatever the flips. The fitted T only sharpens (T < 1), so ECE does not grow."""
    n = 40
    rep = calibration_report([10.0] * n, [0.0] * n, seed=3, calibration_fraction=0.5)
    assert rep["ece"] == pytest.approx(1 / (1 + math.exp(10)), rel=1e-4)
    assert rep["temperature"] < 1 and rep["ece_temp"] <= rep["ece"]
    assert rep["n_calibration"] == 20 and rep["n_test"] == 20 and rep["n_bins"] == 15


def test_ece_of_uninformative_rewards_by_hand():
    """All margins 0: p = 0.5 for every pair, one bin; ECE = |fraction of label 1 - 0.5| on the
    test part, which lies in [0, 0.5]; a temperature cannot change p = σ(0/T) = 0.5."""
    rep = calibration_report([0.0] * 10, [0.0] * 10, seed=0, calibration_fraction=0.5)
    assert 0 <= rep["ece"] <= 0.5 and rep["ece_temp"] == pytest.approx(rep["ece"])


def test_calibration_needs_pairs():
    with pytest.raises(ConfigError, match="at least 4"):
        calibration_report([1.0], [0.0], seed=0, calibration_fraction=0.5)


def test_reward_step_by_hand():
    """A model whose reward is the sequence length: chosen [1,2,3] -> 3, rejected [4,5] -> 2;
    loss = -log σ(3 - 2 - margin 0.5) = -log σ(0.5) = 0.474077; centring 0.1·(3+2)² = 2.5."""

    class LengthReward(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return attention_mask.sum(1).float()

    b = make_pair_batches([([1, 2, 3], [4, 5])], [0.5], micro_batch_size=1, pad_token_id=0, rng=None)[0]
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 5, 0]]
    losses, r_c, r_r = reward_step(LengthReward(), b, center_coef=0.0)
    torch.testing.assert_close(losses, torch.tensor([0.474077]), atol=1e-6, rtol=0)
    centred, _, _ = reward_step(LengthReward(), b, center_coef=0.1)
    torch.testing.assert_close(centred - losses, torch.tensor([2.5]))


def test_unpaired_rows_are_a_data_error(small_model, tmp_path):
    data = tmp_path / "u.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"q{i}", "completion": "a", "label": True})
                              for i in range(20)))
    with pytest.raises(DataError) as err:
        reward(RewardConfig(model=small_model, data=str(data)), tmp_path / "run")
    assert err.value.line == 1 and err.value.field == "chosen" and str(data) in str(err.value.file)


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def rm_run(small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "run"
    reward(RewardConfig(model=small_model, world=WORLD, world_per_family=12, train=TrainConfig(
        epochs=2, micro_batch_size=16, progress=False, optim=OptimConfig(lr=2e-3))), out)
    return out


def test_reward_model_beats_chance_on_heldout_world_pairs(rm_run):
    """94 held-out pairs (held-out entities and phrasings); after 18 steps the strict accuracy
    is about 0.85 (chance 0.5; the Wilson lower bound must clear 0.6)."""
    from alignkit.evals.suite import read_eval

    report = read_eval(rm_run)
    acc = report["metrics"]["reward/accuracy"]
    assert acc["n"] == 94
    assert acc["value"] >= 0.7 and acc["lo"] > 0.6
    assert report["margins"]["mean"] > 0
    cal = report["calibration"]
    assert cal["n_bins"] == 15 and 0 <= cal["ece"] <= 1 and 0 <= cal["ece_temp"] <= 1
    assert report["metrics"]["reward/ece"]["value"] == cal["ece"]
    assert report["metrics"]["reward/ece_after_temperature"]["value"] == cal["ece_temp"]
    assert {"category", "type"} <= set(acc["slices"])
    assert "refusal" in acc["slices"]["type"]


def test_manifest_and_saved_reward_model(rm_run):
    from alignkit.models.heads import load_reward_model

    m = read_manifest(rm_run)
    assert m.stage == "reward" and m.status == "completed"
    assert m.inputs["train"]["digest"].startswith("ds-") and m.template["digest"].startswith("tpl-")
    assert m.base_model["digest"].startswith("mdl-") and m.outputs["final"]["digest"].startswith("mdl-")
    for key in ("heldout/accuracy", "heldout/ece", "heldout/ece_temp"):
        assert key in m.metrics
    # eval.json and the manifest agree, and a gate reads eval.json (nothing skipped)
    from alignkit.gates.metrics import load_run_metrics

    run = load_run_metrics(rm_run)
    assert run.ignored == []
    assert run.metrics["reward/accuracy"].value == m.metrics["heldout/accuracy"]
    assert run.metrics["reward/accuracy"].has_interval
    assert run.metrics["reward/ece_after_temperature"].value == m.metrics["heldout/ece_temp"]
    rm, tok = load_reward_model(rm_run / "final")
    ids = tok("Hello there")["input_ids"]
    with torch.no_grad():
        r = rm(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
    assert r.shape == (1,) and torch.isfinite(r).all()


def test_lora_reward_model_runs(small_model, tmp_path):
    m = reward(RewardConfig(model=small_model, world=WORLD, world_per_family=3, world_n_per_slice=1,
                            lora={"r": 4}, center_coef=0.01, train=TrainConfig(
                                max_steps=2, micro_batch_size=8, progress=False)), tmp_path / "lora")
    assert math.isfinite(m["loss"]) and 0 <= m["heldout/accuracy"] <= 1


def test_margins_from_a_file(small_model, tmp_path):
    """Rows with `margin` train with it. Both runs start from the same weights and data order,
    so step 1 sees the same differences d = r_c − r_r; per pair the losses are softplus(2 − d)
    with the margin and softplus(−d) without, whose gap lies in (0, 2) and is ≈ 1.43 at d = 0
    (log(1 + e²) − log 2). Without the margin wired in, the two losses would be equal."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"What is {i} plus 1?", "chosen": str(i + 1),
                                          "rejected": "I can't help with that.", "margin": 2.0})
                              for i in range(24)))
    out = {}
    for use in (True, False):
        reward(RewardConfig(model=small_model, data=str(data), val_fraction=0.25, use_margin=use,
                            train=TrainConfig(max_steps=1, micro_batch_size=8, progress=False)),
               tmp_path / str(use))
        out[use] = json.loads((tmp_path / str(use) / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert 0.3 < out[True] - out[False] < 2.0
