"""Text generators for synthetic-data stages: a local model, or an OpenAI-compatible endpoint.

Both implement one protocol::

    generate(prompts: list[str], max_new_tokens: int, temperature: float, seed: int) -> list[str]

one reply per prompt, in order. Each prompt is sent as a single user message through the
generator's chat template (local) or the endpoint's (HTTP). A generator also has an `id`
("local:PATH" or "openai:MODEL@URL") and a `digest` that rows record as provenance: for a local
model the content digest of its weights (`mdl-…`, as `load_model` computes it); for an endpoint
only the digest of (base URL, model name), since the weights behind a URL cannot be pinned.

    >>> class Echo:
    ...     id, digest = "echo", "mdl-000000000000"
    ...     def generate(self, prompts, max_new_tokens, temperature, seed):
    ...         return [p[:max_new_tokens] for p in prompts]
    >>> isinstance(Echo(), Generator)
    True
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alignkit.contract.digest import digest_obj
from alignkit.errors import AlignkitError, ConfigError

logger = logging.getLogger(__name__)

API_KEY_ENV = "ALIGNKIT_API_KEY"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})  # rate limited or a server-side failure


class GeneratorError(AlignkitError):
    """A generator could not produce replies: an endpoint that failed, refused or replied with
    something that is not a chat completion, or a prompt too long for a local model."""


@runtime_checkable
class Generator(Protocol):
    id: str  # what generated the text, e.g. "local:builtin:world-tiny"
    digest: str  # "mdl-…": the local model's content digest, or the endpoint's identity digest

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float,
                 seed: int) -> list[str]:
        ...


# ---------------------------------------------------------------- local model

class LocalModelGenerator:
    """Any model `alignkit.models.loading.load_model` can load, prompted through its chat template.

    Prompts are tokenised by `alignkit.data.encode.encode_prompt` (a user message that types a
    control token stays plain text) and sampled by `alignkit.rollout.generate.generate`
    (batched, KV cache, stop at end of turn). Special tokens are stripped from the replies.
    """

    def __init__(self, model: Any, *, chat_template: str | None = None, batch_size: int = 8,
                 top_p: float = 1.0, device: str = "auto"):
        from alignkit.data.templates import resolve_chat_template
        from alignkit.models.loading import LoadedModel, load_model

        lm = model if isinstance(model, LoadedModel) else load_model(model)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = lm.model.to(device)
        self.tokenizer = lm.tokenizer
        self.template = resolve_chat_template(lm.tokenizer, chat_template)
        self.batch_size = batch_size
        self.top_p = top_p
        self.id = f"local:{lm.spec.path}"
        self.digest = lm.digest
        self.spec = lm.spec
        self.max_positions = getattr(lm.model.config, "max_position_embeddings", None)

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "id": self.id, "digest": self.digest,
                "spec": self.spec.model_dump(mode="json"),
                "template": {"name": self.template.name, "digest": self.template.digest},
                "top_p": self.top_p, "batch_size": self.batch_size}

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float,
                 seed: int) -> list[str]:
        from alignkit.contract.specs import DecodeSpec
        from alignkit.data.encode import encode_prompt
        from alignkit.rollout.generate import generate

        if not prompts:
            return []
        ids = [encode_prompt(self.tokenizer, self.template, [{"role": "user", "content": p}])
               for p in prompts]
        if self.max_positions is not None:
            for i, p in enumerate(ids):
                if len(p) + max_new_tokens > self.max_positions:
                    raise GeneratorError(
                        f"{self.id}: prompt {i} is {len(p)} tokens; with max_new_tokens="
                        f"{max_new_tokens} it exceeds the model's {self.max_positions} positions "
                        "(use fewer or shorter in-context examples, or a smaller max_new_tokens)")
        decode = DecodeSpec(temperature=temperature, top_p=self.top_p,
                            max_new_tokens=max_new_tokens, seed=seed, batch_size=self.batch_size)
        out = generate(self.model, self.tokenizer, ids, decode)
        return [self.tokenizer.decode(o, skip_special_tokens=True) for o in out]


# ---------------------------------------------------------------- OpenAI-compatible endpoint

def _excerpt(body: bytes | str, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def parse_chat_completion(body: bytes, where: str) -> str:
    """The reply text `choices[0].message.content` of a chat-completions response body.

    Raises GeneratorError naming what is wrong: not JSON, not an object, an error object,
    no choices, or no string content.

        >>> parse_chat_completion(b'{"choices": [{"message": {"content": "Hi"}}]}', "stub")
        'Hi'
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GeneratorError(f"{where}: reply is not valid JSON ({e}); body starts "
                             f"{_excerpt(body)}") from None
    if not isinstance(data, dict):
        raise GeneratorError(f"{where}: reply must be a JSON object, got {type(data).__name__}: "
                             f"{_excerpt(body)}")
    if "error" in data and "choices" not in data:
        raise GeneratorError(f"{where}: endpoint returned an error object: {_excerpt(json.dumps(data['error']))}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise GeneratorError(f"{where}: reply has no non-empty 'choices' list (keys: "
                             f"{sorted(data)}); is base_url a chat-completions endpoint?")
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        raise GeneratorError(f"{where}: 'choices[0].message' is missing or not an object: "
                             f"{_excerpt(json.dumps(first))}")
    content = message.get("content")
    if not isinstance(content, str):
        reason = first.get("finish_reason") if isinstance(first, dict) else None
        raise GeneratorError(f"{where}: 'choices[0].message.content' is "
                             f"{'missing' if 'content' not in message else type(content).__name__}"
                             f", not a string (finish_reason={reason!r})")
    return content


class _Retryable(Exception):
    """A failure worth another attempt; carries the seconds the server asked us to wait."""

    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class OpenAIChatGenerator:
    """POST `{base_url}/chat/completions`, one request per prompt, `concurrency` at a time.

    Works with OpenAI and servers that copy its API (vLLM, llama.cpp server, TGI, Ollama).
    Retries HTTP 429 and 5xx, timeouts and dropped connections with exponential backoff:
    the wait before retry k (k = 1, 2, ...) is `backoff_s * 2**(k-1)` capped at `max_backoff_s`
    (or the server's Retry-After, capped the same), times a random factor in [0.5, 1] when
    `jitter` is on so that parallel requests do not retry in lockstep. Other 4xx statuses and
    malformed replies fail at once with a GeneratorError naming the problem. `timeout_s` bounds
    connecting and each read of the socket, not a whole slow-streaming reply.

    The API key comes from `api_key` or the environment variable ALIGNKIT_API_KEY; without one,
    no Authorization header is sent (local servers usually need none). It is never logged.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 60.0, max_retries: int = 4, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, jitter: bool = True, concurrency: int = 4,
                 top_p: float | None = None, sleep: Callable[[float], None] = time.sleep):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"generator base_url {base_url!r} must start with http:// or https://")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.jitter = jitter
        self.concurrency = concurrency
        self.top_p = top_p
        self._sleep = sleep
        self.id = f"openai:{model}@{base_url.rstrip('/')}"
        self.digest = digest_obj({"endpoint": base_url.rstrip("/"), "model": model}, "model")
        self.n_requests = 0  # HTTP requests sent, retries included

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai", "id": self.id, "digest": self.digest, "url": self.url,
                "model": self.model, "top_p": self.top_p, "api_key_set": self._api_key is not None}

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float,
                 seed: int) -> list[str]:
        jobs = [(p, max_new_tokens, temperature, seed + i) for i, p in enumerate(prompts)]
        if self.concurrency <= 1 or len(jobs) <= 1:
            return [self._complete(*job) for job in jobs]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            return list(pool.map(lambda job: self._complete(*job), jobs))

    def _complete(self, prompt: str, max_new_tokens: int, temperature: float, seed: int) -> str:
        payload: dict[str, Any] = {"model": self.model,
                                   "messages": [{"role": "user", "content": prompt}],
                                   "max_tokens": max_new_tokens, "temperature": temperature,
                                   "seed": seed, "n": 1}
        if self.top_p is not None:
            payload["top_p"] = self.top_p
        body = json.dumps(payload).encode("utf-8")
        last, retry_after = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt, retry_after))
            try:
                return parse_chat_completion(self._post(body), self.url)
            except _Retryable as e:
                last, retry_after = str(e), e.retry_after
                logger.warning("%s: %s (attempt %d of %d)", self.url, last, attempt + 1,
                               self.max_retries + 1)
        raise GeneratorError(f"{self.url}: gave up after {self.max_retries + 1} attempts; "
                             f"last failure: {last}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = retry_after if retry_after is not None else self.backoff_s * 2 ** (attempt - 1)
        delay = min(delay, self.max_backoff_s)
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        self.n_requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            detail = _excerpt(e.read() or b"")
            if e.code in RETRY_STATUS:
                raise _Retryable(f"HTTP {e.code} {detail}", _retry_after(e.headers)) from None
            hint = " (check the API key: config api_key or ALIGNKIT_API_KEY)" if e.code in (401, 403) else ""
            raise GeneratorError(f"{self.url}: HTTP {e.code} {e.reason}{hint}: {detail}") from None
        except (TimeoutError, socket.timeout):
            raise _Retryable(f"timed out after {self.timeout_s} s") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.timeout_s} s") from None
            raise _Retryable(f"connection failed: {e.reason}") from None
        except ConnectionError as e:  # reset or aborted mid-reply
            raise _Retryable(f"connection failed: {e}") from None


# ---------------------------------------------------------------- configuration

class GeneratorConfig(BaseModel):
    """Which generator a synth stage uses. `kind: local` needs `model`; `kind: openai` needs
    `base_url` and `model`. The API key is best given by ALIGNKIT_API_KEY (a key in the config
    is never written to a run directory)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "openai"] = "local"  # local model, or OpenAI-compatible HTTP endpoint
    model: str | None = None  # local: HF dir, .gguf file or builtin:NAME; openai: model name
    chat_template: str | None = None  # local: built-in name or .jinja file; None = the tokenizer's
    batch_size: int = Field(8, ge=1)  # local: prompts generated together
    device: str = "auto"  # local: "cpu", "cuda", ... ; auto = cuda when available
    top_p: float | None = Field(None, gt=0, le=1)  # nucleus sampling mass; None = off / server default
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1 (".../chat/completions" is appended)
    api_key: str | None = None  # openai: key; None = the ALIGNKIT_API_KEY environment variable
    timeout_s: float = Field(60.0, gt=0)  # openai: socket timeout per request (connect and each read)
    max_retries: int = Field(4, ge=0)  # openai: extra attempts after a 429/5xx/timeout
    backoff_s: float = Field(1.0, ge=0)  # openai: first retry wait; doubles each retry
    max_backoff_s: float = Field(30.0, ge=0)  # openai: cap on one wait
    concurrency: int = Field(4, ge=1)  # openai: requests in flight at once

    @model_validator(mode="after")
    def _required_per_kind(self) -> "GeneratorConfig":
        if not self.model:
            raise ValueError(f"generator.model is required for kind '{self.kind}' "
                             "(local: a model path, .gguf file or builtin:NAME; openai: the model name)")
        if self.kind == "openai" and not self.base_url:
            raise ValueError("generator.base_url is required for kind 'openai'")
        if self.kind == "local" and self.base_url:
            raise ValueError("generator.base_url is set but kind is 'local'; set kind: openai")
        return self

    def redacted(self) -> dict[str, Any]:
        """The config as written to manifests: an API key is replaced by '***'."""
        data = self.model_dump(mode="json")
        if data.get("api_key"):
            data["api_key"] = "***"
        return data


def build_generator(cfg: GeneratorConfig) -> "LocalModelGenerator | OpenAIChatGenerator":
    """The generator `cfg` describes (loads the local model: may take a while)."""
    if cfg.kind == "local":
        return LocalModelGenerator(cfg.model, chat_template=cfg.chat_template,
                                   batch_size=cfg.batch_size, top_p=cfg.top_p or 1.0,
                                   device=cfg.device)
    return OpenAIChatGenerator(cfg.base_url, cfg.model, api_key=cfg.api_key,
                               timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
                               backoff_s=cfg.backoff_s, max_backoff_s=cfg.max_backoff_s,
                               concurrency=cfg.concurrency, top_p=cfg.top_p)


__all__ = ["API_KEY_ENV", "Generator", "GeneratorConfig", "GeneratorError", "LocalModelGenerator",
           "OpenAIChatGenerator", "build_generator", "parse_chat_completion"]
