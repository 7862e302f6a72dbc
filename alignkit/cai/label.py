"""`alignkit cai label`: an AI-labelled preference dataset (RL-CAI / RLAIF, Bai et al. 2022 §4).

Pairs come from one of three places:

- a preference file (explicit, implicit or HH-RLHF text): its pairs are relabelled, and its
  own label is kept only as `reference_choice` to measure agreement (which reply of each pair
  is shown first is shuffled, seeded, so that a labeller that always says "A" scores 50%);
- a prompt file plus `policy_model`: two replies are sampled per prompt (`decode`, seeds
  `decode.seed` and `decode.seed + 1`); pairs with identical replies, or with an empty reply
  (no token to train on), are dropped and counted;
- ``builtin:world`` (rows chosen by `world`): without `policy_model` the world's own pairs
  (ideal reply vs dispreferred one, gold reference known); with it, sampled pairs whose
  reference is the world's gold grader (`alignkit.cai.world.gold_preference`; pairs it ranks
  equal have no reference).

The feedback model labels every pair with `alignkit.cai.feedback.label_pairs` (both orders,
ensembled over the comparison principles, optionally clamped). Writes OUT/preferences.jsonl
(explicit conversational pairs, chosen = the AI's preferred reply, soft label `chosen_prob`,
`provenance`; a prompt's safety label is kept as `prompt_label`), OUT/cai_eval.json (agreement
with the reference, Wilson interval, sliced by category, prompt label and type) and
OUT/manifest.json (constitution, feedback-model, template digests).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alignkit.cai.feedback import Pair
from alignkit.cai.prompts import PromptSpec
from alignkit.cai.world import WORLD, WorldRows
from alignkit.contract.specs import DecodeSpec
from alignkit.errors import ConfigError


class LabelConfig(BaseModel):
    """Settings of `alignkit cai label`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    feedback_model: str = "builtin:world-tiny"  # answers the comparison questions
    policy_model: str | None = None  # samples two replies per prompt; None = the data's own pairs
    data: str = WORLD  # preference file, prompt file (with policy_model) or builtin:world
    format: str | None = None  # force the file format (jsonl|json|csv|parquet|hh)
    on_bad_rows: Literal["error", "skip"] = "error"  # skip = write bad rows to OUT/quarantine.jsonl and count them
    world: WorldRows = WorldRows()  # builtin:world rows
    constitution: str = "builtin:world"  # YAML file, builtin:world or builtin:english
    comparisons: list[str] | None = None  # comparison principle ids to use (None = all)
    per_pair: int | None = Field(None, ge=1)  # draw this many of them per pair (None = all, ensembled)
    clamp: tuple[float, float] | None = None  # clamp the label to [lo, hi], e.g. [0.4, 0.6]
    prompts: PromptSpec = PromptSpec()  # feedback prompt format and answer choices
    template: str | None = None  # feedback model's chat template (None = its own)
    policy_template: str | None = None  # policy model's chat template (None = its own)
    decode: DecodeSpec = DecodeSpec(temperature=1.0, max_new_tokens=64)  # sampling of candidate replies
    max_pairs: int | None = Field(None, ge=1)  # label at most this many pairs (seeded sample)
    seed: int = 0  # pair orientation, sampling of pairs and principles

    @field_validator("clamp")
    @classmethod
    def _bounds(cls, v):
        if v is not None and not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError(f"clamp must satisfy 0 <= lo <= hi <= 1, got {list(v)}")
        return v


_META = ("id", "category", "type", "label", "split")


def _meta(row: dict) -> dict:
    """Fields passed through to the output row. A prompt's safety `label` is renamed
    `prompt_label`: with `label` a preference row would also look like a safety row."""
    return {("prompt_label" if k == "label" else k): row[k] for k in _META if k in row}


def _oriented(prompt, good: str, bad: str, rng: random.Random, meta: dict) -> Pair:
    """A pair with a random one of (good, bad) shown as `a`; the reference says which."""
    if rng.random() < 0.5:
        return Pair(prompt, good, bad, "a", meta)
    return Pair(prompt, bad, good, "b", meta)


def _as_messages(value, role: str) -> list[dict]:
    return value if isinstance(value, list) else [{"role": role, "content": value}]


def _reply_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] == "assistant")


def load_pairs(cfg: LabelConfig, quarantine: Path | None = None
               ) -> tuple[list[Pair], list[tuple[list[dict], dict]], dict]:
    """(ready pairs, prompts still needing sampled replies, manifest input entry).

    `quarantine` is where bad rows go when `cfg.on_bad_rows == "skip"`."""
    rng = random.Random(f"cai-label-orient-{cfg.seed}")
    if cfg.data == WORLD:
        from alignkit.cai.world import world_rows

        rows = world_rows(cfg.world, seed=cfg.seed)
        entry = {"source": WORLD, "world": cfg.world.model_dump(mode="json"), "n_rows": len(rows)}
        metas = [_meta(r) for r in rows]
        prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
        if cfg.policy_model is not None:
            return [], list(zip(prompts, metas)), entry
        return ([_oriented(p, r["response"], r["rejected"], rng, m)
                 for p, r, m in zip(prompts, rows, metas) if "rejected" in r], [], entry)
    from alignkit.data.readers import read_records

    skip = cfg.on_bad_rows == "skip"
    if skip and quarantine is None:
        raise ConfigError("on_bad_rows: skip needs a quarantine file")
    res = read_records(cfg.data, format=cfg.format, on_bad_rows=cfg.on_bad_rows,
                       quarantine_path=quarantine if skip else None)
    entry = res.manifest_entry()
    metas = [_meta(r) for r in res.records]
    if res.kind == "preference":
        if cfg.policy_model is not None:
            raise ConfigError(f"{cfg.data} holds preference pairs: they are relabelled as they "
                              "are; drop policy_model (or give a prompt file)")
        return ([_oriented(_as_messages(r["prompt"], "user"),
                           _reply_text(_as_messages(r["chosen"], "assistant")),
                           _reply_text(_as_messages(r["rejected"], "assistant")), rng, m)
                 for r, m in zip(res.records, metas)], [], entry)
    if cfg.policy_model is None:
        raise ConfigError(f"{cfg.data} holds {res.kind!r} rows, not pairs: set policy_model to "
                          "sample two replies per prompt")
    from alignkit.cai.sl import read_prompts

    return [], [(p, _meta(m)) for p, m in read_prompts(cfg.data)], entry


def sample_pairs(prompts: Sequence[tuple[list[dict], dict]], lm, decode: DecodeSpec
                 ) -> tuple[list[Pair], int, int]:
    """Two sampled replies per prompt; returns (usable pairs, n identical, n with an empty
    reply)."""
    from alignkit.cai.world import gold_preference

    convs = [p for p, _ in prompts]
    first = lm.reply(convs, decode)
    second = lm.reply(convs, decode.model_copy(update={"seed": decode.seed + 1}))
    pairs, identical, empty = [], 0, 0
    for (prompt, meta), a, b in zip(prompts, first, second):
        if not a.strip() or not b.strip():
            empty += 1
            continue
        if a.strip() == b.strip():
            identical += 1
            continue
        ref = (gold_preference(meta["prompt_label"], a, b)
               if meta.get("prompt_label") in ("safe", "unsafe")
               and str(meta.get("id", "")).startswith("world-") else None)
        pairs.append(Pair(prompt, a, b, ref, meta))
    return pairs, identical, empty


def agreement_report(rows: Sequence[dict]) -> dict[str, dict]:
    """Agreement of the AI choice with `reference_choice` (ties count as disagreement), Wilson
    95% interval, sliced by category, prompt label (safe/unsafe) and type."""
    from alignkit.evals.suite import rate_metric

    judged = [r for r in rows if "reference_choice" in r]
    if not judged:
        return {}
    return {"cai/agreement": rate_metric(judged, "agrees_with_reference",
                                         ["category", "prompt_label", "type"])}


LABEL_FILES = ("preferences.jsonl", "cai_eval.json", "quarantine.jsonl")  # what a run writes in OUT


def label(config: LabelConfig | dict, out_dir: str | Path, *,
          resume: bool = False) -> dict[str, float]:
    """Run the labelling stage; returns the summary metrics written to the manifest.

    The shared stage signature (a pipeline stage kind, `cai_label`). Labelling keeps no
    checkpoint, so `resume=True` deletes an interrupted run's manifest and files
    (`LABEL_FILES`) and labels again from scratch in the same OUT; a completed run, or another
    stage's run, is never overwritten.
    """
    from alignkit.cai.constitution import load_constitution
    from alignkit.cai.feedback import (label_pairs, order_consistency, position_bias,
                                       preference_row)
    from alignkit.cai.lm import ChatLM
    from alignkit.cai.prompts import template_digest
    from alignkit.cai.runs import (ensure_new, fail, finish, restart_unfinished, start,
                                   world_policy_entry)

    cfg = config if isinstance(config, LabelConfig) else LabelConfig.model_validate(config)
    out = Path(out_dir)
    constitution = load_constitution(cfg.constitution)
    try:
        comps = (list(constitution.comparisons) if cfg.comparisons is None
                 else [constitution.comparison(c) for c in cfg.comparisons])
    except KeyError as e:
        raise ConfigError(f"comparisons: {e.args[0]}") from None
    if cfg.per_pair is not None and cfg.per_pair > len(comps):
        raise ConfigError(f"per_pair is {cfg.per_pair} but only {len(comps)} comparison "
                          "principles are selected")
    if resume:
        restart_unfinished(out, "cai-label", LABEL_FILES)
    ensure_new(out)  # before the quarantine file is written into OUT
    out.mkdir(parents=True, exist_ok=True)
    pairs, to_sample, data_entry = load_pairs(cfg, out / "quarantine.jsonl")
    if cfg.max_pairs is not None:
        pick = lambda xs: [xs[i] for i in sorted(random.Random(f"cai-label-{cfg.seed}").sample(  # noqa: E731
            range(len(xs)), min(cfg.max_pairs, len(xs))))]
        pairs, to_sample = pick(pairs), pick(to_sample)
    feedback = ChatLM.load(cfg.feedback_model, cfg.template)
    policy = ChatLM.load(cfg.policy_model, cfg.policy_template) if cfg.policy_model else None
    tpl_digest = template_digest(cfg.prompts, constitution, feedback.template.digest)
    inputs = {"constitution": constitution.manifest_entry(cfg.constitution), "data": data_entry,
              "feedback_model": {"spec": cfg.feedback_model, "digest": feedback.digest}}
    if policy is not None:
        inputs["policy_model"] = {"spec": cfg.policy_model, "digest": policy.digest}
    start(out, "cai-label", cfg.model_dump(mode="json"), seed=cfg.seed, inputs=inputs,
          base_model={"spec": cfg.feedback_model, "digest": feedback.digest},
          template={"name": feedback.template.name, "digest": feedback.template.digest,
                    "cai_prompts_digest": tpl_digest},
          decode={**cfg.decode.model_dump(mode="json"), "digest": cfg.decode.digest}
          if policy is not None else None,
          policy=world_policy_entry() if cfg.data == WORLD else None,
          model_path=cfg.feedback_model)
    try:
        identical = empty = 0
        if to_sample:
            sampled, identical, empty = sample_pairs(to_sample, policy, cfg.decode)
            pairs = pairs + sampled
        if not pairs:
            raise ConfigError("no pairs to label (every sampled pair was identical, or the "
                              "data selected nothing)")
        labels = label_pairs(lambda convs: feedback.choice_logprobs(convs, cfg.prompts.choices),
                             pairs, comps, cfg.prompts, clamp_to=cfg.clamp,
                             per_pair=cfg.per_pair, seed=cfg.seed)
        provenance = {"feedback_model": feedback.digest, "constitution": constitution.digest,
                      "template": tpl_digest,
                      **({"policy_model": policy.digest} if policy is not None else {})}
        rows = [preference_row(p, lab, provenance) for p, lab in zip(pairs, labels)]
        out.mkdir(parents=True, exist_ok=True)
        data_path = out / "preferences.jsonl"
        with open(data_path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        report = agreement_report(rows)
        (out / "cai_eval.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        metrics = {"n_pairs": float(len(rows)), "identical_dropped": float(identical),
                   "empty_dropped": float(empty),
                   "mean_confidence": sum(abs(lab.prob_a - 0.5) for lab in labels) / len(labels),
                   "position_bias": position_bias(labels),
                   "order_consistency": order_consistency(labels),
                   "ties": float(sum(lab.choice is None for lab in labels))}
        if report:
            a = report["cai/agreement"]
            metrics.update({"agreement": a["value"], "agreement_lo": a["lo"],
                            "agreement_hi": a["hi"], "agreement_n": float(a["n"])})
        finish(out, metrics, {"preferences": data_path})
    except BaseException as err:
        fail(out, err)
        raise
    return metrics


__all__ = ["LABEL_FILES", "LabelConfig", "agreement_report", "label", "load_pairs", "sample_pairs"]
