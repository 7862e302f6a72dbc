"""The prefer stage: loss plumbing by hand, reference strategies end to end, DPO on the world."""
import json
import math

import pytest
import torch

from alignkit.contract.manifest import read_manifest
from alignkit.data.encode import EncodedExample
from alignkit.errors import ConfigError, DataError
from alignkit.losses.preference import PREFERENCE_LOSSES
from alignkit.models.reference import collate_sequences
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.train.prefer import (LOSS_ARGUMENTS, PreferConfig, _normalise, derangement,
                                   kl_estimate, prefer, prefer_eval_report, preference_step,
                                   to_unpaired)
from alignkit.world.build import WorldConfig

WORLD = WorldConfig(corpus_passes=1, sft_per_family=12, heldout_per_family=6, n_people=16)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A 2-layer, 64-wide random Llama with the world tokenizer (fast on 2 cores)."""
    from alignkit.models.loading import load_model, save_model
    from alignkit.world.tiny import tiny_model

    tok = load_model("builtin:world-tiny").tokenizer
    path = tmp_path_factory.mktemp("model") / "small"
    save_model(tiny_model(tok, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, intermediate_size=128), tok, path)
    return str(path)


def config(model, **kw) -> PreferConfig:
    train = kw.pop("train", {})
    kw = {"world_per_family": 12, "kl_prompts": 0, **kw}
    return PreferConfig(model=model, world=WORLD, decode={"max_new_tokens": 8, "temperature": 1.0}, train=TrainConfig(
        **{"max_steps": 2, "micro_batch_size": 16, "progress": False,
           "optim": OptimConfig(lr=2e-3), **train}), **kw)


SMALL = {"world_per_family": 3, "world_n_per_slice": 1, "train": {"max_steps": 1, "micro_batch_size": 8}}


def history(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- by hand

class FixedScorer(torch.nn.Module):
    """log p = -(t+1)/10 at every scored position t."""

    def forward(self, input_ids, labels, attention_mask=None, position_ids=None):
        selected = labels[:, 1:] != -100
        t = torch.arange(input_ids.shape[1] - 1).expand_as(selected)
        return (-(t + 1) / 10)[selected].float(), selected


class ZeroReference:
    def batch_logps(self, batch):
        return torch.zeros(int(batch["n_seqs"]))


def pair_batch():
    chosen = EncodedExample([1, 5, 6, 7, 2], [-100, -100, 6, 7, 2])
    rejected = EncodedExample([1, 5, 9, 10, 11, 2], [-100, -100, 9, 10, 11, 2])
    batch = collate_sequences([chosen, rejected], pad_token_id=0)
    batch["n_items"] = 1
    return batch


def test_preference_step_by_hand():
    """Chosen scores t = 1..3: -(0.2+0.3+0.4) = -0.9; rejected t = 1..4: -(0.2+...+0.5) = -1.4.
    Reference 0, β = 1: rewards -0.9 and -1.4, margin 0.5, loss -log σ(0.5) = 0.474077."""
    cfg = PreferConfig(loss="sigmoid", beta=1.0)
    out, metrics, logps = preference_step(FixedScorer(), pair_batch(), cfg, ZeroReference())
    torch.testing.assert_close(out.losses, torch.tensor([0.474077]), atol=1e-6, rtol=0)
    assert metrics["rewards/chosen"] == pytest.approx(-0.9)
    assert metrics["rewards/rejected"] == pytest.approx(-1.4)
    assert metrics["rewards/margins"] == pytest.approx(0.5)
    assert metrics["rewards/accuracies"] == 1.0
    assert metrics["logps/chosen"] == pytest.approx(-0.9)
    assert metrics["logps/rejected"] == pytest.approx(-1.4)


def test_simpo_gets_lengths_by_hand():
    """SimPO, β = 2, γ = 0.5: averages -0.9/3 = -0.3 and -1.4/4 = -0.35;
    loss = -log σ(2·0.05 - 0.5) = -log σ(-0.4) = 0.913015. No reference is consulted."""
    cfg = PreferConfig(loss="simpo", beta=2.0, gamma=0.5)
    out, metrics, _ = preference_step(FixedScorer(), pair_batch(), cfg, None)
    torch.testing.assert_close(out.losses, torch.tensor([0.913015]), atol=1e-6, rtol=0)
    assert metrics["rewards/chosen"] == pytest.approx(-0.6)


def test_every_loss_has_its_arguments():
    assert set(LOSS_ARGUMENTS) == set(PREFERENCE_LOSSES)
    sides = {"policy_chosen_logps": torch.tensor([-1.0]), "policy_rejected_logps": torch.tensor([-2.0]),
             "ref_chosen_logps": torch.tensor([-1.5]), "ref_rejected_logps": torch.tensor([-1.5]),
             "chosen_lengths": torch.tensor([2]), "rejected_lengths": torch.tensor([3]),
             "policy_logps": torch.tensor([-1.0]), "ref_logps": torch.tensor([-1.5]),
             "labels": torch.tensor([True]), "kl": torch.tensor(0.0)}
    for name, build in LOSS_ARGUMENTS.items():  # a wrong argument name would be a TypeError
        out = PREFERENCE_LOSSES[name](**build(PreferConfig(loss=name, label_smoothing=0.1), sides))
        assert torch.isfinite(out.losses).all(), name


def test_derangement_has_no_fixed_point():
    for n in range(2, 12):
        p = derangement(n, seed=n)
        assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
    with pytest.raises(ConfigError):
        derangement(1, 0)


def test_rows_normalise_and_split():
    rows = _normalise([{"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}], "preference", "f")
    assert rows[0]["prompt"] == [{"role": "user", "content": "Hi"}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "Go away"}]
    un = to_unpaired(rows)
    assert [(r["completion"][0]["content"], r["label"]) for r in un] == [("Hello", True), ("Go away", False)]
    with pytest.raises(DataError) as err:
        _normalise([{"prompt": "p", "completion": "c", "label": "yes"}], "unpaired", "data.jsonl")
    assert err.value.file == "data.jsonl" and err.value.line == 1 and err.value.field == "label"


def test_prefer_eval_report_by_hand():
    """Implicit rewards (chosen, rejected): (1, 0) right, (0, 0) a tie = wrong, (0.2, 0.5) wrong,
    (2, -1) right -> accuracy 2/4. Wilson at p = 0.5, n = 4, z = 1.96: centre 0.5,
    half = z/(1 + z²/4)·sqrt(0.25/4 + z²/64) = 0.99978·sqrt(0.0625 + 0.060024) = 0.34996
    -> [0.1500, 0.8500]. Slices: category a = pairs 0, 1 -> 1/2; b = pairs 2, 3 -> 1/2; type
    x = pairs 0, 2 -> 1/2, y = pair 1 -> 0/1, pair 3 has no type. Margins 1, 0, -0.3, 3: mean
    0.925; chosen mean (1 + 0 + 0.2 + 2)/4 = 0.8, rejected mean (0 + 0 + 0.5 − 1)/4 = −0.125.
    KL samples 0.1 and 0.3: mean 0.2, any bootstrap mean lies in [0.1, 0.3]."""
    rows = [{"category": "a", "type": "x"}, {"category": "a", "type": "y"},
            {"category": "b", "type": "x"}, {"category": "b"}]
    heldout = {"val/rewards/accuracies": 0.5, "val/loss": 0.7}
    rep = prefer_eval_report([(1.0, 0.0), (0.0, 0.0), (0.2, 0.5), (2.0, -1.0)], rows, [0.1, 0.3],
                             heldout=heldout)
    assert rep["schema"] == "alignkit.eval/v1" and rep["suites"] == ["prefer"]
    acc = rep["metrics"]["prefer/accuracy"]
    assert acc["value"] == 0.5 and acc["n"] == 4
    assert acc["lo"] == pytest.approx(0.1500, abs=1e-4) and acc["hi"] == pytest.approx(0.8500, abs=1e-4)
    assert {k: v["value"] for k, v in acc["slices"]["category"].items()} == {"a": 0.5, "b": 0.5}
    assert {k: (v["value"], v["n"]) for k, v in acc["slices"]["type"].items()} == \
        {"x": (0.5, 2), "y": (0.0, 1)}
    assert rep["margins"]["mean"] == pytest.approx(0.925)
    assert sum(rep["margins"]["histogram"]["counts"]) == 4
    assert rep["rewards"] == pytest.approx({"chosen_mean": 0.8, "rejected_mean": -0.125})
    kl = rep["metrics"]["prefer/kl"]
    assert kl["value"] == pytest.approx(0.2) and kl["n"] == 2 and 0.1 <= kl["lo"] <= kl["hi"] <= 0.3
    assert rep["heldout"] == heldout
    # Unpaired losses (KTO) have no pairs: no accuracy, no margins; no KL samples: no KL.
    assert prefer_eval_report([], [], [], heldout={})["metrics"] == {}
    with pytest.raises(ValueError, match="2 pair rewards for 1 held-out rows"):
        prefer_eval_report([(1.0, 0.0)] * 2, rows[:1], [], heldout={})


def test_unpaired_data_needs_kto(small_model, tmp_path):
    data = tmp_path / "u.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}", "label": i % 2 == 0})
                              for i in range(40)))
    with pytest.raises(ConfigError, match="use loss: kto"):
        prefer(config(small_model, data=str(data)), tmp_path / "run")
    m = prefer(config(small_model, data=str(data), loss="kto", val_fraction=0.2,
                      train={"max_steps": 1, "micro_batch_size": 8}), tmp_path / "kto")
    assert math.isfinite(m["loss"]) and "kl_z0" in m


def test_world_preference_rows():
    from alignkit.world.build import build_world
    from alignkit.world.preferences import VERBOSE, world_preference_rows
    from alignkit.world.safety import is_world_refusal

    world = build_world(WORLD)
    train = world_preference_rows(world, split="train", seed=0, n_per_slice=1, per_family=6)
    held = world_preference_rows(world, split="heldout", seed=0, n_per_slice=1, per_family=6)
    tasks = [r for r in train if r["type"] in ("wrong", "verbose", "refusal")]
    assert len(tasks) == 6 * len(world.families)  # per_family caps each family
    for fam in world.families:  # every family gets every rejected kind, 2 each
        kinds = [r["type"] for r in tasks if r["category"] == fam]
        assert sorted(kinds) == ["refusal"] * 2 + ["verbose"] * 2 + ["wrong"] * 2
    for r in tasks:
        answer, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert r["prompt"][-1]["role"] == "user" and r["chosen"][0]["role"] == "assistant"
        if r["type"] == "wrong":
            assert rejected != answer
        elif r["type"] == "verbose":
            assert rejected == VERBOSE.format(answer=answer)
        else:
            assert is_world_refusal(rejected)
    assert any(r["type"] == "unsafe_direct" for r in train)  # the safety pairs are included
    prompts = lambda rows: {json.dumps(r["prompt"]) for r in rows}  # noqa: E731
    assert not prompts(train) & prompts(held)


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def dpo_run(small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "run"
    prefer(config(small_model, kl_prompts=8, train={"max_steps": 12, "eval_every": 6}), out)
    return out


def test_dpo_raises_heldout_implicit_reward_accuracy(dpo_run):
    """Before training every implicit reward is 0 (policy = reference), so the strict
    held-out accuracy is 0 and chance is 0.5. After 12 DPO steps on the small world it was
    0.915 (0.883 after 6) on 94 held-out pairs (held-out entities and phrasings)."""
    h = history(dpo_run)
    assert h[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference at step 1
    val = [r for r in h if "val/rewards/accuracies" in r]
    assert len(val) == 2
    assert val[-1]["val/rewards/accuracies"] >= 0.75
    assert val[-1]["val/rewards/margins"] > 0.5
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                "rewards/accuracies", "logps/chosen", "logps/rejected"):
        assert all(key in r for r in h), key
    assert all(math.isfinite(r["val/kl"]) and r["val/kl_samples"] == 8 for r in val)


def test_manifest_records_digests(dpo_run):
    m = read_manifest(dpo_run)
    assert m.stage == "prefer" and m.status == "completed"
    assert m.inputs["train"]["digest"].startswith("ds-")
    assert m.inputs["validation"]["digest"].startswith("ds-")
    assert m.inputs["reference"] == {"strategy": "frozen_copy", "digest": m.base_model["digest"]}
    assert m.template["digest"].startswith("tpl-") and m.decode["digest"].startswith("dec-")
    assert m.policy["digest"].startswith("pol-")
    assert m.outputs["final"]["digest"].startswith("mdl-")
    assert m.metrics["val/rewards/accuracies"] >= 0.75


def test_eval_json_is_the_suite_schema_and_matches_the_manifest(dpo_run):
    """eval.json (alignkit.eval/v1) holds the final evaluation: prefer/accuracy on the 94
    held-out pairs equals the manifest's val/rewards/accuracies, prefer/kl its val/kl over the
    8 KL samples; gates read both with their intervals and nothing is skipped."""
    from alignkit.evals.suite import read_eval
    from alignkit.gates.metrics import load_run_metrics

    m = read_manifest(dpo_run)
    report = read_eval(dpo_run)
    acc, kl = report["metrics"]["prefer/accuracy"], report["metrics"]["prefer/kl"]
    assert acc["n"] == 94 and acc["value"] == pytest.approx(m.metrics["val/rewards/accuracies"])
    assert acc["lo"] < acc["value"] < acc["hi"]
    assert {"category", "type"} <= set(acc["slices"]) and "refusal" in acc["slices"]["type"]
    assert kl["n"] == 8 and kl["value"] == pytest.approx(m.metrics["val/kl"], abs=1e-6)
    assert kl["lo"] <= kl["value"] <= kl["hi"]
    assert report["heldout"] == {k: v for k, v in m.metrics.items() if k.startswith("val/")}
    assert report["margins"]["mean"] == pytest.approx(m.metrics["val/rewards/margins"])
    assert report["model"] == str(dpo_run / "final") and report["template"] == m.template["digest"]
    run = load_run_metrics(dpo_run)
    assert run.ignored == [] and run.metrics["prefer/accuracy"].has_interval


def test_precomputed_reference_is_cached_and_reused(small_model, tmp_path, monkeypatch):
    """Same first step as the frozen copy; a second run reads the cache (no scoring pass);
    another max_length is another key and recomputes."""
    import alignkit.models.reference as reference

    calls = []
    real = reference.score_examples
    monkeypatch.setattr(reference, "score_examples", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = tmp_path / "cache"
    kw = dict(reference="precomputed", ref_cache_dir=str(cache), **SMALL)
    prefer(config(small_model, **SMALL), tmp_path / "frozen")
    prefer(config(small_model, **kw), tmp_path / "a")
    prefer(config(small_model, **kw), tmp_path / "b")
    assert len(calls) == 1
    a, b = read_manifest(tmp_path / "a"), read_manifest(tmp_path / "b")
    assert a.inputs["reference"]["cache_reused"] is False
    assert b.inputs["reference"]["cache_reused"] is True
    assert a.inputs["reference"]["cache_key"] == b.inputs["reference"]["cache_key"]
    first, frozen_first = history(tmp_path / "a")[0], history(tmp_path / "frozen")[0]
    for key in ("loss", "logps/chosen", "logps/rejected", "rewards/margins"):
        assert first[key] == pytest.approx(frozen_first[key], abs=1e-4), key
    prefer(config(small_model, max_length=500, **kw), tmp_path / "c")
    assert read_manifest(tmp_path / "c").inputs["reference"]["cache_reused"] is False
    assert len(calls) == 2


def test_lora_reference_is_the_model_with_adapters_disabled(small_model, tmp_path):
    with pytest.raises(ConfigError, match="needs `lora:`"):
        prefer(config(small_model, reference="adapters_disabled"), tmp_path / "x")
    m = prefer(config(small_model, reference="adapters_disabled", lora={"r": 4},
                      world_per_family=3, world_n_per_slice=1,
                      train={"max_steps": 3, "micro_batch_size": 8, "optim": OptimConfig(lr=5e-3)}),
               tmp_path / "lora")
    h = history(tmp_path / "lora")
    assert h[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # B = 0: policy == base
    assert h[-1]["rewards/margins"] != 0.0 and m["reference_forward_calls"] > 0


def test_simpo_runs_without_a_reference_forward(small_model, tmp_path):
    m = prefer(config(small_model, loss="simpo", beta=2.0, **SMALL), tmp_path / "simpo")
    assert math.isfinite(m["loss"]) and m["reference_forward_calls"] == 0


def test_kl_estimate_is_zero_when_policy_is_reference(small_model):
    """k1 = mean(log π − log π_ref) = 0 exactly in expectation and here sample by sample."""
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model
    from alignkit.models.reference import Reference

    lm = load_model(small_model)
    tpl = resolve_chat_template(lm.tokenizer, None)
    prompts = [[{"role": "user", "content": "Where does Ann live?"}],
               [{"role": "user", "content": "What is 2 plus 3?"}]]
    from alignkit.contract.specs import DecodeSpec

    r = kl_estimate(lm.model, lm.tokenizer, tpl, prompts, Reference.frozen_copy(lm.model),
                    DecodeSpec(max_new_tokens=6), pad_token_id=lm.tokenizer.pad_token_id)
    assert r["kl_samples"] == 2 and abs(r["kl"]) < 1e-5 and r["response_tokens"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ipo", "cdpo", "robust", "hinge", "orpo", "kto"])
def test_other_losses_train(small_model, tmp_path, loss):
    m = prefer(config(small_model, loss=loss, label_smoothing=0.1, beta=0.5,
                      packing=(loss == "ipo")), tmp_path / loss)
    assert math.isfinite(m["loss"]) and "rewards/chosen" in m


def test_implicit_conversational_file(small_model, tmp_path):
    """Full conversations with a shared prefix: the reader splits off the prompt."""
    data = tmp_path / "implicit.jsonl"
    conv = lambda q, a: [{"role": "user", "content": q}, {"role": "assistant", "content": a}]  # noqa: E731
    data.write_text("\n".join(json.dumps({"chosen": conv(f"What is {i} plus 1?", str(i + 1)),
                                          "rejected": conv(f"What is {i} plus 1?", "I can't help with that.")})
                              for i in range(24)))
    m = prefer(config(small_model, data=str(data), val_fraction=0.25,
                      train={"max_steps": 2, "micro_batch_size": 8}), tmp_path / "run")
    assert m["val/rewards/accuracies"] >= 0 and read_manifest(tmp_path / "run").inputs["train"]["n_rows"] == 24
