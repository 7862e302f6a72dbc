"""The rl stage: the loss by hand, config and data errors, end to end on the world for every
algorithm, behaviour on a toy reward (scores rise, adaptive β moves the right way), exact resume."""
import json
import math
import textwrap

import pytest
import torch

import alignkit.train.rl as rl_mod
from alignkit.contract.manifest import read_manifest
from alignkit.errors import ConfigError, DataError
from alignkit.train.config import load_config
from alignkit.train.rl import RLConfig, load_prompt_rows, rl, rl_loss
from alignkit.world.build import WorldConfig

WORLD = WorldConfig(corpus_passes=1, sft_per_family=4, heldout_per_family=2, n_people=16)
REAL_RL_LOSS = rl_mod.rl_loss
REQUIRED_KEYS = {"objective/kl", "objective/scores", "objective/rlhf_reward", "policy/clipfrac",
                 "policy/approxkl", "policy/entropy", "loss/policy", "loss/value",
                 "val/explained_variance", "completions/mean_length", "beta", "time/generate",
                 "time/score", "time/train"}


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def world_model(tmp_path_factory):
    """A 2-layer, 64-wide random Llama with the world tokenizer (fast on one thread)."""
    from alignkit.models.loading import load_model, save_model
    from alignkit.world.tiny import tiny_model

    tok = load_model("builtin:world-tiny").tokenizer
    path = tmp_path_factory.mktemp("model") / "small"
    save_model(tiny_model(tok, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, intermediate_size=128), tok, path)
    return str(path)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 24-token word-level chat model (random init), prompts asking for a digit, and a reward
    file: 1 if the completion contains the digit 7. With 24 tokens a random policy writes a 7 in
    about a fifth of its completions, so the reward is learnable in a few iterations."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from alignkit.data.templates import ChatTemplate
    from alignkit.models.loading import save_model

    root = tmp_path_factory.mktemp("toy")
    words = ["[UNK]", "user", "assistant", "\n", " ", "say", "a", "digit", "number",
             "please"] + [str(d) for d in range(10)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("\\w+|\\s"), behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tok.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|pad|>",
                            "bos_token": "<|endoftext|>",
                            "additional_special_tokens": ["<|im_start|>"]})
    tok.chat_template = ChatTemplate.builtin("chatml").source
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True))
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    save_model(model, tok, root / "model")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in
                               ["say a digit", "say a number", "please say a digit",
                                "a number please"]))
    (root / "toy_rewards.py").write_text(textwrap.dedent("""
        def contains_seven(prompts, completions, **_):
            return [1.0 if "7" in c else 0.0 for c in completions]
    """))
    return {"model": str(root / "model"), "prompts": str(prompts),
            "reward": str(root / "toy_rewards.py") + ":contains_seven"}


def toy_config(toy, algo: str, **kw) -> RLConfig:
    group = {} if algo == "ppo" else {"group_size": 4}
    base = dict(model=toy["model"], algo=algo, prompts=toy["prompts"], heldout_eval=False,
                rewards=[{"kind": "function", "path": toy["reward"]}],
                prompts_per_iteration=16 if algo == "ppo" else 4, iterations=12,
                rollout={"temperature": 1.0, "max_new_tokens": 6},
                ppo={"minibatch": 8, "ppo_epochs": 2},
                train={"micro_batch_size": 8, "progress": False,
                       "optim": {"lr": 3e-3, "schedule": "constant"}}, **group)
    for k, v in kw.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return RLConfig(**base)


def history(run) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def per_iteration(run, key: str) -> list[float]:
    """The value of `key` at each iteration (the iteration's values repeat on its steps)."""
    out: dict[int, float] = {}
    for rec in history(run):
        out[math.ceil(rec["epoch"] - 1e-9) - 1] = rec[key]
    return [out[i] for i in sorted(out)]


# ----------------------------------------------------------------------------- the loss by hand

class FixedModules(torch.nn.Module):
    """Returns fixed per-token log-probs (with grad), entropy and values."""

    def __init__(self, logps, values=None):
        super().__init__()
        self.logps = torch.nn.Parameter(logps)
        self.values = None if values is None else torch.nn.Parameter(values)

    def forward(self, batch):
        return self.logps, torch.full_like(self.logps, 2.0), self.values


def hand_batch(**kw):
    b = {"prompt_ids": torch.tensor([[5, 6]]), "prompt_mask": torch.tensor([[1, 1]]),
         "response_ids": torch.tensor([[7, 8, 0]]), "response_mask": torch.tensor([[1, 1, 0]]),
         "old_logps": torch.log(torch.tensor([[0.5, 0.5, 1.0]])),
         "ref_logps": torch.log(torch.tensor([[0.25, 0.5, 1.0]])),
         "advantages": torch.tensor([[1.0, -1.0, 0.0]]),
         "old_values": torch.tensor([[0.0, 0.0, 0.0]]), "returns": torch.tensor([[1.0, 0.1, 0.0]]),
         "beta": 0.5, "iteration": 0, "stats": {"objective/scores": 3.0}}
    b.update(kw)
    return b


def test_rl_loss_by_hand_grpo_kl_in_loss():
    """Current log-probs = old ones, so ρ = 1 and the clipped loss is -A = [-1, +1] (sum 0).
    k3 to the reference per token: x = ref - logp = [ln 0.5, 0] -> expm1(x) - x =
    [-0.5 + 0.693147, 0] = [0.193147, 0]; β = 0.5 -> loss sum 0 + 0.5·0.193147 = 0.0965736 over
    n = 2 tokens. Logged: loss/policy 0, loss/kl 0.0965736, entropy 2, clipfrac 0."""
    cfg = RLConfig(algo="grpo")
    step = rl_loss(FixedModules(torch.log(torch.tensor([[0.5, 0.5, 1.0]]))), hand_batch(), cfg)
    assert float(step.loss_sum.detach()) == pytest.approx(0.5 * (math.log(2) - 0.5), abs=1e-6)
    assert float(step.n_units) == 2 and step.n_tokens == 4
    assert float(step.metrics["loss/kl"]) == pytest.approx((math.log(2) - 0.5) / 2, abs=1e-6)
    assert float(step.metrics["policy/entropy"]) == 2.0
    assert float(step.metrics["policy/clipfrac"]) == 0.0
    assert step.metrics["objective/scores"] == 3.0  # the iteration's stats ride along


def test_rl_loss_by_hand_ppo_with_value_and_clipping():
    """ρ = [0.9/0.5, 0.5/0.5] = [1.8, 1]: token 0 (A = 1) is clipped at 1.2 -> -1.2; token 1 -> +1.
    Value: v = [0.5, 0.5], old 0, R = [1, 0.1]; clip 0.2: v_clip = [0.2, 0.2];
    token 0: max((0.5-1)², (0.2-1)²)/2 = 0.64/2 = 0.32; token 1: max(0.16, 0.01)/2 = 0.08.
    KL in the reward (ppo default): no KL term. loss = (-1.2 + 1) + 0.1·(0.32 + 0.08) = -0.16."""
    cfg = RLConfig(algo="ppo")
    logps = torch.log(torch.tensor([[0.9, 0.5, 1.0]]))
    step = rl_loss(FixedModules(logps, torch.tensor([[0.5, 0.5, 0.0]])), hand_batch(), cfg)
    assert float(step.loss_sum.detach()) == pytest.approx(-0.16, abs=1e-6)
    assert float(step.metrics["loss/value"]) == pytest.approx(0.2, abs=1e-6)
    assert float(step.metrics["loss/policy"]) == pytest.approx(-0.1, abs=1e-6)
    assert float(step.metrics["policy/clipfrac"]) == 0.5
    assert step.metrics["loss/kl"] == 0.0


# ----------------------------------------------------------------------------- config and data

@pytest.mark.parametrize("kw, match", [
    ({"algo": "grpo", "group_size": 1}, "group_size >= 2"),
    ({"rollout": {"temperature": 0.0}}, "temperature must be > 0"),
    ({"algo": "grpo", "kl": {"estimator": "k1"}}, "zero expected gradient"),
    ({"kl": {"controller": "adaptive", "beta": 0.0}}, "needs kl.beta > 0"),
    ({"prompts_per_iteration": 12}, "do not split into minibatches"),
    ({"train": {"max_steps": 5}}, "set `iterations`"),
    ({"train": {"grad_accum": 2}}, "grad_accum is derived"),
    ({"train": {"save_every": 1}}, "multiple of the 2 optimizer steps"),
])
def test_inconsistent_configs_fail_before_any_compute(kw, match):
    with pytest.raises(ConfigError, match=match):
        load_config(RLConfig, kw)


def test_unknown_key_names_it():
    with pytest.raises(ConfigError, match="unknown key 'kl.coef'"):
        load_config(RLConfig, {}, ["kl.coef=0.1"])


def test_defaults_resolve_per_algorithm():
    assert (RLConfig().group_size_resolved, RLConfig().kl_mode, RLConfig().kl_estimator) == \
        (1, "reward", "k1")
    rloo = RLConfig(algo="rloo")
    assert (rloo.group_size_resolved, rloo.kl_mode, rloo.kl_estimator) == (4, "reward", "k1")
    # overrides after loading re-resolve (nothing resolved is frozen into the config)
    cfg = load_config(RLConfig, {}, ["algo=grpo"])
    assert cfg.group_size_resolved == 4 and cfg.kl_mode == "loss"


def test_world_prompts_are_the_sft_split_only():
    from alignkit.world.build import build_world

    rows, entry = load_prompt_rows(RLConfig(world=WORLD))
    world = build_world(WORLD)
    held = {json.dumps(r["messages"][:-1]) for r in world.heldout}
    assert len(rows) == len(world.sft) and entry["split"] == "sft-train"
    assert not any(json.dumps(r.messages) in held for r in rows)
    assert all(r.messages[-1]["role"] == "user" and r.answer for r in rows)


def test_prompt_file_errors_name_file_line_and_field(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hi", "answer": "x"}\n{"question": "no prompt"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'prompt'"):
        load_prompt_rows(RLConfig(prompts=str(f)))
    f.write_text('{"prompt": "hi"}\n{"prompt": "ok", "answer": 3}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'answer'"):
        load_prompt_rows(RLConfig(prompts=str(f)))
    f.write_text('{"prompt": [{"role": "user", "content": "hi"}], "answer": "a"}\n')
    rows, entry = load_prompt_rows(RLConfig(prompts=str(f)))
    assert rows[0].messages == [{"role": "user", "content": "hi"}] and entry["n_rows"] == 1


# ----------------------------------------------------------------------------- end to end

@pytest.mark.parametrize("algo", ["grpo", "rloo", "ppo"])
def test_world_end_to_end(world_model, tmp_path, algo):
    """Each algorithm runs on the world with the exact-match reward and writes every logged key,
    a completed manifest with held-out exact match, eval.json and a loadable final model."""
    from alignkit.models.loading import load_model

    per_iter = 8 if algo == "ppo" else 4
    cfg = RLConfig(model=world_model, algo=algo, world=WORLD, prompts_per_iteration=per_iter,
                   iterations=2, rollout={"temperature": 1.0, "max_new_tokens": 6},
                   ppo={"minibatch": 8, "ppo_epochs": 1}, eval_decode={"max_new_tokens": 4},
                   train={"micro_batch_size": 4, "progress": False})
    run = tmp_path / algo
    metrics = rl(cfg, run)
    lines = history(run)
    assert len(lines) == 2 * cfg.steps_per_iteration
    for rec in lines:
        assert REQUIRED_KEYS <= rec.keys(), REQUIRED_KEYS - rec.keys()
        assert "rewards/world_exact_match" in rec
    man = read_manifest(run)
    assert man.stage == "rl" and man.status == "completed"
    assert 0.0 <= man.metrics["heldout/exact_match"] <= 1.0
    assert metrics["heldout/exact_match"] == man.metrics["heldout/exact_match"]
    assert man.config["resolved"]["kl_mode"] == cfg.kl_mode
    assert man.inputs["prompts"]["source"] == "builtin:world"
    assert man.inputs["reference"]["strategy"] == "frozen_copy"
    assert (run / "eval.json").is_file() and (run / "samples.jsonl").is_file()
    assert load_model(str(run / "final")).model.config.vocab_size > 0
    # the β of the first iteration is the configured one (the engine averages metrics through
    # float32 tensors, hence approx), completions are 1..6 tokens
    assert lines[0]["beta"] == pytest.approx(0.05) and 1 <= lines[0]["completions/mean_length"] <= 6
    assert (lines[-1]["loss/value"] != 0.0) == (algo == "ppo")


# ----------------------------------------------------------------------------- behaviour

@pytest.mark.parametrize("algo", ["grpo", "rloo", "ppo"])
def test_toy_reward_rises(toy, tmp_path, algo):
    """Reward 1 for a completion containing "7": the mean score of the last three iterations is
    clearly above that of the first two (measured: about 0.3 -> 0.9 for each algorithm)."""
    run = tmp_path / algo
    rl(toy_config(toy, algo), run)
    scores = per_iteration(run, "objective/scores")
    early, late = sum(scores[:2]) / 2, sum(scores[-3:]) / 3
    assert late >= early + 0.3, scores
    assert per_iteration(run, "rewards/function:contains_seven") == scores  # weight 1, no penalty
    assert per_iteration(run, "objective/kl")[0] == pytest.approx(0.0, abs=1e-5)  # π = π_ref


@pytest.mark.parametrize("target, direction", [(0.01, "up"), (100.0, "down")])
def test_adaptive_beta_moves_towards_the_target(toy, tmp_path, target, direction):
    """Ziegler controller, horizon 64, 16 completions per iteration: each update multiplies β by
    1 + clip(KL/target - 1, ±0.2)·16/64. Iteration 0 has KL = 0 (policy = reference), so β
    drops by 5% first; then with a tiny target the measured KL exceeds it and β rises, with a
    huge target β keeps falling, by exactly 5% per iteration."""
    cfg = toy_config(toy, "ppo", iterations=8,
                     kl={"controller": "adaptive", "beta": 0.05, "target": target, "horizon": 64})
    rl(cfg, tmp_path / "run")
    betas = per_iteration(tmp_path / "run", "beta")
    kls = per_iteration(tmp_path / "run", "objective/kl")
    assert betas[1] == pytest.approx(0.05 * 0.95)
    if direction == "up":
        assert all(k > 0.01 for k in kls[1:])  # above target from iteration 1 on
        assert all(b2 > b1 for b1, b2 in zip(betas[1:], betas[2:])) and betas[-1] > 0.05
    else:
        assert betas == pytest.approx([0.05 * 0.95 ** i for i in range(8)])


# ----------------------------------------------------------------------------- resume

class Interrupted(Exception):
    pass


def interrupt_at(monkeypatch, call: int):
    real, calls = rl_mod.rl_loss, {"n": 0}

    def dying(*a, **kw):
        calls["n"] += 1
        if calls["n"] == call:
            raise Interrupted
        return real(*a, **kw)

    monkeypatch.setattr(rl_mod, "rl_loss", dying)


def final_state(run) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "model.safetensors"))


def resume_config(toy):
    # 16 completions, minibatch = micro-batch = 8, 2 PPO epochs: 4 steps (4 loss calls) per
    # iteration; checkpoints after iterations 0, 1, 2, 3 (steps 4, 8, 12, 16).
    return toy_config(toy, "ppo", iterations=4, train={"save_every": 4, "keep_checkpoints": 5},
                      kl={"controller": "adaptive", "target": 0.1, "horizon": 64})


def test_resume_after_interruption_gives_identical_weights(toy, tmp_path, monkeypatch):
    """Killed in iteration 2 (loss call 11: its third step; last checkpoint at step 8), then
    resumed: the same final weights, bit for bit, and the same logged scores, β and losses."""
    cfg = resume_config(toy)
    rl(cfg, tmp_path / "ref")
    interrupt_at(monkeypatch, 11)
    with pytest.raises(Interrupted):
        rl(cfg, tmp_path / "run")
    assert read_manifest(tmp_path / "run").status == "failed"
    monkeypatch.undo()
    rl(cfg, tmp_path / "run", resume=True)
    a, b = final_state(tmp_path / "ref"), final_state(tmp_path / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("objective/scores", "beta", "loss"):
        assert [r[key] for r in history(tmp_path / "run")] == \
            [r[key] for r in history(tmp_path / "ref")]
    assert read_manifest(tmp_path / "run").status == "completed"


def test_resume_would_differ_without_beta_in_the_checkpoint(toy, tmp_path, monkeypatch):
    """Control: with β kept out of the state dict, the resumed run restarts β at its initial
    value and ends elsewhere -- so the test above can fail."""
    real_init = rl_mod.PolicyAndValue.__init__

    def init_without_beta(self, *a, **kw):
        real_init(self, *a, **kw)
        beta = self.kl_beta
        del self._buffers["kl_beta"]
        self.register_buffer("kl_beta", beta, persistent=False)

    monkeypatch.setattr(rl_mod.PolicyAndValue, "__init__", init_without_beta)
    cfg = resume_config(toy)
    rl(cfg, tmp_path / "ref")
    interrupt_at(monkeypatch, 11)
    with pytest.raises(Interrupted):
        rl(cfg, tmp_path / "run")
    monkeypatch.setattr(rl_mod, "rl_loss", REAL_RL_LOSS)
    rl(cfg, tmp_path / "run", resume=True)
    betas_ref = [r["beta"] for r in history(tmp_path / "ref")]
    betas_run = [r["beta"] for r in history(tmp_path / "run")]
    assert betas_run != betas_ref
    a, b = final_state(tmp_path / "ref"), final_state(tmp_path / "run")
    assert any(not torch.equal(a[k], b[k]) for k in a)



# ----------------------------------------------------------------------------- pieces

def test_response_values_read_the_state_before_each_token():
    """V for response token t is the critic's output at column P-1+t of cat(prompt, response):
    with a critic that outputs its column index, P = 2 and R = 3 give [1, 2, 3], masked -> 0."""
    from alignkit.train.rl import response_values

    def column_critic(ids, mask):
        return torch.arange(ids.shape[1], dtype=torch.float32).expand(ids.shape[0], -1)

    v = response_values(column_critic, torch.tensor([[0, 5]]), torch.tensor([[0, 1]]),
                        torch.tensor([[6, 7, 0]]), torch.tensor([[1, 1, 0]]))
    assert v.tolist() == [[1.0, 2.0, 0.0]]


def test_lora_policy_uses_adapters_disabled_reference(toy, tmp_path):
    """Under LoRA the reference is the policy with adapters off (no copy); the KL starts at 0,
    the reward still rises, and the saved final model is a plain (merged) HF model."""
    from alignkit.models.loading import load_model

    cfg = toy_config(toy, "grpo", iterations=6, lora={"r": 4, "target_modules": "all-linear"},
                     train={"optim": {"lr": 2e-2}})
    rl(cfg, tmp_path / "run")
    man = read_manifest(tmp_path / "run")
    assert man.inputs["reference"]["strategy"] == "adapters_disabled"
    kls = per_iteration(tmp_path / "run", "objective/kl")
    assert kls[0] == pytest.approx(0.0, abs=1e-5) and kls[-1] > 0.01
    final = load_model(str(tmp_path / "run" / "final")).model
    assert not any("lora" in name for name, _ in final.named_parameters())


def test_cli_runs_the_stage(toy, tmp_path):
    from typer.testing import CliRunner

    from alignkit.cli import app

    cfg = tmp_path / "rl.yaml"
    cfg.write_text(textwrap.dedent(f"""
        model: {toy['model']}
        prompts: {toy['prompts']}
        algo: rloo
        group_size: 2
        heldout_eval: false
        rewards:
          - {{kind: function, path: "{toy['reward']}"}}
        prompts_per_iteration: 4
        rollout: {{temperature: 1.0, max_new_tokens: 4}}
        ppo: {{minibatch: 8, ppo_epochs: 1}}
        train: {{micro_batch_size: 8, progress: false}}
    """))
    res = CliRunner().invoke(app, ["rl", "--config", str(cfg), "--set", "iterations=2",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "run").status == "completed"
    assert len(history(tmp_path / "run")) == 2
