"""Chat templates: Jinja sources that turn a list of messages into the text a model reads.

A `ChatTemplate` renders exactly like Hugging Face's `tokenizer.apply_chat_template(...,
tokenize=False)`: the same sandboxed Jinja environment (trim_blocks, lstrip_blocks,
`raise_exception`, `strftime_now`, an HTML-safe-free `tojson`, loop controls, and a no-op
`{% generation %}` tag), the same variables (`messages`, `add_generation_prompt`, `bos_token`,
`eos_token`, `tools`, `documents`, plus any keyword arguments). Turning the text into token ids
with an assistant mask is `alignkit.data.encode`'s job.

Five formats are built in, written from their public descriptions:

==========  ===================================================================================
chatml      ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message (OpenAI ChatML, used by
            Qwen and SmolLM2); generation prompt ``<|im_start|>assistant\\n``.
llama2      Meta's Llama 2 chat format: ``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user}
            [/INST] {answer} </s>`` per exchange, contents stripped as in Meta's reference code.
mistral     Mistral-instruct (v0.1 string format): ``<s>[INST] {user} [/INST] {answer}</s>``;
            a system message is put before the first user message, separated by a blank line.
alpaca      Stanford Alpaca: preamble, ``### Instruction:`` / ``### Response:`` sections; a
            system message replaces the default preamble; each answer ends with EOS.
zephyr      HuggingFaceH4 Zephyr: ``<|system|>\\n{content}</s>\\n``, ``<|user|>``,
            ``<|assistant|>``; generation prompt ``<|assistant|>\\n``.
==========  ===================================================================================

In llama2 and mistral the ``[/INST]`` closing each user turn is the generation cue, so
``add_generation_prompt`` adds nothing there. Every built-in is prefix-consistent: rendering a
conversation and then appending a turn only appends text.

    >>> tpl = ChatTemplate.builtin("chatml")
    >>> tpl.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    >>> tpl.digest[:4]
    'tpl-'
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
import jinja2.utils

from alignkit.contract.digest import digest_text
from alignkit.errors import DataError, TemplateError

# --------------------------------------------------------------------------------------------
# Built-in templates. Newlines inside Jinja string literals are written as "\\n" so that the
# trim_blocks / lstrip_blocks whitespace rules never touch them.

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Shared head of the formats that strictly alternate user/assistant after an optional system.
_SPLIT_SYSTEM = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}"
)
_ALTERNATE = (
    "{% set expected = 'user' if loop.index0 % 2 == 0 else 'assistant' %}"
    "{% if message['role'] != expected %}"
    "{{ raise_exception('{name}: after an optional system message, roles must alternate "
    "user/assistant/user/...; message ' ~ (loop.index0 + (1 if system is not none else 0)) ~ "
    "' has role ' ~ message['role'] ~ ', expected ' ~ expected) }}"
    "{% endif %}"
)

_LLAMA2 = (
    _SPLIT_SYSTEM
    + "{% for message in turns %}"
    + _ALTERNATE.replace("{name}", "llama2")
    + "{% if message['role'] == 'user' %}"
    "{% if loop.first and system is not none %}"
    "{% set content = '<<SYS>>\\n' + system | trim + '\\n<</SYS>>\\n\\n' + message['content'] | trim %}"
    "{% else %}{% set content = message['content'] | trim %}{% endif %}"
    "{{ bos_token + '[INST] ' + content + ' [/INST]' }}"
    "{% else %}"
    "{{ ' ' + message['content'] | trim + ' ' + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

_MISTRAL = (
    _SPLIT_SYSTEM
    + "{{ bos_token }}"
    "{% for message in turns %}"
    + _ALTERNATE.replace("{name}", "mistral")
    + "{% if message['role'] == 'user' %}"
    "{% if loop.first and system is not none %}"
    "{{ '[INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
    "{% else %}"
    "{{ ' ' + message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

_ALPACA = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set preamble = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}"
    "{% set preamble = 'Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.' %}"
    "{% set turns = messages %}"
    "{% endif %}"
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{{ preamble }}"
    "{% for message in turns %}"
    "{% if message['role'] == 'user' %}{{ '\\n\\n### Instruction:\\n' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '\\n\\n### Response:\\n' + message['content'] + (eos_token or '') }}"
    "{% else %}{{ raise_exception('alpaca: unsupported role ' ~ message['role'] ~ "
    "' (only a leading system message, then user and assistant)') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n\\n### Response:\\n' }}{% endif %}"
)

# Role markers are written out literally (not built as '<|' + role + '|>') so that the encoder can
# find them among the template's literal text when a tokenizer registers them as added tokens.
_ZEPHYR = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' }}"
    "{% else %}{{ raise_exception('zephyr: unsupported role ' ~ message['role']) }}{% endif %}"
    "{{ message['content'] + (eos_token or '') + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class _Builtin:
    source: str
    bos_token: str | None  # default when neither the caller nor a tokenizer gives one
    eos_token: str | None
    # 'format': BOS is part of the format (always rendered); 'tokenizer': rendered only when the
    # tokenizer itself would add one; 'none': the template never renders bos_token.
    bos_policy: str
    uses_eos: bool  # False: the end of turn is a fixed literal (<|im_end|>), not eos_token


BUILTINS: dict[str, _Builtin] = {
    "chatml": _Builtin(_CHATML, None, "<|im_end|>", "none", uses_eos=False),
    "llama2": _Builtin(_LLAMA2, "<s>", "</s>", "format", uses_eos=True),
    "mistral": _Builtin(_MISTRAL, "<s>", "</s>", "format", uses_eos=True),
    "alpaca": _Builtin(_ALPACA, None, "</s>", "tokenizer", uses_eos=True),
    "zephyr": _Builtin(_ZEPHYR, None, "</s>", "tokenizer", uses_eos=True),
}


# --------------------------------------------------------------------------------------------
# The Jinja environment, configured like Hugging Face's chat-template renderer.

class TemplateRaised(jinja2.exceptions.TemplateError):
    """Raised by a template's own `raise_exception(...)`: it refuses the conversation."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson HTML-escapes '<', '>' and '&'; chat templates expect plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _SafeDict:
    """`dict(...)` for templates, without exposing the `dict` type object itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _SafeNamespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore-prefixed names (no route to Python internals)."""

    def __init__(*args: Any, **kwargs: Any):  # same signature trick as jinja2's Namespace
        self, rest = args[0], args[1:]
        for name in dict(*rest, **kwargs):
            _SafeNamespace._check(name)
        jinja2.utils.Namespace.__init__(self, *rest, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        _SafeNamespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates may not store underscore-prefixed names on a namespace: {name!r}")


class _GenerationTag(jinja2.ext.Extension):
    """Accept `{% generation %}...{% endgeneration %}` and render its body unchanged.

    Some Hub templates mark assistant text this way for HF's assistant masks; alignkit derives
    masks from incremental renders instead, so the tag only has to parse.
    """

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return caller()


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _SafeDict()
    env.globals["namespace"] = _SafeNamespace
    return env


@functools.lru_cache(maxsize=128)
def _compile(source: str) -> jinja2.Template:
    return _environment().from_string(source)


@functools.lru_cache(maxsize=128)
def template_literals(source: str) -> tuple[str, ...]:
    """Every literal string of a template: its raw text and its string constants.

    Used to tell which added tokens a template writes itself (its control tokens).

        >>> "<|im_end|>" in "\\0".join(template_literals(BUILTINS["chatml"].source))
        True
    """
    ast = _environment().parse(source)
    out = {n.data for n in ast.find_all(jinja2.nodes.TemplateData)}
    out |= {n.value for n in ast.find_all(jinja2.nodes.Const) if isinstance(n.value, str)}
    return tuple(sorted(out))


def _plain(value: Any) -> Any:
    """A fresh copy of JSON-like data, dropping None-valued message keys as HF does."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template plus the BOS/EOS strings it is rendered with.

    `eos_token` is the string that ends an assistant turn (the stop string for generation): the
    tokenizer's EOS for most formats, ``<|im_end|>`` for ChatML.

        >>> t = ChatTemplate("echo", "{% for m in messages %}{{ m['content'] }}{% endfor %}")
        >>> t.render([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
        'ab'
    """

    name: str
    source: str
    bos_token: str | None = None
    eos_token: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise TemplateError(f"chat template {self.name!r}: the source must be a non-empty string")
        try:
            _compile(self.source)
        except jinja2.exceptions.TemplateSyntaxError as e:
            raise TemplateError(
                f"chat template {self.name!r} does not compile: line {e.lineno}: {e.message}") from e

    # ---------------------------------------------------------------- rendering
    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False,
               **kwargs: Any) -> str:
        """Render `messages` to text, exactly as `apply_chat_template(..., tokenize=False)` would.

        A template that calls `raise_exception(...)` refuses the conversation: that is a
        `DataError` (the data does not fit the format); any other failure is a `TemplateError`.
        """
        variables: dict[str, Any] = {"tools": None, "documents": None}
        if self.bos_token is not None:
            variables["bos_token"] = self.bos_token
        if self.eos_token is not None:
            variables["eos_token"] = self.eos_token
        variables.update(_plain(kwargs))
        variables["add_generation_prompt"] = bool(add_generation_prompt)
        variables["messages"] = _plain(list(messages))
        try:
            return _compile(self.source).render(**variables)
        except TemplateRaised as e:
            raise DataError(f"chat template {self.name!r} refuses this conversation: {e.message}",
                            field="messages") from e
        except (jinja2.exceptions.TemplateError, TypeError, ValueError, KeyError) as e:
            raise TemplateError(
                f"chat template {self.name!r} failed to render: {type(e).__name__}: {e}") from e

    @property
    def digest(self) -> str:
        """Content digest ('tpl-…') over the source and the BOS/EOS strings (not the name)."""
        return digest_text(f"{self.source}\0{self.bos_token or ''}\0{self.eos_token or ''}",
                           "template")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def builtin(cls, name: str, bos_token: str | None = None,
                eos_token: str | None = None) -> "ChatTemplate":
        """A built-in format; None for bos/eos means the format's default.

            >>> ChatTemplate.builtin("llama2").bos_token
            '<s>'
        """
        try:
            spec = BUILTINS[name]
        except KeyError:
            raise TemplateError(
                f"unknown built-in chat template {name!r}; built-ins: {', '.join(BUILTINS)}") from None
        bos = bos_token if bos_token is not None else spec.bos_token
        eos = eos_token if eos_token is not None else spec.eos_token
        if spec.bos_policy == "none":
            bos = None
        return cls(name=name, source=spec.source, bos_token=bos, eos_token=eos)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "ChatTemplate":
        """The tokenizer's own template (`tokenizer.chat_template`) with its BOS/EOS strings."""
        source = getattr(tokenizer, "chat_template", None)
        if isinstance(source, Mapping):  # several named templates: HF uses 'default'
            if "default" not in source:
                raise TemplateError(
                    f"tokenizer has named chat templates {sorted(source)} but no 'default'; "
                    "pass one as a .jinja file")
            source = source["default"]
        if not source:
            raise TemplateError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__!r} "
                f"has no chat template; choose a built-in ({', '.join(BUILTINS)}) or a .jinja file")
        name = getattr(tokenizer, "name_or_path", "") or "tokenizer"
        return cls(name=str(name), source=source, bos_token=getattr(tokenizer, "bos_token", None),
                   eos_token=getattr(tokenizer, "eos_token", None))

    @classmethod
    def from_file(cls, path: str | Path, bos_token: str | None = None,
                  eos_token: str | None = None) -> "ChatTemplate":
        """A template read from a .jinja file (UTF-8), named after the file."""
        p = Path(path)
        try:
            source = p.read_text(encoding="utf-8")
        except OSError as e:
            raise TemplateError(f"{p}: cannot read chat template: {e.strerror or e}") from e
        try:
            return cls(name=p.name, source=source, bos_token=bos_token, eos_token=eos_token)
        except TemplateError as e:
            raise TemplateError(f"{p}: {e}") from e


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether `tokenizer(text)` puts a BOS token in front by itself (Llama-style tokenizers)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos_id


def resolve_chat_template(tokenizer: Any, spec: str | Path | None) -> ChatTemplate:
    """Pick the chat template a run uses.

    `spec` is None (the tokenizer's own template), a built-in name, or a path to a .jinja file.
    Built-ins and files take the tokenizer's BOS/EOS strings; a built-in whose BOS depends on the
    tokenizer (alpaca, zephyr) renders one only if the tokenizer would add one itself.

        >>> resolve_chat_template(None, "chatml").name
        'chatml'
    """
    if spec is None:
        if tokenizer is None:
            raise TemplateError("no chat template given and no tokenizer to take one from; "
                                f"choose a built-in ({', '.join(BUILTINS)}) or a .jinja file")
        return ChatTemplate.from_tokenizer(tokenizer)
    tok_bos = getattr(tokenizer, "bos_token", None) if tokenizer is not None else None
    tok_eos = getattr(tokenizer, "eos_token", None) if tokenizer is not None else None
    spec_str = str(spec)
    if spec_str in BUILTINS:
        b = BUILTINS[spec_str]
        bos = tok_bos
        if b.bos_policy == "tokenizer" and not (tokenizer is not None and tokenizer_adds_bos(tokenizer)):
            bos = None
        eos = tok_eos if b.uses_eos else None
        return ChatTemplate.builtin(spec_str, bos_token=bos, eos_token=eos)
    path = Path(spec_str)
    if path.is_file():
        return ChatTemplate.from_file(path, bos_token=tok_bos, eos_token=tok_eos)
    raise TemplateError(f"chat template {spec_str!r} is neither a built-in ({', '.join(BUILTINS)}) "
                        "nor an existing .jinja file")


__all__ = ["BUILTINS", "ChatTemplate", "TemplateRaised", "resolve_chat_template",
           "template_literals", "tokenizer_adds_bos"]
