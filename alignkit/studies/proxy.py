"""The study's deliberately weak proxy reward model: what it is trained on, and its knobs.

The proxy is a Bradley-Terry reward model trained by the `reward` stage
(`alignkit.train.reward`, backbone = the policy unless ``backbone`` says otherwise) on one of
two kinds of comparisons (``source``):

- ``policy`` (default; the recipe of Gao, Schulman & Hilton 2022, whose proxies learn from
  comparisons of the initial policy's samples labelled by the gold reward): the starting
  policy's own samples on the study prompts (``samples_per_prompt`` draws per prompt at the
  study's sampling temperature, a seed of their own), labelled by the gold scorer: for each
  prompt with both, ``pairs_per_prompt`` pairs chosen = a reply the gold scorer accepts,
  rejected = one it rejects (a blank reply can only be rejected, and is skipped: a reward
  model cannot be shown an empty turn);
- ``world``: the built-in world's preference rows (`alignkit.world.preferences`: chosen = the
  correct short answer, rejected = another answer of the family, the answer buried in hedging,
  or a needless refusal), ``pairs_per_family`` per task family, kinds ``rejected_kinds``.

The weakness knobs:

- size: ``pairs_per_prompt`` (``policy``) or ``pairs_per_family`` (``world``) -- Gao et al.
  vary the proxy's training-set size as one of their axes;
- ``length_bias``: the share of training pairs whose *chosen* reply gets ``filler`` appended,
  so that in those comparisons the preferred reply is also the longer one -- the length
  correlation RLHF reward models are known to pick up and policies exploit (Singhal et al.
  2023, "A Long Way to Go: Investigating Length Correlations in RLHF"). The gold scorer (exact
  match) counts an answer with filler as wrong, as a strict grader would.

The pairs are written to OUT/proxy_data/{train,heldout}.jsonl (the reward run's manifest
digests exactly what it saw). The held-out pairs are always the world's held-out preference
rows, never biased, so the reward run's eval.json measures the proxy against clean labels.

    >>> rows = [{"chosen": [{"role": "assistant", "content": "5"}]} for _ in range(4)]
    >>> biased = add_length_bias(rows, share=0.5, filler=" Glad to help!", seed=0)
    >>> sorted(r["chosen"][0]["content"] for r in biased)
    ['5', '5', '5 Glad to help!', '5 Glad to help!']
"""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alignkit.train.config import OptimConfig, TrainConfig

DEFAULT_FILLER = " I hope this helps, and let me know if you need anything else!"


class ProxyConfig(BaseModel):
    """How the proxy reward model is made (or which one to use)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None  # an existing reward-model directory to use as the proxy (skips training)
    backbone: str | None = None  # model the proxy is trained from; None = the study's policy
    source: Literal["policy", "world"] = "policy"  # comparisons of the policy's samples, or world rows
    samples_per_prompt: int = Field(16, ge=2)  # policy: draws per study prompt the pairs are cut from
    pairs_per_prompt: int = Field(4, ge=1)  # policy: pairs per prompt that has a right and a wrong draw (size knob)
    pairs_per_family: int = Field(30, ge=1)  # world: task pairs per task family (size knob)
    rejected_kinds: list[Literal["wrong", "verbose", "refusal"]] = [
        "wrong", "verbose", "refusal"]  # world: task pairs kept, by rejected kind
    safety_pairs_per_slice: int = Field(0, ge=0)  # world: safety pairs per safety slice (0 = none)
    length_bias: float = Field(0.0, ge=0, le=1)  # share of training pairs whose chosen reply gets `filler`
    filler: str = Field(DEFAULT_FILLER, min_length=1)  # text appended to biased chosen replies
    heldout_pairs_per_family: int = Field(10, ge=1)  # clean world held-out pairs per family (eval.json)
    center: bool = True  # per-prompt centring and scaling (alignkit.studies.centering)
    train: TrainConfig = TrainConfig(
        optim=OptimConfig(lr=5e-4, warmup_steps=0, schedule="constant"), epochs=8,
        micro_batch_size=8, eval_every=0, progress=False)  # the reward stage's loop settings

    @field_validator("rejected_kinds")
    @classmethod
    def _some_kind(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("rejected_kinds must keep at least one kind")
        return value


def add_length_bias(rows: list[dict], *, share: float, filler: str, seed: int) -> list[dict]:
    """Copies of `rows` where round(share · len(rows)) seeded rows get `filler` appended to
    their (last) chosen message and carry ``length_bias: true``."""
    out = copy.deepcopy(rows)
    k = round(share * len(out))
    picked = random.Random(f"overoptimization-length-bias-{seed}").sample(range(len(out)), k)
    for i in picked:
        out[i]["chosen"][-1]["content"] += filler
        out[i]["length_bias"] = True
    return out


def policy_pairs(messages: Sequence[list[dict]], families: Sequence[str],
                 texts: Sequence[str], gold: Sequence[float], prompt_index: Sequence[int], *,
                 per_prompt: int, seed: int) -> list[dict]:
    """Comparisons of the policy's own draws labelled by the gold scorer (module docstring).

    For each prompt (in order) whose draws include a non-blank reply with gold 1 and one with
    gold 0, `per_prompt` pairs: chosen and rejected drawn uniformly (seeded) from its distinct
    right and wrong replies, leading/trailing whitespace stripped.

        >>> rows = policy_pairs([[{"role": "user", "content": "2+2?"}]], ["add"],
        ...                     [" 4", " 5", " ", " 4"], [1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0],
        ...                     per_prompt=2, seed=0)
        >>> [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]
        [('4', '5'), ('4', '5')]
    """
    right: dict[int, set[str]] = {}
    wrong: dict[int, set[str]] = {}
    for p, t, g in zip(prompt_index, texts, gold):
        t = t.strip()
        if t:
            (right if g >= 1.0 else wrong).setdefault(p, set()).add(t)
    rng = random.Random(f"overoptimization-policy-pairs-{seed}")
    rows = []
    for p in sorted(set(right) & set(wrong)):
        good, bad = sorted(right[p]), sorted(wrong[p])
        for j in range(per_prompt):
            rows.append({"prompt": [dict(m) for m in messages[p]],
                         "chosen": [{"role": "assistant", "content": rng.choice(good)}],
                         "rejected": [{"role": "assistant", "content": rng.choice(bad)}],
                         "category": families[p], "type": "policy_sample",
                         "id": f"overopt-policy-{seed}-{p}-{j}"})
    return rows


def world_pairs(cfg: ProxyConfig, world, seed: int, families: Sequence[str] | None = None
                ) -> list[dict]:
    """World preference rows for training (`families` only when given; safety rows kept)."""
    from alignkit.world.preferences import REJECTED_KINDS, world_preference_rows

    rows = world_preference_rows(world, split="train", seed=seed, per_family=cfg.pairs_per_family,
                                 n_per_slice=cfg.safety_pairs_per_slice)
    return [r for r in rows if r["type"] not in REJECTED_KINDS
            or ((families is None or r["category"] in families)
                and r["type"] in cfg.rejected_kinds)]


def heldout_pairs(cfg: ProxyConfig, world, seed: int, families: Sequence[str] | None = None
                  ) -> list[dict]:
    """Clean world held-out task pairs (every kind) for the proxy's eval.json."""
    from alignkit.world.preferences import world_preference_rows

    rows = world_preference_rows(world, split="heldout", seed=seed,
                                 per_family=cfg.heldout_pairs_per_family, n_per_slice=0)
    return [r for r in rows if families is None or r["category"] in families]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def train_proxy(cfg: ProxyConfig, rows: list[dict], heldout: list[dict], *, policy: str,
                world_config, seed: int, out: Path) -> tuple[str, dict[str, Any]]:
    """Apply the length bias, write OUT/proxy_data/, train the proxy with the reward stage in
    OUT/proxy; returns (model dir, manifest entry)."""
    from alignkit.errors import ConfigError
    from alignkit.train.reward import RewardConfig, reward

    if not rows:
        raise ConfigError("the proxy has no training pairs: no study prompt has both a right "
                          "and a wrong draw (raise proxy.samples_per_prompt or the sampling "
                          "temperature), or use proxy.source: world")
    if cfg.length_bias > 0:
        rows = add_length_bias(rows, share=cfg.length_bias, filler=cfg.filler, seed=seed)
    data = out / "proxy_data"
    _write_jsonl(data / "train.jsonl", rows)
    _write_jsonl(data / "heldout.jsonl", heldout)
    micro = min(cfg.train.micro_batch_size, len(rows))
    rcfg = RewardConfig(model=cfg.backbone or policy, data=str(data / "train.jsonl"),
                        validation=str(data / "heldout.jsonl"), world=world_config,
                        train=cfg.train.model_copy(update={"micro_batch_size": micro}), seed=seed)
    metrics = reward(rcfg, out / "proxy")
    entry = {"trained": True, "run": "proxy", "source": cfg.source, "n_train_pairs": len(rows),
             "n_length_biased": sum(1 for r in rows if r.get("length_bias")),
             "heldout_accuracy": metrics.get("heldout/accuracy")}
    return str(out / "proxy" / "final"), entry


__all__ = ["DEFAULT_FILLER", "ProxyConfig", "add_length_bias", "heldout_pairs", "policy_pairs",
           "train_proxy", "world_pairs"]
