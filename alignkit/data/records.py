"""Record kinds and their validation (Hugging Face TRL field conventions).

One record is a dict. Six kinds are recognised from their keys:

============== =================================== ==========================================
kind           standard form                        conversational form
============== =================================== ==========================================
text           {"text": str}                        --
messages       --                                   {"messages": [message, ...]}
prompt_        {"prompt": str, "completion": str}   prompt = messages, completion = assistant
completion                                          messages
preference     {"prompt", "chosen", "rejected"}     prompt = messages; chosen/rejected = the
               (implicit: {"chosen", "rejected"})   continuations (implicit: full conversations)
unpaired       {"prompt", "completion",             same keys, messages
               "label": bool}  (KTO)
safety         {"prompt": str, "label": "safe" |    --
               "unsafe", "category", "type"}
============== =================================== ==========================================

A message is ``{"role": "system"|"user"|"assistant"|"tool", "content": str}`` (other keys such
as ``name``, ``tool_calls`` or ``tool_call_id`` are kept).

Role order of a conversation (checked on every message list, and on prompt + continuation):

- ``system`` only as the first message;
- then a ``user`` message (a conversation starts with the user);
- ``user`` is followed by ``assistant``; ``assistant`` by ``user``, ``tool`` or ``assistant``;
  ``tool`` by ``tool`` or ``assistant``.
  Assistant -> assistant is allowed on purpose: a reply split into two messages is real data
  (13 conversations of the HH-RLHF harmless-base test split, including all 5 rows whose chosen
  and rejected differ before the final reply). user -> user is never allowed.
- an assistant message must have non-blank content (unless it carries ``tool_calls``);
- a conversation used for training contains at least one assistant message.

Implicit preferences (no ``prompt``) are turned into the explicit form: for conversations the
prompt is the longest common prefix of messages; for strings the longest common prefix backed
off to the last whitespace so that no word is split (see `split_text_prefix`). Rows whose
conversations differ before their final assistant message are kept (prompt = common prefix,
chosen/rejected = the remaining message lists) and counted as ``divergent_prefix``.

``null`` in an optional or unknown field means "absent" and the key is dropped, so a row read
from Parquet (where a missing field is a null) normalises like the same row read from JSONL.

    >>> validate_record({"chosen": "The sky is blue", "rejected": "The sky is green"}, "preference")
    {'prompt': 'The sky is ', 'chosen': 'blue', 'rejected': 'green'}
    >>> detect_kind({"prompt": "hi", "completion": "hello", "label": True})
    'unpaired'
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from alignkit.errors import DataError

KINDS = ("text", "messages", "prompt_completion", "preference", "unpaired", "safety")
ROLES = ("system", "user", "assistant", "tool")

# The keys that identify each kind. Order matters only for error messages.
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "messages": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "safety": ("prompt", "label"),
}
# A match of the left kind makes the right kinds redundant (their keys are a subset).
_SUBSUMES = {"unpaired": ("prompt_completion", "safety")}

# Optional keys allowed on any row, and the one kind-specific optional key.
OPTIONAL_KEYS = ("tools", "chat_template_kwargs", "id", "source", "category", "weight")
PREFERENCE_ONLY_KEYS = ("margin",)
SAFETY_LABELS = ("safe", "unsafe")

_MISSING = object()


class _Ctx:
    """Where the row came from; every error raised while validating it carries this."""

    __slots__ = ("file", "line")

    def __init__(self, file: str | None, line: int | None):
        self.file = file
        self.line = line

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(message, file=self.file, line=self.line, field=field)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", int: "integer", float: "number", list: "list",
            dict: "object"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------- kind detection


def detect_kind(row: Any, *, file: str | None = None, line: int | None = None) -> str:
    """The record kind named by the keys of `row` (keys whose value is null do not count).

    Raises DataError when no kind or more than one kind matches, listing the key sets.

        >>> detect_kind({"messages": []})
        'messages'
        >>> detect_kind({"prompt": "p", "label": "safe"})
        'safety'
    """
    ctx = _Ctx(file, line)
    if not isinstance(row, Mapping):
        raise ctx.error(f"row is not a JSON object (got {_type_name(row)})")
    keys = {k for k, v in row.items() if v is not None}
    matched = [kind for kind, req in KIND_KEYS.items() if set(req) <= keys]
    for kind, redundant in _SUBSUMES.items():
        if kind in matched:
            matched = [m for m in matched if m not in redundant]
    if len(matched) == 1:
        return matched[0]
    recognised = "; ".join(f"{k}: {{{', '.join(v)}}}" for k, v in KIND_KEYS.items())
    if not matched:
        hint = ""
        if ("chosen" in keys) != ("rejected" in keys):
            hint = " ('chosen' and 'rejected' must come together)"
        raise ctx.error(f"cannot tell the record kind from keys {sorted(keys)}{hint}; "
                        f"recognised key sets: {recognised}")
    raise ctx.error(f"ambiguous record: keys {sorted(keys)} match kinds {matched}; pass the kind "
                    f"explicitly (kind=...) to choose; recognised key sets: {recognised}")


def is_conversational(record: Mapping[str, Any], kind: str) -> bool:
    """Whether a *validated* record of `kind` holds message lists rather than strings."""
    if kind == "messages":
        return True
    if kind in ("text", "safety"):
        return False
    anchor = "chosen" if kind == "preference" else "completion"
    return isinstance(record.get(anchor), list)


# ---------------------------------------------------------------------------- shared prefixes


def split_text_prefix(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two texts into (prompt, chosen_rest, rejected_rest) at a word boundary.

    The prompt is the longest common prefix, backed off to just after the last whitespace
    character so that a word is never split, and further if needed so that both rests keep
    some non-whitespace text. It is "" when no such boundary exists.

        >>> split_text_prefix("I like cats", "I like cars")      # LCP 'I like ca' -> 'I like '
        ('I like ', 'cats', 'cars')
        >>> split_text_prefix("Hello.", "Hello!")               # no whitespace: empty prompt
        ('', 'Hello.', 'Hello!')
    """
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    # chosen[i:] keeps non-whitespace iff i <= index of its last non-whitespace character.
    last_c = len(chosen.rstrip()) - 1
    last_r = len(rejected.rstrip()) - 1
    i = min(n, last_c, last_r)
    while i > 0 and not chosen[i - 1].isspace():
        i -= 1
    i = max(i, 0)
    return chosen[:i], chosen[i:], rejected[i:]


def split_message_prefix(chosen: list[dict], rejected: list[dict]
                         ) -> tuple[list[dict], list[dict], list[dict]]:
    """Split two conversations into (common prefix, chosen_rest, rejected_rest), by message.

        >>> u, a, b = ({"role": "user", "content": "q"}, {"role": "assistant", "content": "A"},
        ...            {"role": "assistant", "content": "B"})
        >>> split_message_prefix([u, a], [u, b]) == ([u], [a], [b])
        True
    """
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    return list(chosen[:k]), list(chosen[k:]), list(rejected[k:])


# ---------------------------------------------------------------------------- value checks


def _check_jsonlike(value: Any, path: str, ctx: _Ctx) -> None:
    """Extra values must be plain JSON so the dataset digest is defined for them."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_jsonlike(v, f"{path}[{i}]", ctx)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ctx.error(f"object keys must be strings, got {_type_name(k)}", path)
            _check_jsonlike(v, f"{path}.{k}", ctx)
        return
    raise ctx.error(f"value of type {type(value).__name__} is not JSON (string, number, "
                    f"boolean, null, list or object)", path)


def _plain(value: Any) -> Any:
    """Tuples (from some readers) become lists; nested mappings become plain dicts."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _number(value: Any, field: str, ctx: _Ctx) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ctx.error(f"expected a number, got {_type_name(value)}", field)
    value = float(value)
    if not math.isfinite(value):
        raise ctx.error(f"expected a finite number, got {value}", field)
    return value


def _string(row: Mapping[str, Any], key: str, ctx: _Ctx, *, nonblank: bool = False) -> str:
    value = row.get(key, _MISSING)
    if value is _MISSING:
        raise ctx.error(f"missing key '{key}'", key)
    if not isinstance(value, str):
        raise ctx.error(f"expected a string, got {_type_name(value)}", key)
    if nonblank and not value.strip():
        raise ctx.error("empty text (blank or whitespace only)", key)
    return value


# ---------------------------------------------------------------------------- messages


def _message(m: Any, path: str, ctx: _Ctx) -> dict:
    """Normalise one message to a plain dict with str role and str content."""
    if not isinstance(m, Mapping):
        raise ctx.error(f"expected a message object with 'role' and 'content', got "
                        f"{_type_name(m)}", path)
    role = m.get("role", _MISSING)
    if role is _MISSING or role is None:
        raise ctx.error("missing key 'role'", f"{path}.role")
    if not isinstance(role, str):
        raise ctx.error(f"expected a string, got {_type_name(role)}", f"{path}.role")
    if role not in ROLES:
        raise ctx.error(f"unknown role {role!r}; allowed: {', '.join(ROLES)}", f"{path}.role")
    content = m.get("content", _MISSING)
    if content is None and role == "assistant" and m.get("tool_calls"):
        content = ""  # OpenAI-style tool call: the assistant says nothing, it calls a tool
    if content is _MISSING or content is None:
        raise ctx.error("missing key 'content'", f"{path}.content")
    if not isinstance(content, str):
        raise ctx.error(f"expected a string, got {_type_name(content)}", f"{path}.content")
    out = {"role": role, "content": content}
    for key, value in m.items():
        if key in ("role", "content") or value is None:
            continue
        _check_jsonlike(value, f"{path}.{key}", ctx)
        out[str(key)] = _plain(value)
    return out


def _messages(value: Any, field: str, ctx: _Ctx, *, nonempty: bool) -> list[dict]:
    if value is _MISSING:
        raise ctx.error(f"missing key '{field}'", field)
    if not isinstance(value, (list, tuple)):
        raise ctx.error(f"expected a list of messages, got {_type_name(value)}", field)
    if nonempty and not value:
        raise ctx.error("empty list of messages", field)
    return [_message(m, f"{field}[{i}]", ctx) for i, m in enumerate(value)]


def _check_order(items: list[tuple[dict, str]], ctx: _Ctx, *, whole: str,
                 require_assistant: bool) -> None:
    """Role order of one conversation given as (message, path) pairs; see module docstring."""
    prev: str | None = None
    for i, (m, path) in enumerate(items):
        role = m["role"]
        if role == "system":
            if i != 0:
                raise ctx.error("a system message is only allowed as the first message",
                                f"{path}.role")
        elif prev in (None, "system"):
            if role != "user":
                raise ctx.error(f"the conversation must start with a user message (after an "
                                f"optional system message), got {role!r}", f"{path}.role")
        elif role == "user" and prev != "assistant":
            raise ctx.error(f"a user message must follow an assistant message, not {prev!r} "
                            f"(user and assistant turns alternate)", f"{path}.role")
        elif role == "tool" and prev not in ("assistant", "tool"):
            raise ctx.error(f"a tool message must follow an assistant or tool message, not "
                            f"{prev!r}", f"{path}.role")
        if role == "assistant" and not m["content"].strip() and not m.get("tool_calls"):
            raise ctx.error("empty assistant turn (content is blank)", f"{path}.content")
        prev = role
    if require_assistant and not any(m["role"] == "assistant" for m, _ in items):
        raise ctx.error("a conversation for training must contain at least one assistant "
                        "message", whole)


def _paths(msgs: list[dict], field: str) -> list[tuple[dict, str]]:
    return [(m, f"{field}[{i}]") for i, m in enumerate(msgs)]


def _ends_with_assistant(msgs: list[dict], field: str, ctx: _Ctx) -> None:
    if msgs[-1]["role"] != "assistant":
        raise ctx.error(f"must end with an assistant message, got {msgs[-1]['role']!r}",
                        f"{field}[{len(msgs) - 1}].role")


def _all_assistant(msgs: list[dict], field: str, ctx: _Ctx) -> None:
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            raise ctx.error(f"completion messages must be assistant messages, got "
                            f"{m['role']!r}", f"{field}[{i}].role")


# ---------------------------------------------------------------------------- per kind


def _text(row, ctx, out, stats):
    out["text"] = _string(row, "text", ctx, nonblank=True)


def _conversation(row, ctx, out, stats):
    msgs = _messages(row.get("messages", _MISSING), "messages", ctx, nonempty=True)
    _check_order(_paths(msgs, "messages"), ctx, whole="messages", require_assistant=True)
    out["messages"] = msgs


def _prompt_and_completion(row, ctx, out):
    """Shared by prompt_completion and unpaired: both strings or both message lists."""
    for key in ("prompt", "completion"):
        if row.get(key, _MISSING) is _MISSING:
            raise ctx.error(f"missing key '{key}'", key)
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(completion, str) and isinstance(prompt, str):
        out["prompt"] = prompt
        out["completion"] = _string(row, "completion", ctx, nonblank=True)
        return
    if isinstance(completion, (list, tuple)) and isinstance(prompt, (list, tuple)):
        p = _messages(prompt, "prompt", ctx, nonempty=False)
        c = _messages(completion, "completion", ctx, nonempty=True)
        _all_assistant(c, "completion", ctx)
        _check_order(_paths(p, "prompt") + _paths(c, "completion"), ctx, whole="completion",
                     require_assistant=True)
        out["prompt"], out["completion"] = p, c
        return
    for key, value in (("prompt", prompt), ("completion", completion)):
        if not isinstance(value, (str, list, tuple)):
            raise ctx.error(f"expected a string or a list of messages, got {_type_name(value)}",
                            key)
    raise ctx.error(f"prompt is a {_type_name(prompt)} but completion is a "
                    f"{_type_name(completion)}; use two strings or two message lists",
                    "completion")


def _prompt_completion(row, ctx, out, stats):
    _prompt_and_completion(row, ctx, out)


def _unpaired(row, ctx, out, stats):
    _prompt_and_completion(row, ctx, out)
    label = row.get("label", _MISSING)
    if label is _MISSING:
        raise ctx.error("missing key 'label'", "label")
    if not isinstance(label, bool):
        raise ctx.error(f"expected a boolean (true = desirable), got {_type_name(label)}",
                        "label")
    out["label"] = label


def _safety(row, ctx, out, stats):
    out["prompt"] = _string(row, "prompt", ctx)
    label = _string(row, "label", ctx)
    if label not in SAFETY_LABELS:
        raise ctx.error(f"expected 'safe' or 'unsafe', got {label!r}", "label")
    out["label"] = label
    for key in ("category", "type"):
        value = row.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ctx.error(f"expected a string, got {_type_name(value)}", key)
        out[key] = value


def _bump(stats: dict[str, int] | None, key: str) -> None:
    if stats is not None:
        stats[key] = stats.get(key, 0) + 1


def _preference(row, ctx, out, stats):
    for key in ("chosen", "rejected"):
        if row.get(key, _MISSING) is _MISSING:
            raise ctx.error(f"missing key '{key}'", key)
    chosen, rejected = row["chosen"], row["rejected"]
    prompt = row.get("prompt")
    implicit = prompt is None
    strings = isinstance(chosen, str) and isinstance(rejected, str)
    lists = isinstance(chosen, (list, tuple)) and isinstance(rejected, (list, tuple))
    if not (strings or lists):
        for key, value in (("chosen", chosen), ("rejected", rejected)):
            if not isinstance(value, (str, list, tuple)):
                raise ctx.error(f"expected a string or a list of messages, got "
                                f"{_type_name(value)}", key)
        raise ctx.error(f"chosen is a {_type_name(chosen)} but rejected is a "
                        f"{_type_name(rejected)}; use two strings or two message lists",
                        "rejected")
    if not implicit and strings != isinstance(prompt, str):
        raise ctx.error(f"prompt is a {_type_name(prompt)} but chosen/rejected are "
                        f"{_type_name(chosen)}s; use strings throughout or message lists "
                        f"throughout", "prompt")

    if strings:
        c = _string(row, "chosen", ctx, nonblank=True)
        r = _string(row, "rejected", ctx, nonblank=True)
        if c == r:
            raise ctx.error("chosen and rejected are identical", "rejected")
        if implicit:
            p, c, r = split_text_prefix(c, r)
            _bump(stats, "implicit_prompt")
        else:
            p = prompt
        out["prompt"], out["chosen"], out["rejected"] = p, c, r
        return

    c = _messages(chosen, "chosen", ctx, nonempty=True)
    r = _messages(rejected, "rejected", ctx, nonempty=True)
    if implicit:
        # Validate the full conversations first, so error paths index the rows as given.
        _check_order(_paths(c, "chosen"), ctx, whole="chosen", require_assistant=True)
        _check_order(_paths(r, "rejected"), ctx, whole="rejected", require_assistant=True)
        if c == r:
            raise ctx.error("chosen and rejected are identical", "rejected")
        p, c_rest, r_rest = split_message_prefix(c, r)
        for name, rest, other in (("chosen", c_rest, "rejected"), ("rejected", r_rest, "chosen")):
            if not rest:
                raise ctx.error(f"{name} is a prefix of {other}: nothing of {name} is left "
                                f"after the shared prompt", name)
        _ends_with_assistant(c, "chosen", ctx)
        _ends_with_assistant(r, "rejected", ctx)
        _bump(stats, "implicit_prompt")
        if len(c_rest) > 1 or len(r_rest) > 1:
            _bump(stats, "divergent_prefix")
        out["prompt"], out["chosen"], out["rejected"] = p, c_rest, r_rest
        return

    p = _messages(prompt, "prompt", ctx, nonempty=False)
    for name, msgs in (("chosen", c), ("rejected", r)):
        _check_order(_paths(p, "prompt") + _paths(msgs, name), ctx, whole=name,
                     require_assistant=True)
        _ends_with_assistant(msgs, name, ctx)
    if c == r:
        raise ctx.error("chosen and rejected are identical", "rejected")
    out["prompt"], out["chosen"], out["rejected"] = p, c, r


_VALIDATORS = {
    "text": _text,
    "messages": _conversation,
    "prompt_completion": _prompt_completion,
    "preference": _preference,
    "unpaired": _unpaired,
    "safety": _safety,
}
_KIND_FIELDS = {
    "text": ("text",),
    "messages": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "safety": ("prompt", "label", "category", "type"),
}


def _optional(key: str, value: Any, kind: str, ctx: _Ctx) -> Any:
    """Check one optional key; returns the normalised value."""
    if key == "margin":
        if kind != "preference":
            raise ctx.error(f"'margin' is only meaningful on preference records, not {kind}",
                            key)
        return _number(value, key, ctx)
    if key == "weight":
        w = _number(value, key, ctx)
        if w <= 0:
            raise ctx.error(f"per-example loss weight must be > 0, got {w}", key)
        return w
    if key == "tools":
        if not isinstance(value, (list, tuple)):
            raise ctx.error(f"expected a list of tool definitions, got {_type_name(value)}", key)
    elif key == "chat_template_kwargs":
        if not isinstance(value, Mapping):
            raise ctx.error(f"expected an object, got {_type_name(value)}", key)
    elif key == "id":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ctx.error(f"expected a string or integer, got {_type_name(value)}", key)
    elif key == "source":  # a name, or an object (e.g. alignkit synth mix's provenance)
        if not isinstance(value, (str, Mapping)):
            raise ctx.error(f"expected a string or an object, got {_type_name(value)}", key)
    elif key == "category":
        if not isinstance(value, str):
            raise ctx.error(f"expected a string, got {_type_name(value)}", key)
    _check_jsonlike(value, key, ctx)
    return _plain(value)


def validate_record(row: Any, kind: str, *, file: str | None = None, line: int | None = None,
                    stats: dict[str, int] | None = None) -> dict:
    """Check one row against `kind` and return it normalised (same field names).

    Messages become plain dicts with str role/content; implicit preferences become explicit
    (a ``prompt`` key is added); safety rows get ``category``/``type`` defaulting to "";
    ``margin``/``weight`` become floats; optional and unknown keys with a null value are
    dropped; other unknown keys are kept unchanged. When `stats` is given, it counts
    ``implicit_prompt`` and ``divergent_prefix`` rows.

    Raises DataError(message, file=file, line=line, field=path) with a path such as
    ``messages[2].role``.

        >>> validate_record({"messages": [{"role": "user", "content": "hi"},
        ...                               {"role": "assistant", "content": "hello"}], "id": 7},
        ...                 "messages")["id"]
        7
    """
    if kind not in _VALIDATORS:
        raise ValueError(f"unknown record kind {kind!r}; known: {', '.join(KINDS)}")
    ctx = _Ctx(file, line)
    if not isinstance(row, Mapping):
        raise ctx.error(f"row is not a JSON object (got {_type_name(row)})")
    out: dict[str, Any] = {}
    _VALIDATORS[kind](row, ctx, out, stats)
    own = set(_KIND_FIELDS[kind]) | set(KIND_KEYS[kind])
    for key, value in row.items():
        if key in own or value is None:
            continue
        if not isinstance(key, str):
            raise ctx.error(f"keys must be strings, got {_type_name(key)}")
        if key in OPTIONAL_KEYS or key in PREFERENCE_ONLY_KEYS:
            out[key] = _optional(key, value, kind, ctx)
        else:
            _check_jsonlike(value, key, ctx)
            out[key] = _plain(value)
    return out
