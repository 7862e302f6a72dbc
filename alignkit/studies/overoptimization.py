"""Reward over-optimisation, measured: best-of-n and PPO against a weak proxy reward model.

Gao, Schulman & Hilton (2022, "Scaling Laws for Reward Model Overoptimization",
arXiv:2210.10760) optimise a policy against a *proxy* reward model and watch a *gold* reward
that the proxy only approximates. As the policy moves away from where it started, measured by
d = sqrt(KL(π ‖ π_ref)), the proxy keeps rising while the gold reward rises, peaks and falls
(Goodhart's law). They fit

    best-of-n:  R_bon(d) = d (α − β d)          RL:  R_RL(d) = d (α − β log d)

to the gold reward gained over the starting policy (`alignkit.studies.fits`). This study does
the same on the built-in world, where the gold reward is checkable exactly:

1. **proxy**: a Bradley-Terry reward model trained by the `reward` stage on a few world
   preference pairs, optionally with a length bias (`alignkit.studies.proxy`, the knobs);
2. **prompts**: ``n_prompts`` prompts of the world's SFT-train split (a seeded shuffle; the
   split the rl stage optimises on, so PPO is measured where it trains, as in the paper);
3. **best-of-n** from the SFT policy, n = 1, 2, 4, …, ``bon.max_n``, chosen by the proxy:
   ``bon.samples_per_prompt`` draws per prompt, expected proxy and gold reward of best-of-n by
   the unbiased subset estimator, measured KL (plug-in) beside the analytic
   log n − (n − 1)/n (`alignkit.studies.bon`);
4. **PPO** against the proxy with the `rl` stage (reward source = the proxy reward model; the
   world's exact match rides along with weight 0 so the training log shows gold too),
   checkpointed every ``checkpoint_every`` iterations; at the start and at each checkpoint:
   proxy, gold and d from ``ppo_samples_per_prompt`` samples per prompt
   (`alignkit.studies.measure`);
5. **fits**, a verdict (did the proxy rise while the gold reward peaked and then fell by more
   than twice its standard error?), OUT/overoptimization.json, OUT/table.md and
   OUT/overoptimization.png (`alignkit.studies.overopt_report`).

Output layout: OUT/manifest.json (stage ``study-overoptimization``), OUT/proxy/ (the reward
run) with OUT/proxy_data/, OUT/ppo/ (the rl run, its checkpoints kept), OUT/samples.jsonl
(a few PPO completions per checkpoint, to read what the policy learned),
OUT/overoptimization.json, OUT/table.md, OUT/overoptimization.png. The JSON holds, per method
(``bon``, ``ppo``), the lists ``d``, ``proxy``, ``gold`` (and ``kl``; ``n`` and the analytic
``kl_analytic`` / ``d_analytic`` for best-of-n; ``iteration`` for PPO) and ``fit`` =
{"gold": {form, alpha, beta, rmse, d_peak, r0}, "proxy": {...}}.

    >>> cfg = OveroptConfig(policy="runs/sft/final", rl={"iterations": 10})
    >>> cfg.rl.iterations, cfg.rl.prompts_per_iteration, cfg.rl.heldout_eval   # study defaults kept
    (10, 64, False)

Python: `alignkit.studies.overoptimization.overoptimization(config, out_dir)`; command line:
`alignkit study overoptimization [--config CFG] [--set k=v] --out DIR`.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alignkit.errors import ConfigError
from alignkit.studies.proxy import ProxyConfig
from alignkit.train.rl import RLConfig
from alignkit.world.build import WorldConfig

STAGE = "study-overoptimization"
SCHEMA = "alignkit.overoptimization/v1"

# The study's PPO defaults, merged *under* whatever `rl:` a config gives (a partial `rl:` section
# keeps the rest of these, not RLConfig's own defaults, which are tuned for a different job).
STUDY_RL: dict[str, Any] = {
    "algo": "ppo",
    "iterations": 40,
    "prompts_per_iteration": 64,
    "heldout_eval": False,
    "kl": {"beta": 0.0},
    "rollout": {"temperature": 2.0, "max_new_tokens": 16, "batch_size": 64},
    "ppo": {"minibatch": 64, "ppo_epochs": 2},
    "train": {"optim": {"lr": 1e-4, "schedule": "constant", "warmup_steps": 0},
              "micro_batch_size": 16, "progress": False},
}
# RLConfig fields the study sets itself (from `policy`, the proxy and `world`).
RL_OWNED = ("model", "reference", "rewards", "world", "prompts")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def say(message: str) -> None:
    """One progress line (the study runs for minutes; each phase says what it starts)."""
    print(f"study overoptimization: {message}", flush=True)


class BonConfig(BaseModel):
    """Best-of-n settings."""

    model_config = ConfigDict(extra="forbid")

    max_n: int = Field(64, ge=1)  # largest n (a power of two); n = 1, 2, 4, ..., max_n
    samples_per_prompt: int = Field(64, ge=2)  # N >= max_n draws per prompt feeding every n


class OveroptConfig(BaseModel):
    """Settings of `alignkit study overoptimization`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = None  # the world's SFT policy (HF dir); None = train one in OUT/base, OUT/sft
    world: WorldConfig = WorldConfig()  # the world of the prompts, pairs and gold answers
    families: list[str] | None = None  # world task families the prompts come from; None = all
    seed: int = 0  # prompt choice, proxy data, sampling, PPO
    n_prompts: int = Field(128, ge=1)  # world SFT-train prompts: proxy data, best-of-n, PPO, measurement
    proxy: ProxyConfig = ProxyConfig()  # the weak proxy reward model (its knobs)
    bon: BonConfig = BonConfig()  # best-of-n
    rl: RLConfig = Field(default_factory=lambda: RLConfig.model_validate(STUDY_RL))  # PPO (rl stage)
    checkpoint_every: int = Field(4, ge=1)  # PPO iterations between measured checkpoints
    ppo_samples_per_prompt: int = Field(8, ge=1)  # samples per prompt at each PPO checkpoint
    measure_batch_size: int = Field(256, ge=1)  # sequences per forward when measuring
    samples_shown: int = Field(12, ge=0)  # PPO completions per checkpoint kept in samples.jsonl
    keep_checkpoints: bool = False  # keep every measured PPO checkpoint (about 50 MB each); False = the last

    @field_validator("rl", mode="before")
    @classmethod
    def _study_rl(cls, value: Any) -> Any:
        if isinstance(value, RLConfig):
            return value
        if not isinstance(value, dict):
            return value
        defaults = RLConfig.model_validate(STUDY_RL).model_dump(mode="json")
        for key in RL_OWNED:
            if key in value and value[key] != defaults[key]:
                raise ValueError(f"rl.{key} is set by the study (policy, proxy and world); "
                                 "leave it out")
        return _merge(STUDY_RL, value)

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str] | None) -> list[str] | None:
        from alignkit.world.tasks import FAMILIES

        if value is None:
            return value
        if not value:
            raise ValueError("families must name at least one family (or be null for all)")
        unknown = [f for f in value if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown families {unknown} (the world's: {', '.join(FAMILIES)})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "OveroptConfig":
        from alignkit.studies.bon import powers_of_two

        powers_of_two(self.bon.max_n)  # ValueError unless a power of two
        if self.bon.max_n > self.bon.samples_per_prompt:
            raise ValueError(f"bon.max_n = {self.bon.max_n} needs bon.samples_per_prompt >= "
                             f"max_n draws per prompt, got {self.bon.samples_per_prompt}")
        if self.rl.algo != "ppo":
            raise ValueError(f"rl.algo must be ppo (the study's RL arm), got {self.rl.algo}")
        if self.checkpoint_every > self.rl.iterations:
            raise ValueError(f"checkpoint_every = {self.checkpoint_every} exceeds rl.iterations "
                             f"= {self.rl.iterations}: no checkpoint would be measured")
        return self

    @property
    def decode(self):
        """The sampling of every measurement: the rollout's, in bigger batches."""
        return self.rl.rollout.model_copy(update={"batch_size": self.measure_batch_size})


# ------------------------------------------------------------------------------- best-of-n

def bon_curves(proxy: list[float], gold: list[float], n_prompts: int, max_n: int
               ) -> dict[str, Any]:
    """Best-of-n curves averaged over prompts (`alignkit.studies.bon`); `proxy` and `gold`
    hold N = len / n_prompts draws per prompt, prompt-major."""
    from alignkit.studies.bon import (analytic_bon_kl, best_of_n_expectation, best_of_n_kl,
                                      powers_of_two)

    N, P = len(proxy) // n_prompts, n_prompts
    ns = powers_of_two(max_n)
    res: dict[str, Any] = {"n": ns, "kl": [], "d": [], "kl_analytic": [], "d_analytic": [],
                           "proxy": [], "gold": []}
    for n in ns:
        kl = px = gd = 0.0
        for p in range(P):
            sl = slice(p * N, (p + 1) * N)
            kl += best_of_n_kl(proxy[sl], n)
            px += best_of_n_expectation(proxy[sl], proxy[sl], n)
            gd += best_of_n_expectation(proxy[sl], gold[sl], n)
        ka = analytic_bon_kl(n)
        res["kl"].append(kl / P)
        res["d"].append(math.sqrt(kl / P))
        res["kl_analytic"].append(ka)
        res["d_analytic"].append(math.sqrt(ka))
        res["proxy"].append(px / P)
        res["gold"].append(gd / P)
    return res


# ------------------------------------------------------------------------------- PPO

def write_prompt_file(prompts, path: Path) -> str:
    """The rl stage's prompts: the study prompts as JSONL {prompt, answer, family}."""
    path.write_text("".join(json.dumps({"prompt": m, "answer": a, "family": f},
                                       ensure_ascii=False) + "\n"
                            for m, a, f in zip(prompts.messages, prompts.answers,
                                               prompts.families)), encoding="utf-8")
    return str(path)


def ppo_rewards(proxy_dir: str, baseline: str | None, sigma: float) -> list:
    """The rl stage's reward sources: the proxy (centred and scaled when `baseline` is the
    path of the baseline function, `alignkit.studies.centering`), plus the world's exact
    match with weight 0 (logged as rewards/world_exact_match, never optimised)."""
    from alignkit.train.rl_rewards import RewardSource

    if baseline is None:
        sources = [RewardSource(kind="reward_model", path=proxy_dir)]
    else:
        sources = [RewardSource(kind="reward_model", path=proxy_dir, weight=1.0 / sigma),
                   RewardSource(kind="function", path=baseline)]
    return sources + [RewardSource(kind="world_exact_match", weight=0.0)]


def _ppo_config(cfg: OveroptConfig, rewards: list, prompts: str) -> RLConfig:
    steps = cfg.rl.steps_per_iteration
    n_ckpt = math.ceil(cfg.rl.iterations / cfg.checkpoint_every)
    train = cfg.rl.train.model_copy(update={"save_every": steps * cfg.checkpoint_every,
                                            "keep_checkpoints": n_ckpt + 1})
    return cfg.rl.model_copy(update={"model": cfg.policy, "reference": None, "world": cfg.world,
                                     "train": train, "prompts": prompts, "rewards": rewards})


def _policy_state(ckpt_dir: Path) -> dict:
    """The policy's weights in an rl checkpoint (its module is PolicyAndValue: policy.*)."""
    from alignkit.train.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt_dir).model_state
    return {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")}


def measure_policy(policy, reference, tokenizer, prompts, scorer, cfg: OveroptConfig,
                   transform) -> dict[str, Any]:
    """Proxy, gold, KL and d of one policy on the study prompts (`alignkit.studies.measure`);
    `transform(proxy, prompt_index)` maps raw proxy scores to the reported ones."""
    from alignkit.studies.measure import draw, per_prompt_means, reference_logps, score_unique

    k = cfg.ppo_samples_per_prompt
    samples = draw(policy, tokenizer, prompts, k, cfg.decode, seed=cfg.seed + 1)
    ref = reference_logps(reference, samples, cfg.measure_batch_size)
    log_ratio = (samples.logps - ref).tolist()
    raw, gold = score_unique(scorer, prompts, samples)
    proxy = transform(raw, samples.prompt_index)
    kl = sum(log_ratio) / len(log_ratio)
    P = len(prompts.ids)
    return {"kl": kl, "d": math.sqrt(max(kl, 0.0)), "proxy": sum(proxy) / len(proxy),
            "gold": sum(gold) / len(gold),
            "mean_length": float(samples.lengths.double().mean()),
            "gold_per_prompt": per_prompt_means(gold, samples.prompt_index, P),
            "texts": samples.texts, "prompt_index": samples.prompt_index,
            "proxy_each": proxy, "gold_each": gold}


def _train_trace(run: Path, steps_per_iteration: int) -> dict[str, list]:
    """Per-iteration score (the centred proxy PPO optimised: objective/scores), gold
    (rewards/world_exact_match) and d of the training rollouts, from the rl run's
    metrics.jsonl (an iteration's values repeat on its steps; its first step is taken)."""
    trace: dict[str, list] = {"iteration": [], "d": [], "proxy": [], "gold": []}
    path = run / "metrics.jsonl"
    if not path.is_file():
        return trace
    seen = set()
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "objective/scores" not in rec or "step" not in rec:
            continue
        it = (int(rec["step"]) - 1) // steps_per_iteration
        if it in seen:
            continue
        seen.add(it)
        trace["iteration"].append(it)
        trace["d"].append(math.sqrt(max(float(rec.get("objective/kl", 0.0)), 0.0)))
        trace["proxy"].append(float(rec["objective/scores"]))
        trace["gold"].append(float(rec.get("rewards/world_exact_match", float("nan"))))
    return trace


def run_ppo(cfg: OveroptConfig, rcfg: RLConfig, out: Path, tokenizer, prompts, scorer,
            transform, samples_out: list[dict]) -> dict[str, Any]:
    """PPO against the proxy, then every checkpoint measured (iteration 0 = the SFT policy)."""
    from alignkit.models.loading import load_model
    from alignkit.train.checkpoint import list_checkpoints, prune_checkpoints
    from alignkit.train.rl import rl

    run = out / "ppo"
    say(f"PPO against the proxy: {rcfg.iterations} iterations -> {run}")
    rl(rcfg, run)
    reference = load_model(cfg.policy).model
    policy = copy.deepcopy(reference)
    steps = rcfg.steps_per_iteration
    points = [(0, None)] + [(step // steps, path) for step, path in list_checkpoints(run)]
    res: dict[str, list] = {"iteration": [], "kl": [], "d": [], "proxy": [], "gold": [],
                            "mean_length": []}
    per_prompt: list[list[float]] = []
    for iteration, path in points:
        if path is not None:
            policy.load_state_dict(_policy_state(path))
        m = measure_policy(policy, reference, tokenizer, prompts, scorer, cfg, transform)
        for key in ("kl", "d", "proxy", "gold", "mean_length"):
            res[key].append(m[key])
        res["iteration"].append(iteration)
        say(f"measured PPO iteration {iteration} ({len(res['iteration'])}/{len(points)}): "
            f"d {m['d']:.3f}  proxy {m['proxy']:.3f}  gold {m['gold']:.3f}")
        per_prompt.append(m["gold_per_prompt"])
        for i in range(min(cfg.samples_shown, len(m["texts"]))):
            p = m["prompt_index"][i]
            samples_out.append({"method": "ppo", "iteration": iteration,
                                "prompt": prompts.messages[p][-1]["content"],
                                "answer": prompts.answers[p], "completion": m["texts"][i],
                                "proxy": m["proxy_each"][i], "gold": m["gold_each"][i]})
    res["gold_per_prompt"] = per_prompt
    res["train"] = _train_trace(run, steps)
    if not cfg.keep_checkpoints:  # measured; the last one stays (resume, lineage)
        prune_checkpoints(run, keep=1)
    return res


# ------------------------------------------------------------------------------- verdict

def _fits(method: str, res: dict[str, Any]) -> dict[str, Any]:
    from alignkit.studies.fits import fit_bon, fit_rl

    fit = fit_bon if method == "bon" else fit_rl
    out = {}
    for key in ("gold", "proxy"):
        r0 = res[key][0]
        f = fit(res["d"], [v - r0 for v in res[key]])
        f["r0"] = r0
        out[key] = f
    return out


def _paired_se(a: list[float], b: list[float]) -> float:
    """Standard error of mean(a − b) over paired per-prompt values: std(diff, ddof=1)/sqrt(P)."""
    diff = [x - y for x, y in zip(a, b)]
    P = len(diff)
    if P < 2:
        return float("inf")
    mean = sum(diff) / P
    return math.sqrt(sum((x - mean) ** 2 for x in diff) / (P - 1) / P)


def ppo_verdict(res: dict[str, Any]) -> dict[str, Any]:
    """Did the proxy rise while the gold reward peaked and then fell, both visibly?

    peak = the checkpoint with the highest gold reward (the first, on ties);
    gain = gold(peak) − gold(start) and drop = gold(peak) − gold(last), each with its
    standard error over prompts from paired per-prompt differences (the same prompts at both
    checkpoints): SE = std(diff) / sqrt(P). Shown = proxy(last) > proxy(start), the peak lies
    strictly between start and end, gain > 2 SE and drop > 2 SE. (The peak is the maximum
    of several noisy points, so its gain is biased upwards; 2 SE is a visibility bar, not a
    test.)
    """
    gold, proxy, pp = res["gold"], res["proxy"], res["gold_per_prompt"]
    peak = max(range(len(gold)), key=lambda i: (gold[i], -i))
    gain, drop = gold[peak] - gold[0], gold[peak] - gold[-1]
    gain_se, drop_se = _paired_se(pp[peak], pp[0]), _paired_se(pp[peak], pp[-1])
    shown = (proxy[-1] > proxy[0] and 0 < peak < len(gold) - 1 and gain > 2 * gain_se
             and drop > 2 * drop_se)
    return {"gold_start": gold[0], "gold_peak": gold[peak], "gold_peak_iteration":
            res["iteration"][peak], "gold_peak_d": res["d"][peak], "gold_final": gold[-1],
            "gold_gain": gain, "gold_gain_se": gain_se, "gold_drop": drop, "gold_drop_se": drop_se,
            "proxy_start": proxy[0], "proxy_final": proxy[-1], "proxy_rise": proxy[-1] - proxy[0],
            "d_final": res["d"][-1], "overoptimized": bool(shown)}


# ------------------------------------------------------------------------------- the study

def make_proxy(cfg: OveroptConfig, out: Path, policy, tokenizer, prompts, world
               ) -> tuple[str, dict[str, Any]]:
    """The proxy reward model directory and its manifest entry (`alignkit.studies.proxy`)."""
    from alignkit.studies.measure import draw
    from alignkit.studies.proxy import heldout_pairs, policy_pairs, train_proxy, world_pairs
    from alignkit.world.rewards import exact_match_reward

    pc = cfg.proxy
    if pc.path is not None:
        return pc.path, {"trained": False, "path": pc.path}
    if pc.source == "policy":
        samples = draw(policy, tokenizer, prompts, pc.samples_per_prompt, cfg.decode,
                       seed=cfg.seed + 2)
        gold = exact_match_reward([""] * len(samples.texts), samples.texts,
                                  [prompts.answers[p] for p in samples.prompt_index])
        rows = policy_pairs(prompts.messages, prompts.families, samples.texts, gold,
                            samples.prompt_index, per_prompt=pc.pairs_per_prompt, seed=cfg.seed)
    else:
        rows = world_pairs(pc, world, cfg.seed, cfg.families)
    return train_proxy(pc, rows, heldout_pairs(pc, world, cfg.seed, cfg.families),
                       policy=cfg.policy, world_config=cfg.world, seed=cfg.seed, out=out)


def train_world_policy(cfg: OveroptConfig, out: Path) -> str:
    """The study's starting policy when the config names none: the world's base model and its
    SFT model, each stage with its own defaults on the study's world and seed, trained into
    OUT/base and OUT/sft (about 5 minutes on 2 CPU cores)."""
    from alignkit.train.sft import sft
    from alignkit.world.pretrain import pretrain

    world = cfg.world.model_dump(mode="json")
    say(f"no policy given; pretraining the world's base model -> {out / 'base'}")
    pretrain({"world": world, "seed": cfg.seed}, out / "base")
    say(f"SFT of the base model -> {out / 'sft'}")
    sft({"model": str(out / "base" / "final"), "world": world, "seed": cfg.seed}, out / "sft")
    return str(out / "sft" / "final")


def overoptimization(config: OveroptConfig | dict, out_dir: str | Path) -> dict[str, Any]:
    """Run the study; returns the summary metrics written to OUT/manifest.json."""
    import torch

    from alignkit.contract.digest import digest_file
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model
    from alignkit.studies.centering import center, prompt_stats, write_baseline_module
    from alignkit.studies.measure import draw, score_unique, world_eval_prompts
    from alignkit.studies.overopt_report import write_plot, write_table
    from alignkit.train.rl_rewards import RewardScorer, RewardSource
    from alignkit.train.stage import begin_run, fail_run, finish_run, parent_of
    from alignkit.world.build import build_world

    cfg = config if isinstance(config, OveroptConfig) else OveroptConfig.model_validate(config)
    if cfg.proxy.path is not None and not Path(cfg.proxy.path).is_dir():
        raise ConfigError(f"proxy.path {cfg.proxy.path} is not a directory")
    if cfg.policy is not None and not Path(cfg.policy).is_dir():
        raise ConfigError(f"policy {cfg.policy} is not a directory (the world's SFT model, "
                          "e.g. runs/sft/final; leave it out to train one here)")
    out = Path(out_dir)
    if (out / "manifest.json").exists():  # before minutes of training, not after
        raise ConfigError(f"{out} already holds a run; choose another --out")
    if cfg.policy is None:
        cfg = cfg.model_copy(update={"policy": train_world_policy(cfg, out)})
    loaded = load_model(cfg.policy)
    begin_run(out, STAGE, cfg.model_dump(mode="json"), resume=False, seed=cfg.seed,
              base_model={"spec": cfg.policy, "digest": loaded.digest},
              parents=parent_of(cfg.policy))
    try:
        torch.manual_seed(cfg.seed)
        timing: dict[str, float] = {}
        world = build_world(cfg.world)
        tokenizer = loaded.tokenizer
        template = resolve_chat_template(tokenizer, cfg.rl.template)
        prompts = world_eval_prompts(world, cfg.n_prompts, cfg.seed, tokenizer, template,
                                     cfg.families)
        P = len(prompts.ids)

        t = time.perf_counter()
        say(f"proxy reward model ({cfg.proxy.source} pairs) -> {out / 'proxy'}")
        proxy_dir, proxy_entry = make_proxy(cfg, out, loaded.model, tokenizer, prompts, world)
        scorer = RewardScorer([RewardSource(kind="reward_model", path=proxy_dir)])
        timing["proxy_s"] = time.perf_counter() - t

        t = time.perf_counter()
        samples = draw(loaded.model, tokenizer, prompts, cfg.bon.samples_per_prompt, cfg.decode,
                       seed=cfg.seed)
        raw, gold = score_unique(scorer, prompts, samples)
        means, sigma = prompt_stats(raw, samples.prompt_index, P)
        if cfg.proxy.center:
            def transform(values, index):
                return center(values, index, means, sigma)
        else:
            def transform(values, index):
                return list(values)
        proxy_entry["centering"] = {"on": cfg.proxy.center, "sigma": sigma,
                                    "mean_of_means": sum(means) / P}
        say(f"best-of-n: {cfg.bon.samples_per_prompt} draws for each of {P} prompts scored")
        bon = bon_curves(transform(raw, samples.prompt_index), gold, P, cfg.bon.max_n)
        N = cfg.bon.samples_per_prompt
        bon["distinct_completions_per_prompt"] = sum(
            len(set(samples.texts[p * N:(p + 1) * N])) for p in range(P)) / P
        bon["fit"] = _fits("bon", bon)
        timing["bon_s"] = time.perf_counter() - t

        t = time.perf_counter()
        baseline = (write_baseline_module(out / "proxy_baseline.py", prompts.messages, means,
                                          sigma) if cfg.proxy.center else None)
        rcfg = _ppo_config(cfg, ppo_rewards(proxy_dir, baseline, sigma),
                           write_prompt_file(prompts, out / "prompts.jsonl"))
        shown: list[dict] = []
        ppo = run_ppo(cfg, rcfg, out, tokenizer, prompts, scorer, transform, shown)
        ppo["fit"] = _fits("ppo", ppo)
        verdict = ppo_verdict(ppo)
        del ppo["gold_per_prompt"]
        timing["ppo_s"] = time.perf_counter() - t

        result = {
            "schema": SCHEMA,
            "policy": cfg.policy,
            "proxy": {**proxy_entry, "model": proxy_dir,
                      **cfg.proxy.model_dump(mode="json", exclude={"train", "path"})},
            "prompts": {"source": "builtin:world", "split": "sft-train",
                        "families": cfg.families or "all", "n": P, "seed": cfg.seed,
                        "file": "prompts.jsonl",
                        "note": "the first n_prompts of a seeded shuffle of the world's "
                                "SFT-train prompts; the proxy's comparisons, best-of-n, PPO's "
                                "optimisation and every measurement use these prompts"},
            "decode": cfg.decode.model_dump(mode="json"),
            "gold": "world exact match (alignkit.world.rewards.exact_match_reward), 0/1",
            "proxy_units": ("(r - mean_x) / sigma: 0 = the starting policy's average reply to "
                            "the prompt, 1 = one within-prompt standard deviation"
                            if cfg.proxy.center else "raw reward-model score"),
            "bon": bon, "ppo": ppo, "summary": verdict, "timing": timing,
        }
        write_table(result, out / "table.md")
        skipped = write_plot(result, out / "overoptimization.png")
        if skipped:
            result["plot"] = f"skipped: {skipped}"
        (out / "overoptimization.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        (out / "samples.jsonl").write_text("".join(json.dumps(s, ensure_ascii=False) + "\n"
                                                   for s in shown))
        metrics = {f"ppo/{k}": float(v) for k, v in verdict.items()}
        metrics.update({"bon/gold_max_n": bon["gold"][-1], "bon/proxy_max_n": bon["proxy"][-1],
                        "bon/kl_max_n": bon["kl"][-1], "time/total_s": sum(timing.values())})
        outputs = {name: {"path": name, "digest": digest_file(out / name, "file")}
                   for name in ("overoptimization.json", "table.md", "overoptimization.png")
                   if (out / name).is_file()}
        finish_run(out, metrics=metrics, outputs=outputs)
        return metrics
    except BaseException as err:
        fail_run(out, err)
        raise


__all__ = ["BonConfig", "OveroptConfig", "STUDY_RL", "bon_curves", "make_proxy",
           "measure_policy", "overoptimization", "ppo_rewards", "ppo_verdict", "run_ppo",
           "train_world_policy"]
