"""The `rl` stage: online RL against a reward -- PPO, GRPO or RLOO -- with a KL budget.

Objective (maximised; `docs/rl.md` has the formulas with their papers): the expected score of
the policy's own completions, kept near a reference policy π_ref by a KL term,

    J(θ) = E_{x ~ prompts, y ~ π_θ,T(.|x)} [ score(x, y) ] - β KL(π_θ,T || π_ref,T)

optimised with the clipped surrogate of PPO (Schulman et al. 2017, Eq. 7) on advantages from
GAE and a learned critic (``ppo``), the group-normalised score (``grpo``, Shao et al. 2024) or
the leave-one-out baseline (``rloo``, Ahmadian et al. 2024); `alignkit.train.rl_experience`.
The KL term goes into the reward (``kl.mode: reward``, Ziegler et al. 2019; default for ppo and
rloo) or into the loss (``kl.mode: loss``, GRPO's k3 term; default for grpo); β is fixed or
follows the adaptive controller of Ziegler et al. 2019 (`alignkit.train.kl_control`).
π_θ,T is the policy's softmax at the rollout temperature T, used for sampling, for the
recorded log-probs, for the training forward and for the reference alike.

One **iteration** is one "epoch" of the engine (`alignkit.train.engine`; the engine asks for
an epoch's batches lazily, so the rollouts of iteration i are sampled with the weights at the
end of iteration i-1):

1. prompts: ``prompts_per_iteration`` prompts (seeded passes over the pool), each repeated
   ``group_size`` times -> N completions sampled with the KV-cache sampler
   (`alignkit.rollout.sampler`, seeded per iteration), recording log π_old,T per token;
2. score: reward sources (`alignkit.train.rl_rewards`) on the decoded text, minus
   ``missing_eos_penalty`` for completions cut by ``max_new_tokens``; reference log-probs
   (and, for PPO, the critic's values) with one forward each;
3. targets: per-token KL, advantages and returns; the adaptive controller updates β from the
   measured KL per sequence (the new β serves the next iteration);
4. train: ``ppo.ppo_epochs`` passes over the N completions in minibatches of ``ppo.minibatch``
   (one optimizer step each) with the token-averaged loss
   ``ppo_clip + vf_coef · value_loss (ppo) + β · k (kl.mode: loss)``.

Every token of a minibatch weighs the same (the engine divides the summed loss by the number of
response tokens of the step, as TRL's PPO trainer and DAPO do); GRPO's paper averages per
sequence first -- a deliberate deviation, so long completions are not down-weighted per token.

Reference (``reference``): None = the starting policy, frozen (a copy for full fine-tuning,
the model with its adapters disabled under LoRA), or a model path. The critic (PPO) is a
separate `alignkit.models.value.ValueModel` initialised from the starting policy. Dropout is
switched off in the policy and the critic (as TRL does for RL), so the log-probs recorded at
sampling time are those of the training forward.

Logged on every optimizer step (the iteration's values repeat on its steps): objective/kl,
objective/scores, objective/rlhf_reward, objective/missing_eos, rewards/<source>,
policy/clipfrac, policy/approxkl, policy/entropy, loss/policy, loss/value, loss/kl,
val/explained_variance, completions/mean_length, beta, time/generate, time/score, time/train
(seconds since this iteration's training phase began, read at the step's forward: on an
iteration's last step, its whole training phase but that step's backward and update). At the
end, for the built-in world: held-out exact match (greedy) in the manifest as
``heldout/exact_match`` and OUT/eval.json, OUT/samples.jsonl. The final policy is saved in
OUT/final (HF format, LoRA merged).

Exact resume: checkpoints are taken only between iterations (``train.save_every`` must be a
multiple of the optimizer steps per iteration) and carry the weights of policy and critic and
β (a buffer of the trained module), so a resumed run samples the same rollouts and ends with
the same weights as an uninterrupted one (tests/train/test_rl_stage.py).

    >>> cfg = RLConfig(algo="grpo")
    >>> cfg.group_size_resolved, cfg.kl_mode, cfg.kl_estimator
    (4, 'loss', 'k3')

Python: `alignkit.train.rl.rl(config, out_dir)`; command line:
`alignkit rl --config CFG --set k=v --out DIR [--resume]`.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from alignkit.contract.digest import digest_obj
from alignkit.contract.specs import DecodeSpec
from alignkit.errors import ConfigError, DataError
from alignkit.models.lora import LoraSpec
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.train.rl_rewards import RewardSource
from alignkit.world.build import WorldConfig

WORLD_PROMPTS = "builtin:world"
Algo = Literal["ppo", "grpo", "rloo"]


class KLConfig(BaseModel):
    """The KL term to the reference policy."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["reward", "loss"] | None = None  # None: "loss" for grpo, "reward" for ppo/rloo
    estimator: Literal["k1", "k2", "k3"] | None = None  # None: k3 in the loss, k1 in the reward
    controller: Literal["adaptive", "fixed"] = "fixed"  # adaptive = Ziegler et al. 2019 controller
    beta: float = Field(0.05, ge=0)  # the fixed β, or the adaptive controller's starting β
    target: float = Field(1.0, gt=0)  # adaptive: KL per completion to hold (nats, summed over tokens)
    horizon: float = Field(2000, gt=0)  # adaptive: completions over which β adapts


class PPOConfig(BaseModel):
    """Clipped-surrogate settings; clip, ppo_epochs and minibatch apply to every algorithm."""

    model_config = ConfigDict(extra="forbid")

    clip: float = Field(0.2, gt=0, lt=1)  # ε of the clipped ratio
    vf_coef: float = Field(0.1, ge=0)  # ppo: weight of the value loss
    vf_clip: float = Field(0.2, gt=0)  # ppo: clip of the value step (reward units)
    gamma: float = Field(1.0, ge=0, le=1)  # ppo: discount over response tokens
    lam: float = Field(0.95, ge=0, le=1)  # ppo: GAE λ
    ppo_epochs: int = Field(2, ge=1)  # passes over each iteration's completions
    minibatch: int = Field(16, ge=1)  # completions per optimizer step
    whiten_advantages: bool = True  # ppo: normalise advantages over the iteration's tokens


class RLConfig(BaseModel):
    """Settings of `alignkit rl`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str = "builtin:world-tiny"  # the starting (SFT) policy: HF dir, .gguf, builtin:NAME
    reference: str | None = None  # None = the starting policy, frozen; or a model path
    template: str | None = None  # None = the tokenizer's own chat template
    lora: LoraSpec | None = None  # LoRA adapters instead of full fine-tuning (reference: adapters off)
    algo: Algo = "ppo"  # ppo | grpo | rloo
    rewards: list[RewardSource] = [RewardSource(kind="world_exact_match")]  # summed, weighted
    missing_eos_penalty: float = 0.0  # subtracted from the score of a completion cut by max_new_tokens
    kl: KLConfig = KLConfig()  # the KL term to the reference
    group_size: int | None = Field(None, ge=1)  # completions per prompt; None: 1 for ppo, 4 for grpo/rloo
    prompts: str = WORLD_PROMPTS  # builtin:world (its SFT-train prompts) or a .jsonl/.json file
    prompts_per_iteration: int = Field(16, ge=1)  # distinct prompts sampled per iteration
    iterations: int = Field(50, ge=1)  # RL iterations (sample -> score -> train)
    rollout: DecodeSpec = DecodeSpec(temperature=1.0, max_new_tokens=16)  # sampling (seed varies per iteration)
    ppo: PPOConfig = PPOConfig()  # clipped-surrogate, critic and minibatch settings
    world: WorldConfig = WorldConfig()  # the world builtin:world prompts and the held-out eval come from
    heldout_eval: bool = True  # builtin:world only: held-out exact match at the end (and at eval_every)
    eval_decode: DecodeSpec = DecodeSpec(max_new_tokens=16)  # decoding of the held-out evaluation (greedy)
    train: TrainConfig = TrainConfig(
        optim=OptimConfig(lr=1e-5, schedule="constant"), micro_batch_size=16,
        max_grad_norm=1.0)  # loop settings; epochs / max_steps / grad_accum are derived
    seed: int = 0  # prompt order, sampling and minibatch order

    @property
    def group_size_resolved(self) -> int:
        if self.group_size is not None:
            return self.group_size
        return 1 if self.algo == "ppo" else 4

    @property
    def kl_mode(self) -> str:
        return self.kl.mode or ("loss" if self.algo == "grpo" else "reward")

    @property
    def kl_estimator(self) -> str:
        return self.kl.estimator or ("k3" if self.kl_mode == "loss" else "k1")

    @property
    def completions_per_iteration(self) -> int:
        return self.prompts_per_iteration * self.group_size_resolved

    @property
    def steps_per_iteration(self) -> int:
        return self.ppo.ppo_epochs * self.completions_per_iteration // self.ppo.minibatch

    @model_validator(mode="after")
    def _consistent(self) -> "RLConfig":
        if self.rollout.temperature <= 0:
            raise ValueError("rollout.temperature must be > 0: RL samples from the policy "
                             "(greedy rollouts have no log-probs to form a ratio with)")
        if self.algo in ("grpo", "rloo") and self.group_size_resolved < 2:
            raise ValueError(f"{self.algo} needs group_size >= 2 (its baseline comes from the "
                             "other completions of the same prompt)")
        if self.kl_mode == "loss" and self.kl_estimator == "k1":
            raise ValueError("kl.estimator k1 in the loss has zero expected gradient (no KL "
                             "pull at all); use k3 (GRPO) or k2")
        if self.kl.controller == "adaptive" and self.kl.beta <= 0:
            raise ValueError("the adaptive KL controller needs kl.beta > 0 to scale")
        n, mb, micro = self.completions_per_iteration, self.ppo.minibatch, self.train.micro_batch_size
        if n % mb:
            raise ValueError(f"prompts_per_iteration x group_size = {n} completions do not split "
                             f"into minibatches of ppo.minibatch = {mb}")
        if mb % micro:
            raise ValueError(f"ppo.minibatch = {mb} is not a multiple of train.micro_batch_size "
                             f"= {micro}")
        if self.train.max_steps is not None or self.train.epochs != 1:
            raise ValueError("set `iterations`, not train.epochs / train.max_steps (an engine "
                             "epoch is one RL iteration)")
        if self.train.grad_accum != 1:
            raise ValueError("train.grad_accum is derived (ppo.minibatch / micro_batch_size / "
                             "processes); leave it at 1")
        if self.train.save_every % self.steps_per_iteration:
            raise ValueError(f"train.save_every = {self.train.save_every} must be a multiple of "
                             f"the {self.steps_per_iteration} optimizer steps per iteration "
                             "(checkpoints between iterations keep resume exact)")
        return self


# ------------------------------------------------------------------------------- prompts

@dataclass(frozen=True)
class PromptRow:
    messages: list  # the conversation to continue (ends with a user message)
    answer: str | None = None  # the checkable answer, when the data has one


def load_prompt_rows(cfg: RLConfig) -> tuple[list[PromptRow], dict[str, Any]]:
    """(prompt rows, manifest entry). The world's SFT-train prompts, or a prompt file.

    A file is JSONL (one object per line) or a JSON list; each row has ``prompt`` (a string,
    sent as one user message, or a list of messages) and optionally ``answer``.
    """
    if cfg.prompts == WORLD_PROMPTS:
        from alignkit.world.build import build_world

        world = build_world(cfg.world)
        rows = [PromptRow(list(r["messages"][:-1]), r.get("answer")) for r in world.sft]
        entry = {"source": WORLD_PROMPTS, "split": "sft-train", "world": world.config.model_dump()}
    else:
        rows = _read_prompt_file(Path(cfg.prompts))
        entry = {"source": cfg.prompts}
    if not rows:
        raise DataError("no prompts", file=cfg.prompts)
    entry.update(n_rows=len(rows), digest=digest_obj([[r.messages, r.answer] for r in rows],
                                                     "dataset"))
    return rows, entry


def _read_prompt_file(path: Path) -> list[PromptRow]:
    if not path.is_file():
        raise ConfigError(f"prompts file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            items = list(enumerate(json.loads(text), start=1))
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON ({err.msg})", file=str(path), line=err.lineno) from None
    else:
        items = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append((i, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise DataError(f"not valid JSON ({err.msg})", file=str(path), line=i) from None
    rows = []
    for i, obj in items:
        if not isinstance(obj, dict) or "prompt" not in obj:
            raise DataError("each row needs a 'prompt'", file=str(path), line=i, field="prompt")
        p = obj["prompt"]
        if isinstance(p, str):
            messages = [{"role": "user", "content": p}]
        elif isinstance(p, list) and p and all(isinstance(m, dict) and "role" in m and "content" in m
                                               for m in p):
            messages = p
        else:
            raise DataError("must be a string or a non-empty list of {role, content} messages",
                            file=str(path), line=i, field="prompt")
        answer = obj.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise DataError(f"must be a string, got {type(answer).__name__}", file=str(path),
                            line=i, field="answer")
        rows.append(PromptRow(messages, answer))
    return rows


# ------------------------------------------------------------------------------- models

def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (nn.Dropout and attention-dropout attributes)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "attention_dropout", None), float):
            m.attention_dropout = 0.0


class PolicyAndValue(nn.Module):
    """What the engine trains: the policy, PPO's critic (or None) and β as a buffer.

    β lives in a buffer so that every checkpoint carries it (the engine saves the module's
    state dict) and a resumed run continues with the β an uninterrupted run would use.
    ``forward(batch)`` -> (logps, entropy, values) (B, R) for a micro-batch of rollouts.
    """

    def __init__(self, policy: nn.Module, value: nn.Module | None, beta: float,
                 temperature: float):
        super().__init__()
        self.policy = policy
        self.value = value
        self.temperature = temperature
        self.register_buffer("kl_beta", torch.tensor(float(beta), dtype=torch.float64))

    def forward(self, batch: dict[str, Any]):
        from alignkit.rollout.logprobs import rollout_token_logprobs

        args = (batch["prompt_ids"], batch["prompt_mask"], batch["response_ids"],
                batch["response_mask"])
        logps, entropy = rollout_token_logprobs(self.policy, *args, self.temperature,
                                                with_entropy=True)
        values = None if self.value is None else response_values(self.value, *args)
        return logps, entropy, values


def response_values(value_model: nn.Module, prompt_ids, prompt_mask, response_ids,
                    response_mask) -> torch.Tensor:
    """(B, R) V(s_t) for each response token t (the state before emitting it), 0 where masked."""
    P, R = prompt_ids.shape[1], response_ids.shape[1]
    v = value_model(torch.cat([prompt_ids, response_ids], 1),
                    torch.cat([prompt_mask, response_mask], 1))  # (B, P+R)
    v = v[:, P - 1:P + R - 1]
    return torch.where(response_mask.bool(), v, torch.zeros((), device=v.device))


class RolloutReference:
    """Reference log-probs of rollouts: a frozen model, or the policy with adapters disabled."""

    def __init__(self, strategy: str, model: nn.Module, temperature: float, batch_size: int):
        self.strategy, self.model = strategy, model
        self.temperature, self.batch_size = temperature, batch_size

    @torch.no_grad()
    def logps(self, rollout) -> torch.Tensor:
        from alignkit.rollout.logprobs import rollout_token_logprobs

        was_training = self.model.training
        self.model.eval()
        try:
            ctx = (_adapters_off(self.model) if self.strategy == "adapters_disabled"
                   else contextlib.nullcontext())
            with ctx:
                return _chunked(rollout, self.batch_size, lambda *a: rollout_token_logprobs(
                    self.model, *a, self.temperature)[0])
        finally:
            self.model.train(was_training)


def _adapters_off(model):
    from alignkit.models.lora import disabled_adapters

    return disabled_adapters(model)


def _chunked(rollout, batch_size: int, fn) -> torch.Tensor:
    """fn(prompt_ids, prompt_mask, response_ids, response_mask) over row chunks, concatenated."""
    parts = []
    for s in range(0, len(rollout), batch_size):
        sl = slice(s, s + batch_size)
        parts.append(fn(rollout.prompt_ids[sl], rollout.prompt_mask[sl],
                        rollout.response_ids[sl], rollout.response_mask[sl]))
    return torch.cat(parts)


def build_reference(cfg: RLConfig, policy: nn.Module, tokenizer, device) -> tuple[RolloutReference, dict]:
    """The reference: a model path, the LoRA policy with adapters off, or a frozen copy of the
    (not yet trained) policy -- call it after LoRA is applied and before training."""
    T, bs = cfg.rollout.temperature, cfg.rollout.batch_size
    if cfg.reference is not None:
        from alignkit.models.loading import load_model

        ref = load_model(cfg.reference)
        if len(ref.tokenizer) != len(tokenizer) or ref.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ConfigError(f"reference {cfg.reference} has a different vocabulary from the "
                              f"policy {cfg.model}; log-ratios need the same tokens")
        model = ref.model
        entry = {"strategy": "model", "spec": cfg.reference, "digest": ref.digest}
        strategy = "frozen_copy"
    elif cfg.lora is not None:
        return RolloutReference("adapters_disabled", policy, T, bs), {"strategy": "adapters_disabled"}
    else:
        model, strategy = copy.deepcopy(policy), "frozen_copy"
        entry = {"strategy": "frozen_copy"}
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return RolloutReference(strategy, model, T, bs), entry


# ------------------------------------------------------------------------------- iterations

class _LazyBatches(SequenceABC):
    """An iteration's micro-batches, sampled on first access (the engine reads len() early)."""

    def __init__(self, n: int, build):
        self._n, self._build, self._items = n, build, None

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if self._items is None:
            self._items = self._build()
            if len(self._items) != self._n:
                raise RuntimeError(f"iteration built {len(self._items)} micro-batches, "
                                   f"expected {self._n}")
        return self._items[i]


def _seed_for(*parts: Any) -> int:
    """A 63-bit seed from the parts (stable across processes and Python versions)."""
    return int(hashlib.sha256("-".join(map(str, parts)).encode()).hexdigest()[:15], 16)


class Iterations:
    """Builds iteration i's micro-batches: sample, score, targets (module docstring, 1-3)."""

    def __init__(self, cfg: RLConfig, modules: PolicyAndValue, reference: RolloutReference,
                 scorer, rows: list[PromptRow], tokenizer, template, device):
        self.cfg, self.modules, self.reference, self.scorer = cfg, modules, reference, scorer
        self.rows, self.tokenizer, self.template, self.device = rows, tokenizer, template, device
        self._encoded: dict[int, list[int]] = {}
        self.train_started: dict[int, float] = {}  # iteration -> perf_counter at end of scoring
        self.micro_batches = (cfg.ppo.ppo_epochs * cfg.completions_per_iteration
                              // cfg.train.micro_batch_size)

    def prompt_ids(self, i: int) -> list[int]:
        if i not in self._encoded:
            from alignkit.data.encode import encode_prompt

            self._encoded[i] = list(encode_prompt(self.tokenizer, self.template,
                                                  self.rows[i].messages, line=i + 1))
        return self._encoded[i]

    def lazy(self, iteration: int) -> _LazyBatches:
        return _LazyBatches(self.micro_batches, lambda: self.build(iteration))

    def build(self, iteration: int) -> list[dict[str, Any]]:
        from alignkit.rollout.sampler import completion_texts, sample
        from alignkit.train.kl_control import AdaptiveKLController
        from alignkit.train.rl_experience import (ADVANTAGES, AdvantageInputs,
                                                  iteration_prompt_indices, make_minibatches,
                                                  token_kl)

        cfg, G = self.cfg, self.cfg.group_size_resolved
        policy = self.modules.policy
        t0 = time.perf_counter()
        chosen = iteration_prompt_indices(len(self.rows), cfg.prompts_per_iteration, iteration,
                                          cfg.seed)
        rows = [i for i in chosen for _ in range(G)]  # group members are consecutive
        generator = torch.Generator(device=self.device).manual_seed(
            _seed_for(cfg.seed, cfg.rollout.seed, iteration))
        rollout = sample(policy, self.tokenizer, [self.prompt_ids(i) for i in rows], cfg.rollout,
                         generator=generator)
        t1 = time.perf_counter()

        texts = completion_texts(rollout, self.tokenizer, cfg.rollout.stop)
        scores, source_means = self.scorer(prompts=[self.rows[i].messages for i in rows],
                                           completions=texts,
                                           answers=[self.rows[i].answer for i in rows])
        truncated = rollout.truncated.cpu()
        scores = (scores - cfg.missing_eos_penalty * truncated.float()).to(self.device)
        ref_logps = self.reference.logps(rollout)
        values = None
        if self.modules.value is not None:
            values = self._values(rollout)
        t2 = time.perf_counter()

        beta = float(self.modules.kl_beta)
        mask = rollout.response_mask
        kl = token_kl(rollout.logprobs, ref_logps, mask, cfg.kl_estimator)
        kl_seq = kl.sum(dim=1)
        adv = ADVANTAGES[cfg.algo](AdvantageInputs(
            scores=scores, kl=kl, mask=mask, beta=beta, kl_in_reward=cfg.kl_mode == "reward",
            group_size=G, values=values, gamma=cfg.ppo.gamma, lam=cfg.ppo.lam,
            whiten=cfg.ppo.whiten_advantages))
        if cfg.kl.controller == "adaptive":
            ctl = AdaptiveKLController(init_beta=beta, target=cfg.kl.target,
                                       horizon=cfg.kl.horizon)
            ctl.update(float(kl_seq.mean()), n_steps=len(rollout))
            self.modules.kl_beta.fill_(ctl.value)  # β of the next iteration
        stats = {
            "objective/kl": float(kl_seq.mean()),
            "objective/scores": float(scores.mean()),
            "objective/rlhf_reward": float((scores - beta * kl_seq).mean()),
            "objective/missing_eos": float(truncated.float().mean()),
            "val/explained_variance": adv.explained_variance,
            "completions/mean_length": float(rollout.lengths.float().mean()),
            "beta": beta,
            "time/generate": t1 - t0,
            "time/score": t2 - t1,
            **source_means,
        }
        tensors = {"prompt_ids": rollout.prompt_ids, "prompt_mask": rollout.prompt_mask,
                   "response_ids": rollout.response_ids, "response_mask": mask,
                   "old_logps": rollout.logprobs, "ref_logps": ref_logps,
                   "advantages": adv.advantages}
        if values is not None:
            tensors.update(old_values=values, returns=adv.returns)
        batches = make_minibatches(
            tensors, n_epochs=cfg.ppo.ppo_epochs, minibatch=cfg.ppo.minibatch,
            micro_batch=cfg.train.micro_batch_size, shuffle_key=f"{cfg.seed}-{iteration}",
            extras={"beta": beta, "iteration": iteration, "stats": stats})
        self.train_started[iteration] = time.perf_counter()
        return batches

    @torch.no_grad()
    def _values(self, rollout) -> torch.Tensor:
        value = self.modules.value
        was_training = value.training
        value.eval()
        try:
            return _chunked(rollout, self.cfg.rollout.batch_size,
                            lambda *a: response_values(value, *a))
        finally:
            value.train(was_training)


# ------------------------------------------------------------------------------- the loss

def rl_loss(modules: nn.Module, batch: dict[str, Any], cfg: RLConfig):
    """StepLoss of one micro-batch: Σ over response tokens of the per-token loss (see module)."""
    from alignkit.losses.kl import kl_loss_term
    from alignkit.losses.rl import masked_mean, ppo_clip_loss, value_loss
    from alignkit.train.engine import StepLoss

    logps, entropy, values = modules(batch)
    mask = batch["response_mask"]
    pg, stats = ppo_clip_loss(logps, batch["old_logps"], batch["advantages"], mask,
                              clip_eps=cfg.ppo.clip)
    per_token = pg
    metrics: dict[str, Any] = {
        "policy/clipfrac": stats["clipfrac"], "policy/approxkl": stats["approxkl"],
        "policy/entropy": masked_mean(entropy, mask), "loss/policy": masked_mean(pg.detach(), mask),
        "loss/value": 0.0, "loss/kl": 0.0}
    if values is not None:
        vl = value_loss(values, batch["old_values"], batch["returns"], mask,
                        clip_eps=cfg.ppo.vf_clip)
        per_token = per_token + cfg.ppo.vf_coef * vl
        metrics["loss/value"] = masked_mean(vl.detach(), mask)
    if cfg.kl_mode == "loss":
        kl = kl_loss_term(logps, batch["ref_logps"], mask, cfg.kl_estimator)
        per_token = per_token + float(batch["beta"]) * kl
        metrics["loss/kl"] = masked_mean(kl.detach(), mask)
    metrics.update(batch["stats"])
    n_tokens = int(batch["prompt_mask"].sum()) + int(mask.sum())
    return StepLoss(loss_sum=per_token.sum(), n_units=mask.sum(), n_tokens=n_tokens,
                    metrics=metrics)


# ------------------------------------------------------------------------------- stage

def _reward_inputs(sources: list[RewardSource]) -> dict[str, dict]:
    """Manifest entries of the reward sources, with digests of what they run."""
    import importlib
    import inspect

    from alignkit.contract.digest import digest_dir, digest_file

    out = {}
    for i, src in enumerate(sources):
        entry: dict[str, Any] = src.model_dump(mode="json")
        if src.kind == "reward_model":
            entry["digest"] = digest_dir(src.path, "mdl")
        elif src.kind == "function":
            target = src.path.rpartition(":")[0]
            try:
                file = target if target.endswith(".py") else inspect.getsourcefile(
                    importlib.import_module(target))
                entry["digest"] = digest_file(file, "file")
            except (ImportError, TypeError, OSError):
                entry["digest"] = None  # built-in or compiled: nothing to hash
        out[f"reward/{i}"] = entry
    return out


def rl(config: RLConfig | dict, out_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Run the rl stage; returns the summary metrics written to the manifest.

    Writes OUT/manifest.json, OUT/metrics.jsonl, OUT/checkpoints/, OUT/final/ (HF format) and,
    for the built-in world, OUT/eval.json + OUT/samples.jsonl.
    """
    from accelerate import Accelerator

    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model, save_model
    from alignkit.models.value import ValueModel
    from alignkit.train.engine import Engine
    from alignkit.train.rl_rewards import RewardScorer
    from alignkit.train.sft import world_heldout_eval
    from alignkit.train.stage import begin_run, fail_run, finish_run, parent_of

    cfg = config if isinstance(config, RLConfig) else RLConfig.model_validate(config)
    out = Path(out_dir)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    is_main, device = accelerator.is_main_process, accelerator.device
    per_step = cfg.train.micro_batch_size * accelerator.num_processes
    if cfg.ppo.minibatch % per_step:
        raise ConfigError(f"ppo.minibatch = {cfg.ppo.minibatch} is not a multiple of "
                          f"micro_batch_size x processes = {per_step}")
    loaded = load_model(cfg.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    template = resolve_chat_template(tokenizer, cfg.template)
    rows, prompts_entry = load_prompt_rows(cfg)
    world_eval = cfg.heldout_eval and cfg.prompts == WORLD_PROMPTS
    scorer = RewardScorer(cfg.rewards, device)
    manifest_config = cfg.model_dump(mode="json")
    resolved = {"group_size": cfg.group_size_resolved, "kl_mode": cfg.kl_mode,
                "kl_estimator": cfg.kl_estimator, "steps_per_iteration": cfg.steps_per_iteration}
    begin_run(out, "rl", {**manifest_config, "resolved": resolved}, resume=resume,
              is_main=is_main, seed=cfg.seed,
              inputs={"prompts": prompts_entry, **_reward_inputs(cfg.rewards)},
              base_model={"spec": cfg.model, "digest": loaded.digest},
              template={"name": template.name, "digest": template.digest},
              decode={**cfg.rollout.model_dump(mode="json"), "digest": cfg.rollout.digest},
              parents=parent_of(cfg.model))
    try:
        model.to(device)
        value = None
        if cfg.algo == "ppo":
            value = ValueModel(copy.deepcopy(model))  # the critic starts from the policy
        if cfg.lora is not None:
            from alignkit.models.lora import apply_lora

            model = apply_lora(model, cfg.lora)
        reference, ref_entry = build_reference(cfg, model, tokenizer, device)
        if is_main:
            from alignkit.contract.manifest import read_manifest, update_manifest

            update_manifest(out, inputs={**read_manifest(out).inputs, "reference": ref_entry})
        modules = PolicyAndValue(model, value, cfg.kl.beta, cfg.rollout.temperature).to(device)
        disable_dropout(modules)  # policy, LoRA adapters and critic
        modules.train()
        iterations = Iterations(cfg, modules, reference, scorer, rows, tokenizer, template, device)
        current: dict[int, _LazyBatches] = {}

        def epoch_batches(epoch: int):
            if epoch not in current:  # keep only the current iteration (and never re-sample it)
                current.clear()
                current[epoch] = iterations.lazy(epoch)
            return current[epoch]

        def loss_fn(m, batch):
            step = rl_loss(m, batch, cfg)
            started = iterations.train_started.get(int(batch["iteration"]))
            step.metrics["time/train"] = time.perf_counter() - started if started else 0.0
            return step

        eval_fn = None
        if world_eval and cfg.train.eval_every:
            from alignkit.evals.exact_match import exact_match_eval
            from alignkit.world.build import build_world

            heldout = build_world(cfg.world).heldout

            def eval_fn(m) -> dict[str, float]:
                res = exact_match_eval(m.policy, tokenizer, template, heldout, cfg.eval_decode)
                return {"heldout_exact_match": res["exact_match"]}

        train_cfg = cfg.train.model_copy(update={
            "seed": cfg.seed, "epochs": cfg.iterations, "max_steps": None,
            "grad_accum": cfg.ppo.minibatch // per_step})
        engine = Engine(model=modules, config=train_cfg, out_dir=out, epoch_batches=epoch_batches,
                        loss_fn=loss_fn, eval_fn=eval_fn, accelerator=accelerator,
                        run_config=manifest_config)
        result = engine.train(resume=resume)
        final = engine.unwrapped_model().policy
        metrics = {k: float(v) for k, v in result.final_metrics.items()
                   if isinstance(v, (int, float)) and k not in ("step", "epoch")}
        outputs = {}
        if engine.is_main:
            digest = save_model(final, tokenizer, out / "final")
            outputs["final"] = {"path": "final", "digest": digest}
            if world_eval:
                metrics.update(world_heldout_eval(final, tokenizer, template, cfg.eval_decode, out,
                                                  world=cfg.world))
        finish_run(out, metrics=metrics, outputs=outputs, is_main=engine.is_main)
        return metrics
    except BaseException as err:
        fail_run(out, err, is_main=is_main)
        raise


__all__ = ["Iterations", "KLConfig", "PPOConfig", "PolicyAndValue", "PromptRow", "RLConfig",
           "RolloutReference", "build_reference", "disable_dropout", "load_prompt_rows", "rl",
           "rl_loss"]
