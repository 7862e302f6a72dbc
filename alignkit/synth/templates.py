"""Instruction templates and how one example is rendered: zero/few-shot, with/without options.

FLAN (Wei et al. 2022, "Finetuned Language Models Are Zero-Shot Learners", §2.2) writes each
task through several natural-language templates, lists the answer options of tasks with a
small answer set ("OPTIONS: - yes - no"), and also trains few-shot forms where k solved
exemplars of the same task precede the target. This module does the rendering; which rows
and templates are used is `alignkit.synth.mix`'s business.

A template renders a task row (its ``fields`` and its ``answer``) into a conversation that ends
with the assistant's answer. The two few-shot forms:

- ``inline`` (FLAN's form): one user message holding the exemplars, each as its turns on
  separate lines (a blank line after a turn of several lines, such as one ending with an
  options list), separated by blank lines, then the target question;
- ``chat``: each exemplar as its own user/assistant turns before the target conversation
  (the "few-shot as multi-turn" form of lm-evaluation-harness).

With options, every instance (exemplars too) ends its last user message with

    OPTIONS:
    - first option
    - second option

    >>> t = InstructionTemplate("q", "What is {a} plus {b}?")
    >>> conv = t.render({"a": "2", "b": "3"}, "5")
    >>> [m["content"] for m in conv]
    ['What is 2 plus 3?', '5']
    >>> few = fewshot([t.render({"a": "1", "b": "1"}, "2")], conv, "inline")
    >>> few[0]["content"]
    'What is 1 plus 1?\\n2\\n\\nWhat is 2 plus 3?'
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FEWSHOT_FORMATS = ("inline", "chat")


@dataclass(frozen=True)
class InstructionTemplate:
    """How one task row becomes a conversation.

    `user` is a `str.format` pattern over the row's fields; `user_no_input` replaces it for
    rows whose ``input`` field is empty (instruction-only rows). `followup` makes a two-turn
    conversation: user(`user`), assistant(fields["first_answer"]), user(`followup`), then the
    answer (the world's multi-turn family).
    """

    id: str
    user: str
    user_no_input: str | None = None
    followup: str | None = None

    def render(self, fields: Mapping[str, str], answer: str) -> list[dict]:
        pattern = self.user
        if self.user_no_input is not None and not fields.get("input"):
            pattern = self.user_no_input
        messages = [{"role": "user", "content": pattern.format(**fields)}]
        if self.followup is not None:
            messages += [{"role": "assistant", "content": fields["first_answer"]},
                         {"role": "user", "content": self.followup}]
        messages.append({"role": "assistant", "content": answer})
        return messages


# Templates for user task files with instruction / input / output rows. The instruction
# comes first or last and the input is labelled or not, so a model does not tie a task to one
# wording (FLAN §2.2 uses ten per dataset, some of them "turned around"; we keep four generic
# ones because a user file carries its own instruction).
GENERIC_TEMPLATES: tuple[InstructionTemplate, ...] = (
    InstructionTemplate("plain", "{instruction}\n\n{input}", "{instruction}"),
    InstructionTemplate("labelled", "Instruction: {instruction}\nInput: {input}",
                        "Instruction: {instruction}"),
    InstructionTemplate("input_first", "{input}\n\n{instruction}", "{instruction}"),
    InstructionTemplate("task_answer", "Task: {instruction}\n\n{input}\n\nGive the answer.",
                        "Task: {instruction}\n\nGive the answer."),
)


def with_options(conversation: list[dict], options: Sequence[str]) -> list[dict]:
    """A copy of `conversation` whose last user message lists `options` (FLAN's format)."""
    out = [dict(m) for m in conversation]
    last_user = max(i for i, m in enumerate(out) if m["role"] == "user")
    listing = "\n".join(f"- {o}" for o in options)
    out[last_user]["content"] = f"{out[last_user]['content']}\n\nOPTIONS:\n{listing}"
    return out


def _flatten(conversation: list[dict]) -> str:
    # A turn that spans several lines (e.g. ends with an options list) is followed by a blank
    # line, so the next turn (the answer) does not read as one more option.
    text = conversation[0]["content"]
    for prev, m in zip(conversation, conversation[1:]):
        text += ("\n\n" if "\n" in prev["content"] else "\n") + m["content"]
    return text


def fewshot(exemplars: Sequence[list[dict]], target: list[dict], form: str) -> list[dict]:
    """The target conversation preceded by solved exemplars (see the module docstring)."""
    if form not in FEWSHOT_FORMATS:
        raise ValueError(f"few-shot format must be one of {FEWSHOT_FORMATS}, got {form!r}")
    if not exemplars:
        return [dict(m) for m in target]
    if form == "chat":
        return [dict(m) for conv in exemplars for m in conv] + [dict(m) for m in target]
    out = [dict(m) for m in target]
    shots = "\n\n".join(_flatten(conv) for conv in exemplars)
    out[0]["content"] = f"{shots}\n\n{out[0]['content']}"
    return out
