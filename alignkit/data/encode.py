"""Exact tokenisation of conversations, with assistant masks that no message text can move.

Labels follow the Hugging Face convention: `labels[t] == input_ids[t]` where token t is trained,
`IGNORE_INDEX` (-100) elsewhere; the loss shifts them (logits at t-1 predict token t).

**Assistant masks for any Jinja template.** A conversation is rendered incrementally: for each
assistant message k, once as ``messages[:k]`` with the generation prompt (P_k) and once as
``messages[:k+1]`` (F_k). Each render is tokenised, and every render's token ids must be a prefix
of the next one's (P_k ⊑ F_k ⊑ P_k' ⊑ …); the trainable span of turn k is the tokens between
P_k and F_k, so it contains whatever the template writes after the content (the end-of-turn /
EOS token and, for ChatML, the newline). A template or tokenisation that breaks the prefix
chain is a `TemplateError` with a diff, never a warning: training on such a mask would teach the
model a prompt it never sees at inference.

**Control strings in messages are plain text.** Before rendering, every control-token string
inside a message's text fields other than the role (``<|im_start|>``, ``</s>``, ``[INST]`` when
the tokenizer registers it, …; nested lists/dicts included) is wrapped in two private-use
marker characters. After rendering, control strings that carry the
markers came from a message and are tokenised as ordinary text; unmarked ones were written by
the template and become control tokens. The tokenisation itself is one call of a copy of the
tokenizer's Rust backend in which every control token is *special* (so, with
``encode_special_tokens``, its spelling in text is split like any text) and the template's own
control tokens are substituted by one private-use alias character each (registered as added
tokens with the same lstrip/rstrip/normalisation flags and mapped back to the real ids). With
no control string inside the messages this gives exactly the ids of
``tokenizer.apply_chat_template(..., tokenize=True)``; with one, only that string changes (to its
plain-text tokens). Control tokens are the tokenizer's special tokens plus the added tokens that
appear among the template's literal strings. The characters U+F0000-U+10FFFF (supplementary
private use areas) are reserved for this and rejected in messages.

Limitation: a template that *builds* a control token out of message text (e.g. writes
``'<|' + message['content']``) cannot be protected; no built-in does.

    >>> from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    >>> from transformers import PreTrainedTokenizerFast
    >>> words = ["[UNK]", "user", "assistant", "\\n", "Hi", "Hello"]
    >>> backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    >>> backend.pre_tokenizer = pre_tokenizers.Split(Regex("\\\\w+|\\\\s"), behavior="isolated")
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    >>> _ = tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    >>> from alignkit.data.templates import ChatTemplate
    >>> ex = encode_messages(tok, ChatTemplate.builtin("chatml"),
    ...                      [{"role": "user", "content": "Hi"},
    ...                       {"role": "assistant", "content": "Hello"}])
    >>> [tok.convert_ids_to_tokens(i) for i, l in zip(ex.input_ids, ex.labels) if l != -100]
    ['Hello', '<|im_end|>', '\\n']
"""
from __future__ import annotations

import hashlib
import json
import re
import weakref
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

from alignkit.data.templates import ChatTemplate, template_literals, tokenizer_adds_bos
from alignkit.errors import ConfigError, DataError, TemplateError

IGNORE_INDEX = -100

# One alias character per control token (Supplementary Private Use Area-A), and two markers
# (Area-B) around control strings found inside messages. Both areas are reserved.
_ALIAS_BASE = 0xF0000
_MARK_OPEN = "\U0010FFF0"
_MARK_CLOSE = "\U0010FFF1"
_RESERVED = re.compile("[\U000F0000-\U0010FFFF]")
_RESERVED_NOTE = ("characters U+F0000-U+10FFFF (supplementary private use areas) are reserved by "
                  "alignkit to mark control tokens")


@dataclass(frozen=True)
class EncodedExample:
    """Token ids and aligned labels of one training sequence.

        >>> EncodedExample([5, 6, 7], [-100, 6, 7]).n_trainable
        2
    """

    input_ids: list[int]  # (T,)
    labels: list[int]  # (T,) IGNORE_INDEX where not trained, else == input_ids

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"input_ids has {len(self.input_ids)} tokens but labels has "
                             f"{len(self.labels)}")

    @property
    def n_trainable(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


# --------------------------------------------------------------------------------------------
# The codec: a tokenizer copy that knows which control tokens came from the template.

class _Codec:
    """Encodes rendered text whose message-borne control strings are wrapped in markers."""

    def __init__(self, tokenizer: Any, literal_text: str):
        from tokenizers import Tokenizer  # heavy import, only when encoding

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ConfigError(
                f"{type(tokenizer).__name__} has no Rust backend (`backend_tokenizer`); alignkit's "
                "exact, injection-safe tokenisation needs a fast tokenizer")
        self.tokenizer = tokenizer
        spec = json.loads(backend.to_str())
        spec["truncation"] = None
        spec["padding"] = None
        added = list(spec.get("added_tokens") or [])
        next_id = max([backend.get_vocab_size(with_added_tokens=True)]
                      + [int(a["id"]) + 1 for a in added])
        control = [a for a in added
                   if a.get("special") or (a["content"] in literal_text and not a["content"].isspace())]
        if len(control) > 0x10000:
            raise ConfigError(f"tokenizer has {len(control)} control tokens; at most 65536 supported")
        self.alias_of: dict[str, str] = {}  # control string -> alias character
        self.real_id: dict[int, int] = {}  # alias id -> control token id
        for i, entry in enumerate(control):
            entry["special"] = True  # its spelling in text is split as text (encode_special_tokens)
            alias = chr(_ALIAS_BASE + i)
            spec["added_tokens"].append({**entry, "id": next_id + i, "content": alias,
                                         "special": False})
            self.alias_of[entry["content"]] = alias
            self.real_id[next_id + i] = int(entry["id"])
        # The unknown token is special but legitimately comes out of plain text.
        unk = getattr(tokenizer, "unk_token_id", None)
        self.control_ids = frozenset(self.real_id.values()) - {unk}
        self.copy = Tokenizer.from_str(json.dumps(spec))
        self.copy.encode_special_tokens = True

        def alternation(strings: list[str]) -> str:
            # Longest first: at one position the longest control string wins, as in the tokenizer.
            return "|".join(re.escape(s) for s in sorted(strings, key=lambda s: (-len(s), s))) or "(?!)"

        marked = [c for c in self.alias_of if not c.isspace()]
        self.mark_re = re.compile(alternation(marked))
        everything = alternation(list(self.alias_of))
        self.scan_re = re.compile(
            f"{_MARK_OPEN}({alternation(marked)}){_MARK_CLOSE}|({everything})|[{_MARK_OPEN}{_MARK_CLOSE}]")

    # ---------------------------------------------------------------- messages
    def mark(self, text: str, field: str, loc: dict) -> str:
        """Wrap every control string in `text` with the markers."""
        bad = _RESERVED.search(text)
        if bad:
            raise DataError(f"contains U+{ord(bad.group()):X} at character {bad.start()}; "
                            f"{_RESERVED_NOTE}", field=field, **loc)
        return self.mark_re.sub(lambda m: f"{_MARK_OPEN}{m.group(0)}{_MARK_CLOSE}", text)

    def has_control(self, text: str) -> bool:
        return self.mark_re.search(text) is not None

    # ---------------------------------------------------------------- encoding
    def encode_rendered(self, marked_text: str, template_name: str) -> list[int]:
        """Token ids of a render made from marked messages."""
        stray = re.search("[\U000F0000-\U0010FFEF\U0010FFF2-\U0010FFFF]", marked_text)
        if stray:
            raise TemplateError(f"chat template {template_name!r} writes U+{ord(stray.group()):X}; "
                                f"{_RESERVED_NOTE}")
        pieces: list[str] = []
        n_aliases = 0
        pos = 0
        for m in self.scan_re.finditer(marked_text):
            pieces.append(marked_text[pos:m.start()])
            if m.group(1) is not None:  # from a message: stays text
                pieces.append(m.group(1))
            elif m.group(2) is not None:  # written by the template: a control token
                pieces.append(self.alias_of[m.group(2)])
                n_aliases += 1
            # else: a lone marker; the template split a message at a control string. Dropped.
            pos = m.end()
        pieces.append(marked_text[pos:])
        return self._encode("".join(pieces), n_aliases)

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of `text` with every control string as plain text."""
        return self._encode(text, 0)

    def _encode(self, text: str, n_aliases: int) -> list[int]:
        ids = self.copy.encode(text, add_special_tokens=False).ids
        out: list[int] = []
        seen = 0
        for i in ids:
            real = self.real_id.get(i)
            if real is not None:
                out.append(real)
                seen += 1
            elif i in self.control_ids:
                tok = self.tokenizer.convert_ids_to_tokens(i)
                raise TemplateError(f"the tokenizer produces control token {tok!r} (id {i}) from "
                                    "plain text, so it cannot be kept apart from message text")
            else:
                out.append(i)
        if seen != n_aliases:
            raise TemplateError(
                f"the template wrote {n_aliases} control tokens but the tokenizer recognised {seen} "
                "(an added token with single_word/lstrip rules that do not fit the rendered text)")
        return out


_CODECS: "weakref.WeakKeyDictionary[Any, dict[tuple, _Codec]]" = weakref.WeakKeyDictionary()


def _codec(tokenizer: Any, template: ChatTemplate | None) -> _Codec:
    literal_text = ""
    if template is not None:
        literal_text = "\0".join([*template_literals(template.source), template.bos_token or "",
                                  template.eos_token or ""])
    backend = getattr(tokenizer, "backend_tokenizer", None)
    size = backend.get_vocab_size(with_added_tokens=True) if backend is not None else -1
    key = (hashlib.sha256(literal_text.encode("utf-8")).hexdigest(), size)
    try:
        per_tok = _CODECS.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable / hashable: no cache
        return _Codec(tokenizer, literal_text)
    if key not in per_tok:
        per_tok[key] = _Codec(tokenizer, literal_text)
    return per_tok[key]


# --------------------------------------------------------------------------------------------
# Validation

def _loc(file: str | None, line: int | None) -> dict:
    return {"file": file, "line": line}


def _check_messages(messages: Any, field: str, loc: dict, allow_empty: bool = False) -> list[dict]:
    if not isinstance(messages, (list, tuple)) or not (messages or allow_empty):
        raise DataError("must be a non-empty list of messages", field=field, **loc)
    out = []
    for i, m in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(m, Mapping):
            raise DataError(f"must be an object with 'role' and 'content', got {type(m).__name__}",
                            field=where, **loc)
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or not role:
            raise DataError("must be a non-empty string", field=f"{where}.role", **loc)
        if not isinstance(content, str):
            raise DataError(f"must be a string, got {type(content).__name__}",
                            field=f"{where}.content", **loc)
        out.append(dict(m))
    return out


def _mark_messages(codec: _Codec, messages: list[dict], names: list[str],
                   loc: dict) -> tuple[list[dict], list[bool]]:
    """Marked copies of the messages, and which messages contained a control string.

    `names[i]` is how errors refer to message i (e.g. 'chosen[0]').
    """
    marked, flags = [], []
    for name, m in zip(names, messages):
        if codec.has_control(m["role"]) or _RESERVED.search(m["role"]):
            raise DataError(f"role {m['role']!r} contains a control string or reserved character",
                            field=f"{name}.role", **loc)
        new = {key: (value if key == "role" else _mark_value(codec, value, f"{name}.{key}", loc))
               for key, value in m.items()}
        marked.append(new)
        flags.append(new != m)
    return marked, flags


def _mark_value(codec: _Codec, value: Any, field: str, loc: dict) -> Any:
    """Mark every string inside `value` (strings, and lists/dicts of them, e.g. tool calls)."""
    if isinstance(value, str):
        return codec.mark(value, field, loc)
    if isinstance(value, Mapping):
        return {k: _mark_value(codec, v, f"{field}.{k}", loc) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark_value(codec, v, f"{field}[{i}]", loc) for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------------------------
# Rendering + encoding of one conversation prefix

@dataclass
class _Render:
    label: str
    text: str  # the real render (no markers)
    ids: list[int]


def _render(codec: _Codec, template: ChatTemplate, plain: list[dict], marked: list[dict],
            flags: list[bool], n: int, gen: bool, kwargs: Mapping[str, Any], label: str,
            field: str, loc: dict) -> _Render:
    try:
        marked_text = template.render(marked[:n], add_generation_prompt=gen, **kwargs)
    except DataError as e:  # the template's raise_exception: locate it in the input
        raise DataError(e.message, field=field, **loc) from e
    if any(flags[:n]):
        text = template.render(plain[:n], add_generation_prompt=gen, **kwargs)
        if marked_text.replace(_MARK_OPEN, "").replace(_MARK_CLOSE, "") != text:
            raise TemplateError(
                f"chat template {template.name!r} renders {label} differently once control strings "
                "inside the messages are marked (it inspects or rewrites message text around them), "
                "so they cannot be kept apart from the template's own control tokens")
    else:
        text = marked_text
    return _Render(label, text, codec.encode_rendered(marked_text, template.name))


def _decode_tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    return [str(t) for t in tokenizer.convert_ids_to_tokens(list(ids))]


def _prefix_error(template: ChatTemplate, tokenizer: Any, a: _Render, b: _Render,
                  loc: dict) -> TemplateError:
    """A readable report of why render `a` is not a token prefix of render `b`."""
    where = ""
    if loc.get("file") is not None:
        where = f"{loc['file']}:{loc['line']}: " if loc.get("line") is not None else f"{loc['file']}: "
    c = next((i for i, (x, y) in enumerate(zip(a.text, b.text)) if x != y), min(len(a.text), len(b.text)))
    t = next((i for i, (x, y) in enumerate(zip(a.ids, b.ids)) if x != y), min(len(a.ids), len(b.ids)))
    lo = max(0, c - 40)
    if b.text.startswith(a.text):
        why = ("the text is a prefix, but tokenisation merges across the boundary (a token of the "
               "longer render spans the end of the shorter one)")
    else:
        why = "the text itself differs"
    return TemplateError(
        f"{where}chat template {template.name!r} is not prefix-consistent: the render of {a.label} is not "
        f"a token prefix of the render of {b.label}; {why}.\n"
        f"  first differing character at {c}:\n"
        f"    {a.label}: ...{a.text[lo:c + 40]!r}\n"
        f"    {b.label}: ...{b.text[lo:c + 40]!r}\n"
        f"  first differing token at {t}:\n"
        f"    {a.label}: {a.ids[t:t + 4]} = {_decode_tokens(tokenizer, a.ids[t:t + 4])}\n"
        f"    {b.label}: {b.ids[t:t + 4]} = {_decode_tokens(tokenizer, b.ids[t:t + 4])}\n"
        "An assistant mask needs every rendered prefix of a conversation to tokenise to a prefix of "
        "the next render; fix the template (or the message text at the boundary).")


def _encode_conversation(tokenizer: Any, template: ChatTemplate, plain: list[dict], *, field: str,
                         names: list[str], train_from: int, train_on: str, max_length: int | None,
                         template_kwargs: Mapping[str, Any] | None, loc: dict) -> EncodedExample:
    """Encode `plain` (validated) training the assistant messages at index >= train_from."""
    if train_on not in ("all", "last"):
        raise ConfigError(f"train_on must be 'all' or 'last', got {train_on!r}")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ConfigError(f"max_length must be a positive integer or None, got {max_length!r}")
    kwargs = dict(template_kwargs or {})
    codec = _codec(tokenizer, template)
    marked, flags = _mark_messages(codec, plain, names, loc)
    assistants = [i for i, m in enumerate(plain) if m["role"] == "assistant"]
    trained = [i for i in assistants if i >= train_from]
    if not trained:
        raise DataError("has no assistant message to train on", field=field, **loc)
    if train_on == "last":
        trained = trained[-1:]

    # The prefix chain P_k, F_k for every assistant message (those not trained are still checked).
    steps: list[tuple[int, bool, str, int | None]] = []  # (n messages, gen prompt, label, turn)
    for k in assistants:
        steps.append((k, True, f"{field}[:{k}] + generation prompt", None))
        steps.append((k + 1, False, f"{field}[:{k + 1}]", k))
    if assistants[-1] != len(plain) - 1:
        steps.append((len(plain), False, f"{field}[:{len(plain)}]", None))

    spans: list[tuple[int, int]] = []
    prev: _Render | None = None
    for n, gen, label, turn in steps:
        cur = _render(codec, template, plain, marked, flags, n, gen, kwargs, label, field, loc)
        if prev is not None and cur.ids[:len(prev.ids)] != prev.ids:
            raise _prefix_error(template, tokenizer, prev, cur, loc)
        if turn is not None and turn in trained:
            spans.append((len(prev.ids), len(cur.ids)))  # prev is P_turn
        prev = cur
    ids = prev.ids
    labels = [IGNORE_INDEX] * len(ids)
    for start, end in spans:
        labels[start:end] = ids[start:end]
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    example = EncodedExample(ids, labels)
    if example.n_trainable == 0:
        if any(end > start for start, end in spans):
            why = (f"every assistant token lies beyond max_length={max_length} "
                   f"(the prompt alone is {spans[0][0]} tokens)")
        else:
            why = "the template writes nothing for the assistant turns"
        raise DataError(f"has no trainable token: {why}", field=field, **loc)
    return example


# --------------------------------------------------------------------------------------------
# Public API

def encode_messages(tokenizer: Any, template: ChatTemplate, messages: Sequence[Mapping[str, Any]], *,
                    train_on: Literal["all", "last"] = "all", max_length: int | None = None,
                    template_kwargs: Mapping[str, Any] | None = None, file: str | None = None,
                    line: int | None = None) -> EncodedExample:
    """Tokenise a conversation; labels on the assistant messages (all, or only the last).

    `max_length` keeps the first `max_length` tokens. `file`/`line` locate the record in errors.
    Raises `TemplateError` if the template is not prefix-consistent, `DataError` for a malformed
    conversation or one with no trainable token.
    """
    loc = _loc(file, line)
    plain = _check_messages(messages, "messages", loc)
    return _encode_conversation(tokenizer, template, plain, field="messages",
                                names=[f"messages[{i}]" for i in range(len(plain))], train_from=0,
                                train_on=train_on, max_length=max_length,
                                template_kwargs=template_kwargs, loc=loc)


def encode_prompt(tokenizer: Any, template: ChatTemplate, messages: Sequence[Mapping[str, Any]], *,
                  template_kwargs: Mapping[str, Any] | None = None, file: str | None = None,
                  line: int | None = None) -> list[int]:
    """Token ids of `messages` plus the generation prompt, for sampling a reply.

    Exactly the prefix `encode_messages` puts before an assistant message that follows
    `messages`, so generation sees what training saw.
    """
    loc = _loc(file, line)
    plain = _check_messages(messages, "messages", loc, allow_empty=True)  # a reply that opens the chat
    codec = _codec(tokenizer, template)
    marked, flags = _mark_messages(codec, plain, [f"messages[{i}]" for i in range(len(plain))], loc)
    return _render(codec, template, plain, marked, flags, len(plain), True, dict(template_kwargs or {}),
                   "messages + generation prompt", "messages", loc).ids


def encode_preference(tokenizer: Any, template: ChatTemplate,
                      prompt_messages: Sequence[Mapping[str, Any]],
                      chosen_messages: Sequence[Mapping[str, Any]],
                      rejected_messages: Sequence[Mapping[str, Any]], *,
                      max_length: int | None = None,
                      template_kwargs: Mapping[str, Any] | None = None, file: str | None = None,
                      line: int | None = None) -> tuple[EncodedExample, EncodedExample]:
    """Encode a preference pair: labels only on the response (assistant messages after the prompt).

    Both sequences start with the same prompt tokens (`encode_prompt(prompt_messages)`); each is
    cut to its first `max_length` tokens.
    """
    loc = _loc(file, line)
    prompt = _check_messages(prompt_messages, "prompt", loc)
    out = []
    for name, response in (("chosen", chosen_messages), ("rejected", rejected_messages)):
        resp = _check_messages(response, name, loc)
        if resp[0]["role"] != "assistant":
            raise DataError(f"must start with an assistant message, got role {resp[0]['role']!r}",
                            field=f"{name}[0].role", **loc)
        names = [f"prompt[{i}]" for i in range(len(prompt))] + [f"{name}[{i}]" for i in range(len(resp))]
        out.append(_encode_conversation(
            tokenizer, template, prompt + resp, field=name, names=names, train_from=len(prompt),
            train_on="all", max_length=max_length, template_kwargs=template_kwargs, loc=loc))
    chosen, rejected = out
    n = len(encode_prompt(tokenizer, template, prompt, template_kwargs=template_kwargs))
    if max_length is not None:
        n = min(n, max_length)
    if chosen.input_ids[:n] != rejected.input_ids[:n]:  # guaranteed by the prefix chain; checked
        raise TemplateError(f"chat template {template.name!r}: the prompt tokens differ between "
                            "the chosen and rejected sequences")
    return chosen, rejected


def encode_text(tokenizer: Any, text: str, *, add_bos: bool | None = None, add_eos: bool = True,
                max_length: int | None = None, file: str | None = None,
                line: int | None = None) -> EncodedExample:
    """Tokenise a language-modelling row: every token trainable except the first.

    Control strings in `text` are plain text. `add_bos=None` adds BOS exactly when the tokenizer
    would add one itself (Llama: yes; SmolLM2, Qwen: no); True/False force it. `add_eos` appends
    EOS. `max_length` keeps the first `max_length` tokens (the EOS may be cut).
    """
    loc = _loc(file, line)
    if not isinstance(text, str):
        raise DataError(f"must be a string, got {type(text).__name__}", field="text", **loc)
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ConfigError(f"max_length must be a positive integer or None, got {max_length!r}")
    bad = _RESERVED.search(text)
    if bad:
        raise DataError(f"contains U+{ord(bad.group()):X} at character {bad.start()}; {_RESERVED_NOTE}",
                        field="text", **loc)
    if add_bos is None:
        add_bos = tokenizer_adds_bos(tokenizer)
    ids = _codec(tokenizer, None).encode_plain(text)
    if add_bos:
        if tokenizer.bos_token_id is None:
            raise ConfigError("add_bos=True but the tokenizer has no BOS token")
        ids = [tokenizer.bos_token_id] + ids
    if add_eos:
        if tokenizer.eos_token_id is None:
            raise ConfigError("add_eos=True but the tokenizer has no EOS token")
        ids = ids + [tokenizer.eos_token_id]
    if max_length is not None:
        ids = ids[:max_length]
    if len(ids) < 2:
        raise DataError(f"has no trainable token ({len(ids)} token(s); the first is never trained)",
                        field="text", **loc)
    return EncodedExample(ids, [IGNORE_INDEX] + ids[1:])


__all__ = ["EncodedExample", "IGNORE_INDEX", "encode_messages", "encode_preference", "encode_prompt",
           "encode_text"]
