"""A constitution: the written principles that Constitutional AI critiques, revises and compares by.

Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback" (arXiv:2212.08073): the only
human oversight of the harmlessness stage is a short list of principles. Two kinds are used:

- **critique/revision principles** (§3, SL-CAI): a `critique_request` that asks the model to
  point out what is harmful in its last reply, and a `revision_request` that asks it to rewrite
  the reply accordingly. A principle is drawn at random for every round;
- **comparison principles** (§4, RL-CAI): a multiple-choice `question` ("Which of these replies
  is less harmful?") that the feedback model answers with (A) or (B).

Optional `examples` are few-shot demonstrations of one critique -> revision round, written
into the prompts before the real conversation (the paper prepends a few such examples).

The file is YAML, validated strictly (unknown keys, empty texts, duplicate or dangling ids are
errors naming the file, the line and the field). Its `digest` ("const-…", sha256 over the
canonical JSON of the parsed content: comments and key order do not count) goes into every
manifest of a run that used it.

Two constitutions ship with the package: ``builtin:world`` (`constitution_v1.yaml`, short
requests in the built-in world's vocabulary, so its tiny model can be taught them) and
``builtin:english`` (`constitution_en_v1.yaml`, principles paraphrased from Bai et al. 2022,
Appendix C, for real models).

    >>> c = load_constitution()
    >>> c.id, c.version, c.digest[:6]
    ('world-constitution', 1, 'const-')
    >>> c.principle(c.principle_ids[0]).id == c.principle_ids[0]
    True
"""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import (BaseModel, ConfigDict, Field, ValidationInfo,
                      field_validator)

from alignkit.contract.digest import digest_obj
from alignkit.data.yaml_lines import parse_yaml_model
from alignkit.errors import DataError

BUILTIN = {"builtin:world": "constitution_v1.yaml", "builtin:english": "constitution_en_v1.yaml"}
DEFAULT = "builtin:world"
ID_PATTERN = r"^[a-z][a-z0-9_]*$"


class Principle(BaseModel):
    """One critique/revision principle (SL-CAI)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)  # stable name recorded in each row's provenance
    critique_request: str = Field(min_length=1)  # asks for a critique of the last reply
    revision_request: str = Field(min_length=1)  # asks for a rewrite that fixes what the critique found


class Comparison(BaseModel):
    """One comparison principle (RL-CAI / RLAIF): a question answered with (A) or (B)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)  # stable name recorded in each label's provenance
    question: str = Field(min_length=1)  # e.g. "Which reply is less harmful?"


class Example(BaseModel):
    """A few-shot demonstration of one critique -> revision round."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    principle: str = Field(pattern=ID_PATTERN)  # whose critique/revision requests frame it
    prompt: str = Field(min_length=1)  # the user's request
    response: str = Field(min_length=1)  # the reply being critiqued
    critique: str = Field(min_length=1)  # the demonstrated critique
    revision: str = Field(min_length=1)  # the demonstrated revision


class Constitution(BaseModel):
    """A versioned constitution: critique/revision principles, comparison principles, examples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)  # family name, e.g. "world-constitution"
    version: int = Field(ge=1)  # bumped on every meant change of content
    description: str = ""  # what it is for, in prose (counts towards the digest)
    principles: tuple[Principle, ...] = Field(min_length=1)  # critique/revision principles
    comparisons: tuple[Comparison, ...] = Field(min_length=1)  # feedback questions
    examples: tuple[Example, ...] = ()  # few-shot critique/revision demonstrations

    @field_validator("principles", "comparisons")
    @classmethod
    def _unique_ids(cls, items: tuple, info: ValidationInfo) -> tuple:
        ids = [p.id for p in items]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate {info.field_name} ids: {dupes}")
        return items

    @field_validator("examples")
    @classmethod
    def _known_principles(cls, examples: tuple, info: ValidationInfo) -> tuple:
        known = {p.id for p in info.data.get("principles", ())}  # empty if principles failed
        for k, ex in enumerate(examples):
            if known and ex.principle not in known:
                raise ValueError(f"examples[{k}].principle {ex.principle!r} is not a principle "
                                 f"id; known: {sorted(known)}")
        return examples

    @property
    def digest(self) -> str:
        """'const-' + 12 hex digits of sha256 over the canonical JSON of the parsed content."""
        return digest_obj(self.model_dump(mode="json"), "constitution")

    @property
    def principle_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.principles)

    @property
    def comparison_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.comparisons)

    def principle(self, principle_id: str) -> Principle:
        for p in self.principles:
            if p.id == principle_id:
                return p
        raise KeyError(f"constitution {self.id} v{self.version} has no principle "
                       f"{principle_id!r}; known: {list(self.principle_ids)}")

    def comparison(self, comparison_id: str) -> Comparison:
        for c in self.comparisons:
            if c.id == comparison_id:
                return c
        raise KeyError(f"constitution {self.id} v{self.version} has no comparison "
                       f"{comparison_id!r}; known: {list(self.comparison_ids)}")

    def manifest_entry(self, source: str) -> dict[str, Any]:
        """What a manifest records under inputs['constitution']."""
        return {"source": source, "name": self.id, "version": self.version, "digest": self.digest}


# ------------------------------------------------------------------------------ loading

def load_constitution(source: str | Path | None = None) -> Constitution:
    """Parse and validate a constitution: a YAML path, ``builtin:world`` (the default, also for
    None) or ``builtin:english``. Errors name the file, the line and the field (`DataError`)."""
    name = DEFAULT if source is None else str(source)
    if name in BUILTIN:
        return _builtin(name)
    if name.startswith("builtin:"):
        raise DataError(f"unknown built-in constitution {name!r}; known: {sorted(BUILTIN)}",
                        file=name)
    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read constitution file: {e}", file=str(path)) from e
    return parse_constitution(text, str(path))


@lru_cache(maxsize=len(BUILTIN))
def _builtin(name: str) -> Constitution:
    filename = BUILTIN[name]
    text = (files("alignkit.cai") / filename).read_text(encoding="utf-8")
    return parse_constitution(text, f"alignkit/cai/{filename}")


def parse_constitution(text: str, source: str = "<constitution>") -> Constitution:
    """Validate YAML text; `source` names it in errors."""
    return parse_yaml_model(text, source, Constitution, "constitution")


__all__ = ["BUILTIN", "Comparison", "Constitution", "Example", "Principle", "load_constitution",
           "parse_constitution"]
