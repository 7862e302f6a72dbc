"""SL-CAI (Bai et al. 2022, "Constitutional AI", §3): critique -> revise, then supervised data.

For each red-team prompt x the helpful model samples a reply y₀; then for rounds r = 1..N
(default 4) a principle P_r is drawn at random from the constitution and the same model writes

    c_r = critique of y_{r-1} under P_r      (critique conversation, `alignkit.cai.prompts`)
    y_r = revision of y_{r-1} given c_r      (revision conversation)

The final revisions y_N become SFT rows ``{"messages": x + [assistant: y_N]}``, mixed with the
model's own replies to helpful prompts (the paper mixes in helpful samples so that the SL-CAI
model stays helpful). Every row carries its provenance: the model's digest, the constitution
and prompt-template digests, the principle ids drawn and the number of revision rounds.

Deliberate choices, written down:
- each round critiques the latest revision alone (not the whole running dialogue), see
  `alignkit.cai.prompts`;
- an empty revision (the model stopped at once) keeps the previous reply for the next round and
  is counted (`empty_revisions`), rather than training on an empty reply;
- a row whose reply is still empty (an empty original never revised into text, or an empty
  helpful reply) is left out of OUT/sl_data.jsonl and counted (`dropped_empty_rows`).

Python: `alignkit.cai.sl.sl(config, out_dir)`; pipeline stage kind `cai_sl`; command line:
`alignkit cai sl --config CFG --out DIR`.
Writes OUT/sl_data.jsonl (the SFT rows), OUT/trajectories.jsonl (every reply, critique and
revision) and OUT/manifest.json; on world prompts also the gold grader's verdict on originals
and revisions (``world/*`` metrics, OUT/cai_eval.json with Wilson intervals).

    >>> canned = lambda convs: ["ok"] * len(convs)
    >>> from alignkit.cai.constitution import load_constitution
    >>> t = critique_revise(canned, [[{"role": "user", "content": "hi"}]], load_constitution(),
    ...                     rounds=2, spec=PromptSpec(few_shot=0), rng=random.Random(0))
    >>> len(t[0].rounds), t[0].final
    (2, 'ok')
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from alignkit.cai.constitution import Constitution
from alignkit.cai.prompts import (Messages, PromptSpec, critique_conversation,
                                  demonstration_turns, few_shot_examples, revision_conversation)
from alignkit.cai.world import WORLD, WorldRows
from alignkit.contract.specs import DecodeSpec

# conversations -> one reply per conversation (the model, or canned text in tests)
Generator = Callable[[Sequence[Messages]], Sequence[str]]


class SLConfig(BaseModel):
    """Settings of `alignkit cai sl`. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str = "builtin:world-tiny"  # the helpful model that answers, critiques and revises
    constitution: str = "builtin:world"  # YAML file, builtin:world or builtin:english
    red_team: str = WORLD  # red-team prompts: a file (prompt / messages / preference rows) or builtin:world
    helpful: str | None = WORLD  # helpful prompts whose replies are mixed in unchanged; None = none
    world_red_team: WorldRows = WorldRows(types=["unsafe_direct", "jailbreak/"])  # builtin:world red-team rows (label unsafe)
    world_helpful: WorldRows = WorldRows(types=["benign_lookalike/"])  # builtin:world helpful rows (label safe)
    max_red_team: int | None = Field(None, ge=1)  # keep at most this many red-team prompts (seeded sample)
    max_helpful: int | None = Field(None, ge=0)  # keep at most this many helpful prompts
    rounds: int = Field(4, ge=1)  # critique -> revision rounds per red-team prompt
    prompts: PromptSpec = PromptSpec()  # prompt formats and number of few-shot examples
    template: str | None = None  # chat template (None = the tokenizer's own)
    decode: DecodeSpec = DecodeSpec(max_new_tokens=64)  # replies, critiques and revisions (greedy by default)
    seed: int = 0  # principle draws and prompt sampling


# ------------------------------------------------------------------------------ the loop

@dataclass
class Trajectory:
    """One red-team prompt through the loop."""

    prompt: Messages
    original: str
    rounds: list[dict] = field(default_factory=list)  # {"principle", "critique", "revision", "empty"}

    @property
    def final(self) -> str:
        """The last non-empty revision (the original if every revision was empty)."""
        for r in reversed(self.rounds):
            if not r["empty"]:
                return r["revision"]
        return self.original

    @property
    def principle_ids(self) -> list[str]:
        return [r["principle"] for r in self.rounds]


def critique_revise(generate: Generator, prompts: Sequence[Messages],
                    constitution: Constitution, *, rounds: int, spec: PromptSpec,
                    rng: random.Random) -> list[Trajectory]:
    """Run the SL-CAI loop on `prompts`; each step is one batched `generate` call.

    Calls, in order: the replies; then per round the critiques, then the revisions — so
    `1 + 2·rounds` calls whatever the number of prompts.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    demos = demonstration_turns(few_shot_examples(constitution, spec.few_shot), constitution)
    prompts = [list(p) for p in prompts]
    originals = list(generate(prompts))
    _check_count(originals, prompts, "replies")
    trajs = [Trajectory(p, y) for p, y in zip(prompts, originals)]
    for _ in range(rounds):
        principles = [rng.choice(constitution.principles) for _ in trajs]
        current = [t.final for t in trajs]
        critiques = list(generate([critique_conversation(t.prompt, y, p, examples=demos)
                                   for t, y, p in zip(trajs, current, principles)]))
        _check_count(critiques, prompts, "critiques")
        revisions = list(generate([revision_conversation(t.prompt, y, p, c, examples=demos)
                                   for t, y, p, c in zip(trajs, current, principles, critiques)]))
        _check_count(revisions, prompts, "revisions")
        for t, p, c, rev in zip(trajs, principles, critiques, revisions):
            t.rounds.append({"principle": p.id, "critique": c, "revision": rev,
                             "empty": not rev.strip()})
    return trajs


def _check_count(out: Sequence, prompts: Sequence, what: str) -> None:
    if len(out) != len(prompts):
        raise ValueError(f"the generator returned {len(out)} {what} for {len(prompts)} prompts")


def sl_rows(trajs: Sequence[Trajectory], helpful: Sequence[tuple[Messages, str]],
            provenance: dict, metas: Sequence[dict] = (),
            helpful_metas: Sequence[dict] = ()) -> list[dict]:
    """SFT rows: final revisions (`source: sl-cai/revision`) then helpful replies
    (`source: sl-cai/helpful`, round 0), each with `provenance`."""
    rows = []
    for k, t in enumerate(trajs):
        meta = dict(metas[k]) if k < len(metas) else {}
        rows.append({**meta, "messages": [*t.prompt, {"role": "assistant", "content": t.final}],
                     "source": "sl-cai/revision",
                     "provenance": {**provenance, "principle_ids": t.principle_ids,
                                    "round": len(t.rounds)}})
    for k, (prompt, reply) in enumerate(helpful):
        meta = dict(helpful_metas[k]) if k < len(helpful_metas) else {}
        rows.append({**meta, "messages": [*prompt, {"role": "assistant", "content": reply}],
                     "source": "sl-cai/helpful",
                     "provenance": {**provenance, "principle_ids": [], "round": 0}})
    return rows


# ------------------------------------------------------------------------------ prompts

def read_prompts(path: str) -> list[tuple[Messages, dict]]:
    """(prompt messages, metadata) from a file: safety/prompt rows (`prompt` string or
    messages), `messages` rows (cut after the last user turn), or preference rows (their prompt)."""
    from alignkit.data.readers import read_records
    from alignkit.errors import DataError

    res = read_records(path)
    out = []
    for i, r in enumerate(res.records, start=1):
        if "messages" in r:
            msgs = list(r["messages"])
            last_user = max((k for k, m in enumerate(msgs) if m["role"] == "user"), default=None)
            if last_user is None:
                raise DataError("a prompt needs a user message", file=path, line=i,
                                field="messages")
            prompt = msgs[:last_user + 1]
        elif "prompt" in r:
            prompt = r["prompt"] if isinstance(r["prompt"], list) else [
                {"role": "user", "content": r["prompt"]}]
        else:
            raise DataError(f"expected prompt rows (prompt or messages), got kind {res.kind!r}",
                            file=path, line=i)
        meta = {k: r[k] for k in ("id", "category", "type", "label") if k in r}
        out.append((prompt, meta))
    return out


def _world_prompts(sel: WorldRows, label: str, seed: int) -> list[tuple[Messages, dict]]:
    from alignkit.cai.world import world_rows

    return [([{"role": "user", "content": r["prompt"]}],
             {k: r[k] for k in ("id", "category", "type", "label") if k in r})
            for r in world_rows(sel, seed=seed) if r["label"] == label]


def _subsample(items: list, n: int | None, seed: str) -> list:
    if n is None or n >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


# ------------------------------------------------------------------------------ world gold

def world_gold_metrics(trajs: Sequence[Trajectory], metas: Sequence[dict]) -> dict[str, dict]:
    """Gold grader on world red-team trajectories: compliance of originals and finals, and the
    share of revisions rated less harmful than their original (harm rank strictly lower)."""
    from alignkit.cai.world import harm_rank
    from alignkit.evals.stats import rate

    world = [(t, m) for t, m in zip(trajs, metas) if m.get("label") == "unsafe"]
    if not world:
        return {}
    orig = [harm_rank(t.original) for t, _ in world]
    final = [harm_rank(t.final) for t, _ in world]
    n = len(world)

    def entry(k: int) -> dict:
        r = rate(k, n)
        return {"value": r.value, "lo": r.lo, "hi": r.hi, "n": n}

    return {"world/original_compliance": entry(sum(o == 2 for o in orig)),
            "world/final_compliance": entry(sum(f == 2 for f in final)),
            "world/original_refusal": entry(sum(o == 0 for o in orig)),
            "world/final_refusal": entry(sum(f == 0 for f in final)),
            "world/revision_less_harmful": entry(sum(f < o for o, f in zip(orig, final))),
            "world/revision_more_harmful": entry(sum(f > o for o, f in zip(orig, final)))}


# ------------------------------------------------------------------------------ stage

SL_FILES = ("sl_data.jsonl", "trajectories.jsonl", "cai_eval.json")  # what a run writes in OUT


def sl(config: SLConfig | dict, out_dir: str | Path, *, resume: bool = False) -> dict[str, float]:
    """Run SL-CAI; returns the summary metrics written to the manifest.

    The shared stage signature (a pipeline stage kind, `cai_sl`). SL-CAI keeps no checkpoint,
    so `resume=True` does not continue an interrupted run: it deletes that run's manifest and
    files (`SL_FILES`) and runs again from scratch in the same OUT (with greedy decoding, the
    default, that gives the same rows: the prompt and principle draws are seeded). A completed
    run in OUT, or another stage's run, is never overwritten, with or without `resume`.
    """
    from alignkit.cai.constitution import load_constitution
    from alignkit.cai.lm import ChatLM
    from alignkit.cai.prompts import template_digest
    from alignkit.cai.runs import fail, finish, restart_unfinished, start, world_policy_entry

    cfg = config if isinstance(config, SLConfig) else SLConfig.model_validate(config)
    out = Path(out_dir)
    if resume:
        restart_unfinished(out, "cai-sl", SL_FILES)
    constitution = load_constitution(cfg.constitution)
    red = (_world_prompts(cfg.world_red_team, "unsafe", cfg.seed) if cfg.red_team == WORLD
           else read_prompts(cfg.red_team))
    red = _subsample(red, cfg.max_red_team, f"cai-sl-red-{cfg.seed}")
    helpful: list[tuple[Messages, dict]] = []
    if cfg.helpful is not None:
        helpful = (_world_prompts(cfg.world_helpful, "safe", cfg.seed) if cfg.helpful == WORLD
                   else read_prompts(cfg.helpful))
        helpful = _subsample(helpful, cfg.max_helpful, f"cai-sl-helpful-{cfg.seed}")
    if not red:
        from alignkit.errors import ConfigError

        raise ConfigError("no red-team prompts selected (check red_team / world_red_team)")
    lm = ChatLM.load(cfg.model, cfg.template)
    tpl_digest = template_digest(cfg.prompts, constitution, lm.template.digest)
    uses_world = WORLD in (cfg.red_team, cfg.helpful)
    start(out, "cai-sl", cfg.model_dump(mode="json"), seed=cfg.seed,
          inputs={"constitution": constitution.manifest_entry(cfg.constitution),
                  "red_team": {"source": cfg.red_team, "n_rows": len(red)},
                  "helpful": {"source": cfg.helpful, "n_rows": len(helpful)}},
          base_model={"spec": cfg.model, "digest": lm.digest},
          template={"name": lm.template.name, "digest": lm.template.digest,
                    "cai_prompts_digest": tpl_digest},
          decode={**cfg.decode.model_dump(mode="json"), "digest": cfg.decode.digest},
          policy=world_policy_entry() if uses_world else None, model_path=cfg.model)

    def generate(convs: Sequence[Messages]) -> list[str]:
        return lm.reply(convs, cfg.decode)

    try:
        trajs = critique_revise(generate, [p for p, _ in red], constitution, rounds=cfg.rounds,
                                spec=cfg.prompts, rng=random.Random(f"cai-sl-{cfg.seed}"))
        helpful_replies = generate([p for p, _ in helpful]) if helpful else []
        provenance = {"model": lm.digest, "constitution": constitution.digest,
                      "template": tpl_digest}
        rows = sl_rows(trajs, list(zip([p for p, _ in helpful], helpful_replies)), provenance,
                       [m for _, m in red], [m for _, m in helpful])
        # An empty reply (every revision and the original empty, or an empty helpful reply) is
        # no SFT target (SFT rejects a blank assistant turn): dropped here, counted in the
        # metrics; trajectories.jsonl still shows it.
        kept = [r for r in rows if r["messages"][-1]["content"].strip()]
        dropped = len(rows) - len(kept)
        rows = kept
        out.mkdir(parents=True, exist_ok=True)
        data_path = out / "sl_data.jsonl"
        _write_jsonl(data_path, rows)
        _write_jsonl(out / "trajectories.jsonl", [
            {**m, "prompt": t.prompt, "original": t.original, "rounds": t.rounds, "final": t.final}
            for t, (_, m) in zip(trajs, red)])
        gold = world_gold_metrics(trajs, [m for _, m in red])
        if gold:
            (out / "cai_eval.json").write_text(json.dumps(gold, indent=2, sort_keys=True))
        metrics = {"n_red_team": float(len(trajs)), "n_helpful": float(len(helpful)),
                   "n_rows": float(len(rows)), "dropped_empty_rows": float(dropped),
                   "changed_by_revision": sum(t.final != t.original for t in trajs) / len(trajs),
                   "empty_revisions": float(sum(r["empty"] for t in trajs for r in t.rounds)),
                   **{k: float(v["value"]) for k, v in gold.items()}}
        finish(out, metrics, {"sl_data": data_path})
    except BaseException as err:
        fail(out, err)
        raise
    return metrics


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


__all__ = ["Generator", "SLConfig", "SL_FILES", "Trajectory", "critique_revise", "read_prompts",
           "sl", "sl_rows", "world_gold_metrics"]
