"""Smoke runs of `alignkit cai sl` and `alignkit cai label` on a tiny random model and a small
world: the files, rows, provenance and manifests they write; the soft labels feed `prefer`."""
import json

import pytest
import yaml
from typer.testing import CliRunner

from alignkit.cai.constitution import load_constitution
from alignkit.cli import app
from alignkit.contract.manifest import read_manifest

runner = CliRunner()
WORLD = {"corpus_passes": 1, "sft_per_family": 12, "heldout_per_family": 6, "n_people": 16}


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _run(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def test_cai_sl_writes_sft_rows_with_provenance(tmp_path, tiny_model_dir):
    cfg = {"model": tiny_model_dir, "rounds": 2, "max_red_team": 3, "max_helpful": 2,
           "world_red_team": {"n_per_slice": 2, "categories": ["arson"], "world": WORLD},
           "world_helpful": {"n_per_slice": 1, "world": WORLD},
           # sampled: greedy, the random model only says "\n", and empty replies are not rows
           "decode": {"max_new_tokens": 4, "temperature": 1.0}, "prompts": {"few_shot": 1}}
    (tmp_path / "sl.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "sl"
    _run(["cai", "sl", "--config", str(tmp_path / "sl.yaml"), "--out", str(out)])
    rows = _jsonl(out / "sl_data.jsonl")
    assert [r["source"] for r in rows] == ["sl-cai/revision"] * 3 + ["sl-cai/helpful"] * 2
    m = read_manifest(out)
    assert m.status == "completed" and m.stage == "cai-sl"
    const = load_constitution()
    assert m.inputs["constitution"]["digest"] == const.digest
    prov = rows[0]["provenance"]
    assert prov["model"] == m.base_model["digest"] and prov["constitution"] == const.digest
    assert prov["template"] == m.template["cai_prompts_digest"] and prov["template"].startswith("tpl-")
    assert prov["round"] == 2 and len(prov["principle_ids"]) == 2
    assert set(prov["principle_ids"]) <= set(const.principle_ids)
    assert {r["category"] for r in rows[:3]} == {"arson"} and rows[0]["label"] == "unsafe"
    assert rows[0]["messages"][-1]["role"] == "assistant"
    trajs = _jsonl(out / "trajectories.jsonl")
    assert len(trajs) == 3 and len(trajs[0]["rounds"]) == 2
    assert m.metrics["n_red_team"] == 3 and "world/revision_less_harmful" in m.metrics
    assert m.outputs["sl_data"]["digest"].startswith("ds-")
    assert m.policy["digest"].startswith("pol-")


def test_cai_label_then_prefer_reads_the_soft_labels(tmp_path, tiny_model_dir):
    out = tmp_path / "label"
    _run(["cai", "label", "--out", str(out), "--set", f"feedback_model={tiny_model_dir}",
          "--set", "max_pairs=4", "--set", "clamp=[0.3, 0.7]",
          "--set", f"world={json.dumps({'n_per_slice': 2, 'categories': ['arson'], 'world': WORLD})}"])
    rows = _jsonl(out / "preferences.jsonl")
    assert len(rows) == 4
    m = read_manifest(out)
    assert m.stage == "cai-label" and m.status == "completed"
    for r in rows:
        assert 0.5 <= r["chosen_prob"] <= 0.7  # oriented, and clamped to [0.3, 0.7]
        assert r["provenance"]["feedback_model"] == m.inputs["feedback_model"]["digest"]
        assert r["provenance"]["principle_ids"] == list(load_constitution().comparison_ids)
        assert r["provenance"]["template"] == m.template["cai_prompts_digest"]
        assert r["reference_choice"] in ("a", "b")
    assert m.metrics["agreement_n"] == 4 and m.inputs["constitution"]["digest"].startswith("const-")
    report = json.loads((out / "cai_eval.json").read_text())
    assert report["cai/agreement"]["n"] == 4
    # the labels train with cdpo: one step, per-pair ε = 1 - chosen_prob
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _run(["prefer", "--out", str(tmp_path / "dpo"), "--set", f"model={tiny_model_dir}",
          "--set", f"data={train}", "--set", f"validation={train}", "--set", "loss=cdpo",
          "--set", "kl_prompts=0", "--set", "train.max_steps=1", "--set", "train.micro_batch_size=2",
          "--set", "train.progress=false"])
    assert read_manifest(tmp_path / "dpo").status == "completed"
    res = runner.invoke(app, ["prefer", "--out", str(tmp_path / "dpo2"), "--set",
                              f"model={tiny_model_dir}", "--set", f"data={train}", "--set",
                              "loss=sigmoid", "--set", "train.max_steps=1"])
    assert res.exit_code != 0 and "chosen_prob" in str(res.exception)


def test_label_samples_pairs_from_a_policy_model(tmp_path, tiny_model_dir):
    from alignkit.cai.label import LabelConfig, label

    cfg = LabelConfig(feedback_model=tiny_model_dir, policy_model=tiny_model_dir,
                      world={"n_per_slice": 1, "categories": ["theft"], "world": WORLD},
                      comparisons=["less_harmful"], max_pairs=3,
                      decode={"temperature": 1.0, "max_new_tokens": 6})
    metrics = label(cfg, tmp_path / "l")
    rows = _jsonl(tmp_path / "l" / "preferences.jsonl")
    assert len(rows) + metrics["identical_dropped"] + metrics["empty_dropped"] == 3
    assert all(r["chosen"][0]["content"].strip() and r["rejected"][0]["content"].strip()
               for r in rows)
    m = read_manifest(tmp_path / "l")
    assert m.inputs["policy_model"]["digest"] == m.inputs["feedback_model"]["digest"]
    assert all(r["provenance"]["principle_ids"] == ["less_harmful"] for r in rows)
    with pytest.raises(Exception, match="already holds"):
        label(cfg, tmp_path / "l")


def test_label_config_errors(tmp_path, tiny_model_dir):
    from alignkit.cai.label import LabelConfig, label
    from alignkit.errors import ConfigError

    with pytest.raises(ConfigError, match="no comparison 'kindness'"):
        label(LabelConfig(feedback_model=tiny_model_dir, comparisons=["kindness"]), tmp_path / "a")
    with pytest.raises(ValueError, match="clamp"):
        LabelConfig(clamp=(0.7, 0.3))
