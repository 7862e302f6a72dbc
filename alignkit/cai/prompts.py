"""The prompts of Constitutional AI as chat conversations, and the digest of their template.

Bai et al. 2022 ("Constitutional AI", arXiv:2212.08073) write critique and revision prompts as
one running dialogue (§3.1):

    Human: <red-team prompt>            Assistant: <reply>
    Human: <critique request>           Assistant: <critique>
    Human: <revision request>           Assistant: <revision>

with few-shot demonstrations of the same shape in front. Here every turn is a chat message, so
any chat template (the world's ChatML, SmolLM2's) renders it, and few-shot demonstrations are
earlier turns of the same conversation. Deliberate deviation: each round critiques the *latest*
revision as if it were the assistant's reply, instead of appending every round to one ever
longer context, so that four rounds fit the world model's 512 positions.

The feedback prompt (§4.1) is one user message that writes the conversation out and ends in a
multiple-choice question; the assistant's answer is one of `choices` ("A" / "B"):

    Consider the following conversation between a person and an assistant:
    Human: ...
    <question of a comparison principle>
    Options:
    (A) <reply a>
    (B) <reply b>
    The answer is:

Everything that shapes these prompts apart from the principles themselves (the feedback
format, the answer strings, speaker names, the few-shot demonstrations used and the chat
template) is digested into `template_digest` ("tpl-…"), recorded in each row's provenance.

    >>> from alignkit.cai.constitution import load_constitution
    >>> c = load_constitution()
    >>> conv = critique_conversation([{"role": "user", "content": "Hi"}], "Hello.",
    ...                              c.principle("harm"), examples=())
    >>> [m["role"] for m in conv]
    ['user', 'assistant', 'user']
"""
from __future__ import annotations

from typing import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alignkit.cai.constitution import Constitution, Example, Principle
from alignkit.contract.digest import digest_obj

Messages = list[dict]

FEEDBACK_FORMAT = (
    "Consider the following conversation between a person and an assistant:\n"
    "{conversation}\n"
    "{question}\n"
    "Options:\n"
    "(A) {a}\n"
    "(B) {b}\n"
    "The answer is:"
)
FEEDBACK_FIELDS = ("{conversation}", "{question}", "{a}", "{b}")


class PromptSpec(BaseModel):
    """How the CAI prompts are written (besides the constitution's own texts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feedback_format: str = FEEDBACK_FORMAT  # needs {conversation}, {question}, {a}, {b}
    choices: tuple[str, str] = ("A", "B")  # the assistant's answer naming option (A) / option (B)
    human: str = Field("Human", min_length=1)  # speaker name of user turns in the written-out conversation
    assistant: str = Field("Assistant", min_length=1)  # speaker name of assistant turns
    few_shot: int = Field(1, ge=0)  # constitution examples put before each critique/revision prompt

    @field_validator("feedback_format")
    @classmethod
    def _fields(cls, v: str) -> str:
        missing = [f for f in FEEDBACK_FIELDS if f not in v]
        if missing:
            raise ValueError(f"feedback_format lacks {missing}")
        return v

    @field_validator("choices")
    @classmethod
    def _distinct(cls, v: tuple[str, str]) -> tuple[str, str]:
        if not v[0] or not v[1] or v[0] == v[1]:
            raise ValueError(f"choices must be two different non-empty strings, got {list(v)}")
        return v


def template_digest(spec: PromptSpec, constitution: Constitution, chat_template_digest: str) -> str:
    """'tpl-…' over the prompt spec, the few-shot examples it uses and the chat template."""
    return digest_obj({"prompts": spec.model_dump(mode="json"),
                       "examples": [e.model_dump(mode="json") for e in
                                    few_shot_examples(constitution, spec.few_shot)],
                       "chat_template": chat_template_digest}, "template")


def few_shot_examples(constitution: Constitution, k: int) -> tuple[Example, ...]:
    """The first `k` examples of the constitution (fewer if it has fewer)."""
    return tuple(constitution.examples[:k])


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def demonstration_turns(examples: Sequence[Example], constitution: Constitution) -> Messages:
    """Each example as six turns: request, reply, critique request, critique, revision request,
    revision."""
    turns: Messages = []
    for ex in examples:
        p = constitution.principle(ex.principle)
        turns += [_user(ex.prompt), _assistant(ex.response), _user(p.critique_request),
                  _assistant(ex.critique), _user(p.revision_request), _assistant(ex.revision)]
    return turns


def critique_conversation(prompt: Sequence[Mapping], response: str, principle: Principle, *,
                          examples: Messages | Sequence = ()) -> Messages:
    """[demonstrations] + prompt + reply + critique request; the model's answer is the critique.

    `examples` are demonstration turns (from `demonstration_turns`) or an empty sequence.
    """
    return [*map(dict, examples), *map(dict, prompt), _assistant(response),
            _user(principle.critique_request)]


def revision_conversation(prompt: Sequence[Mapping], response: str, principle: Principle,
                          critique: str, *, examples: Messages | Sequence = ()) -> Messages:
    """The critique conversation + critique + revision request; the answer is the revision."""
    return [*critique_conversation(prompt, response, principle, examples=examples),
            _assistant(critique), _user(principle.revision_request)]


def transcript(messages: Sequence[Mapping], spec: PromptSpec) -> str:
    """'Human: …' / 'Assistant: …' lines; a system message is written as its plain text."""
    names = {"user": spec.human, "assistant": spec.assistant}
    lines = []
    for m in messages:
        name = names.get(m["role"])
        lines.append(f"{name}: {m['content']}" if name else str(m["content"]))
    return "\n".join(lines)


def feedback_conversation(prompt: Sequence[Mapping], a: str, b: str, question: str,
                          spec: PromptSpec) -> Messages:
    """One user message asking which of replies a (option A) and b (option B) is better."""
    text = spec.feedback_format.format(conversation=transcript(prompt, spec), question=question,
                                       a=a, b=b)
    return [_user(text)]


__all__ = ["FEEDBACK_FORMAT", "Messages", "PromptSpec", "critique_conversation",
           "demonstration_turns", "feedback_conversation", "few_shot_examples",
           "revision_conversation", "template_digest", "transcript"]
