"""The built-in world's written safety policy: categories of disallowed help and a rubric.

The policy is a versioned YAML file shipped with the package (`policy_v1.yaml`). It is parsed
into a strict, frozen `Policy`; its `digest` ("pol-…", sha256 over the canonical JSON of the
parsed content, so comments and key order do not count) is what a manifest records.

    >>> p = load_policy()
    >>> p.id, p.version, p.digest[:4]
    ('world-policy', 1, 'pol-')
    >>> p.category_ids
    ('poison', 'theft', 'weapons', 'arson', 'deception')
    >>> p.refusal
    "I can't help with that."
"""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alignkit.contract.digest import digest_obj
from alignkit.data.yaml_lines import parse_yaml_model
from alignkit.errors import DataError

DEFAULT_POLICY = "policy_v1.yaml"


class Category(BaseModel):
    """One category of help the world's assistant declines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z_]*$")  # stable name used in data rows ("category")
    description: str = Field(min_length=1)  # what help is disallowed, in one sentence
    examples: tuple[str, ...] = Field(min_length=1)  # short illustrations (not training data)
    alternative: str = Field(min_length=1)  # safe alternative appended to a refusal


class Abstentions(BaseModel):
    """Canonical honest answers about entities the world does not contain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    person: str = Field(min_length=1)  # reply to a question about an unknown person
    town: str = Field(min_length=1)  # reply to a question about an unknown town


class Rubric(BaseModel):
    """What compliance and refusal look like, and the exact strings the gold checker accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_compliance: str = Field(min_length=1)  # description for annotators and judges
    full_refusal: str = Field(min_length=1)  # description for annotators and judges
    partial_refusal: str = Field(min_length=1)  # description for annotators and judges
    refusal_style: str = Field(min_length=1)  # how the aligned assistant refuses
    refusals: tuple[str, ...] = Field(min_length=1)  # canonical refusals; the first is trained on
    compliance_markers: tuple[str, ...] = ()  # phrases that show help given despite a refusal
    abstentions: Abstentions  # canonical "I don't know" replies


class Policy(BaseModel):
    """A versioned policy: id, version, principles, categories and rubric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)  # policy family name, e.g. "world-policy"
    version: int = Field(ge=1)  # bumped on every content change that is meant
    principles: str = Field(min_length=1)  # the policy in prose
    categories: tuple[Category, ...] = Field(min_length=1)  # disallowed help, in file order
    rubric: Rubric  # grading rules and canonical strings

    @model_validator(mode="after")
    def _unique_category_ids(self) -> "Policy":
        ids = [c.id for c in self.categories]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate category ids: {dupes}")
        return self

    @property
    def digest(self) -> str:
        """'pol-' + 12 hex digits of sha256 over the canonical JSON of the parsed policy."""
        return digest_obj(self.model_dump(mode="json"), "policy")

    @property
    def category_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.categories)

    def category(self, category_id: str) -> Category:
        for c in self.categories:
            if c.id == category_id:
                return c
        raise KeyError(f"policy {self.id} v{self.version} has no category {category_id!r}; "
                       f"known: {list(self.category_ids)}")

    @property
    def refusal(self) -> str:
        """The refusal the aligned assistant is trained to give (the first canonical one)."""
        return self.rubric.refusals[0]

    def refusal_for(self, category_id: str) -> str:
        """Refusal plus the category's safe alternative: the ideal reply to an unsafe request."""
        return f"{self.refusal} {self.category(category_id).alternative}"


def load_policy(path: str | Path | None = None) -> Policy:
    """Parse and validate a policy file; `None` loads the built-in `policy_v1.yaml`.

    Errors name the file, the line and the field (`DataError`).
    """
    if path is None:
        return _builtin_policy()
    return _load(Path(path))


@lru_cache(maxsize=1)
def _builtin_policy() -> Policy:
    resource = files("alignkit.world") / DEFAULT_POLICY
    return _parse(resource.read_text(encoding="utf-8"), f"alignkit/world/{DEFAULT_POLICY}")


def _load(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read policy file: {e}", file=str(path)) from e
    return _parse(text, str(path))


def _parse(text: str, source: str) -> Policy:
    return parse_yaml_model(text, source, Policy, "policy")

