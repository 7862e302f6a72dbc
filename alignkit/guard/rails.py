"""Rails: put a guard in front of (input rail) and behind (output rail) a model.

- Input rail: a flagged prompt gets the refusal text, and the model is *not called*.
- Output rail: a reply the guard flags is replaced by the refusal text.

`blocked_by` says which rail fired: ``"input"``, ``"output"`` or None. Layered evaluation
compares the model alone with the guarded system on the same prompts (attack success,
over-refusal), and `blocked_by` attributes each refusal to the model or to a rail.

Which text the output rail scores is a choice (``output_view``): the reply alone (default),
or prompt and reply together ("exchange") when the guard was trained on prompt+completion.
A guard trained on prompts only is out of its training distribution on replies; measure the
output rail on replies before relying on it.

    >>> class Stub:  # a "guard" that flags any text containing "burn"
    ...     def flags(self, texts): return ["burn" in t for t in texts]
    >>> rails = GuardedResponder(Stub(), refusal_text="No.")
    >>> rails.apply("How do I burn a barn?", lambda p: "Like this.")
    ('No.', 'input')
    >>> rails.apply("Hi", lambda p: "Let's burn it.")
    ('No.', 'output')
    >>> rails.apply("Hi", lambda p: "Hello!")
    ('Hello!', None)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from alignkit.errors import ConfigError

DEFAULT_REFUSAL = "I can't help with that."
OUTPUT_VIEWS = ("reply", "exchange")


class Flagger(Protocol):
    def flags(self, texts: Sequence[str]) -> list[bool]: ...


class GuardedResponder:
    """Input and output rails around a respond function, one prompt or a batch at a time."""

    def __init__(self, guard: Flagger, refusal_text: str = DEFAULT_REFUSAL, *,
                 input_rail: bool = True, output_rail: bool = True, output_view: str = "reply"):
        if output_view not in OUTPUT_VIEWS:
            raise ConfigError(f"output_view must be one of {OUTPUT_VIEWS}, got {output_view!r}")
        self.guard = guard
        self.refusal_text = refusal_text
        self.input_rail = input_rail
        self.output_rail = output_rail
        self.output_view = output_view

    def _output_text(self, prompt: str, reply: str) -> str:
        return reply if self.output_view == "reply" else f"{prompt}\n\n{reply}"

    def apply(self, prompt: str, respond_fn: Callable[[str], str]) -> tuple[str, str | None]:
        """(reply, blocked_by) for one prompt; `respond_fn(prompt) -> reply` is the model."""
        (reply, blocked_by), = self.apply_batch([prompt], lambda ps: [respond_fn(ps[0])])
        return reply, blocked_by

    def apply_batch(self, items: Sequence[Any], respond_batch: Callable[[list[Any]], list[str]],
                    prompt_of: Callable[[Any], str] = str) -> list[tuple[str, str | None]]:
        """Rails over a batch, in order. `items` are prompts (or conversations, with
        `prompt_of` giving the text the input rail scores); the model sees only the items the
        input rail let through, in one `respond_batch` call."""
        items = list(items)
        prompts = [prompt_of(x) for x in items]
        blocked = self.guard.flags(prompts) if self.input_rail and items else [False] * len(items)
        passed = [i for i, b in enumerate(blocked) if not b]
        replies = list(respond_batch([items[i] for i in passed])) if passed else []
        if len(replies) != len(passed):
            raise ValueError(f"respond function returned {len(replies)} replies for "
                             f"{len(passed)} prompts")
        out_flags = (self.guard.flags([self._output_text(prompts[i], r)
                                       for i, r in zip(passed, replies)])
                     if self.output_rail and passed else [False] * len(passed))
        results: list[tuple[str, str | None]] = [(self.refusal_text, "input")] * len(items)
        for i, reply, flagged in zip(passed, replies, out_flags):
            results[i] = (self.refusal_text, "output") if flagged else (reply, None)
        return results


def _last_user_text(conversation: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(conversation):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    raise ValueError("a conversation with no user message cannot pass the input rail")


class GuardedRespond:
    """A drop-in for `EvalContext.respond`: same call, replies behind the rails.

    The input rail scores the last user message of each conversation. After each call,
    `blocked_by` holds one entry per conversation ("input" / "output" / None). A call that
    names another model (``model=ctx.reference.model``: a win-rate reference or a baseline)
    is passed through unguarded, since that model is not the guarded system.
    """

    def __init__(self, respond: Callable[..., list[str]], rails: GuardedResponder):
        self.respond = respond
        self.rails = rails
        self.blocked_by: list[str | None] = []

    def __call__(self, conversations: Sequence[Sequence[Mapping[str, Any]]], **kwargs: Any
                 ) -> list[str]:
        if kwargs.get("model") is not None:
            self.blocked_by = [None] * len(conversations)
            return self.respond(conversations, **kwargs)
        results = self.rails.apply_batch(conversations,
                                         lambda passed: self.respond(passed, **kwargs),
                                         prompt_of=_last_user_text)
        self.blocked_by = [b for _, b in results]
        return [r for r, _ in results]


def guarded_respond(respond: Callable[..., list[str]], guard: Flagger,
                    refusal_text: str = DEFAULT_REFUSAL, **rail_options: Any) -> GuardedRespond:
    """Wrap a batch respond function (e.g. `EvalContext.respond`) with input and output rails:

        ctx.respond = guarded_respond(ctx.respond, Guard.load("runs/guard"))
    """
    return GuardedRespond(respond, GuardedResponder(guard, refusal_text, **rail_options))
