"""The built-in world as one object: facts, pretraining corpus, SFT and held-out task data.

    >>> from alignkit.world.build import WorldConfig, build_world
    >>> w = build_world(WorldConfig(corpus_passes=1, sft_per_family=2, heldout_per_family=2))
    >>> len(w.heldout) == 2 * len(w.families)
    True
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from alignkit.world.corpus import make_corpus
from alignkit.world.facts import Facts, make_facts
from alignkit.world.tasks import FAMILIES, make_task_examples


class WorldConfig(BaseModel):
    """What the generator makes; every field changes the world's digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0  # one seed for facts, corpus, and task sampling
    n_people: int = Field(96, ge=8)  # people in the world; 37.5% are held out of SFT
    n_towns: int = Field(16, ge=4)  # towns, each in one of four regions
    corpus_passes: int = Field(14, ge=1)  # times every fact is re-phrased in the corpus
    sft_per_family: int = Field(300, ge=1)  # SFT examples per task family
    heldout_per_family: int = Field(30, ge=1)  # held-out evaluation examples per family
    vocab_size: int = Field(2048, ge=300)  # BPE vocabulary of the world tokenizer


@dataclass
class World:
    config: WorldConfig
    facts: Facts
    corpus: list[str]        # pretraining documents (prose; no chat format)
    sft: list[dict]          # {"messages", "answer", "family", "split"}, train entities/phrasings
    heldout: list[dict]      # same form, held-out entities and phrasings only

    @property
    def families(self) -> list[str]:
        return list(FAMILIES)

    def tokenizer_texts(self) -> list[str]:
        """Text the world tokenizer is trained on: the corpus and the SFT conversations."""
        roles = ["user\n assistant\n system\n"] * 100  # so role names become single tokens
        return self.corpus + roles + [m["content"] for row in self.sft for m in row["messages"]]


@lru_cache(maxsize=4)
def build_world(config: WorldConfig = WorldConfig()) -> World:
    facts = make_facts(config.seed, n_people=config.n_people, n_towns=config.n_towns)
    return World(
        config=config, facts=facts,
        corpus=make_corpus(facts, seed=config.seed, passes=config.corpus_passes),
        sft=make_task_examples(facts, split="train", per_family=config.sft_per_family,
                               seed=config.seed),
        heldout=make_task_examples(facts, split="heldout", per_family=config.heldout_per_family,
                                   seed=config.seed),
    )
