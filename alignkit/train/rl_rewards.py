"""Reward sources of the `rl` stage: a reward model, a Python function, or world exact match.

The score of a completion is the weighted sum over the configured sources,

    score_i = Σ_s  w_s · r_s(prompt_i, completion_i)

Each source sees the completion as **text** (special tokens such as the end-of-turn token
dropped, cut before a stop string), so a reward model with another tokenizer, or a function,
judges what a user would read:

- ``reward_model``: a directory written by the `reward` stage (`alignkit.models.heads`);
  the prompt messages plus ``{"role": "assistant", "content": completion}`` are encoded with
  the reward model's own tokenizer and chat template and scored at the last token. The
  template closes the assistant turn even when the policy did not (it ran out of tokens), so
  truncation is invisible to the reward model: that is what `missing_eos_penalty` is for.
- ``function``: ``path = "package.module:function"`` or ``"path/to/file.py:function"``, called
  as ``fn(prompts, completions, **fields)`` -> one float per completion, where ``prompts`` are
  the last user message texts and ``fields`` are ``answers`` (the prompt rows' ``answer``,
  None where absent) and ``messages`` (the prompt message lists), passed when the function
  accepts them by name or through ``**kwargs``.
- ``world_exact_match``: `alignkit.world.rewards.exact_match_reward` (1 if the normalised
  completion equals the normalised answer).

    >>> src = RewardSource(kind="function", path="alignkit.world.rewards:exact_match_reward")
    >>> scorer = RewardScorer([src])
    >>> scorer(prompts=[[{"role": "user", "content": "2 plus 3?"}]], completions=["5"],
    ...        answers=["5"])[0].tolist()
    [1.0]
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, model_validator

from alignkit.errors import ConfigError

RewardFn = Callable[..., Sequence[float]]


class RewardSource(BaseModel):
    """One term of the score: which reward, where it comes from, and its weight."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reward_model", "function", "world_exact_match"]  # what computes the reward
    path: str | None = None  # reward_model: directory; function: "module:function" or "file.py:function"
    weight: float = 1.0  # multiplies this source's reward in the summed score

    @model_validator(mode="after")
    def _path_matches_kind(self) -> "RewardSource":
        if self.kind in ("reward_model", "function") and not self.path:
            raise ValueError(f"a {self.kind} reward source needs `path`")
        if self.kind == "world_exact_match" and self.path:
            raise ValueError("a world_exact_match reward source takes no `path`")
        if self.kind == "function" and ":" not in (self.path or ""):
            raise ValueError(f"function path {self.path!r} must be 'module:function' or "
                             "'file.py:function'")
        return self

    @property
    def name(self) -> str:
        """Short label for logs, e.g. ``function:contains_seven``."""
        if self.kind == "world_exact_match":
            return self.kind
        if self.kind == "function":
            return f"function:{self.path.rsplit(':', 1)[1]}"
        return f"reward_model:{Path(self.path).name}"


def load_function(path: str) -> RewardFn:
    """The callable named by ``module:function`` or ``file.py:function`` (ConfigError if absent)."""
    target, _, name = path.rpartition(":")
    if not target or not name:
        raise ConfigError(f"reward function {path!r}: expected 'module:function' or "
                          "'file.py:function'")
    if target.endswith(".py"):
        file = Path(target)
        if not file.is_file():
            raise ConfigError(f"reward function {path!r}: file {file} does not exist")
        spec = importlib.util.spec_from_file_location(f"alignkit_reward_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ConfigError(f"reward function {path!r}: cannot import {target!r} ({err})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"reward function {path!r}: {target} has no callable {name!r}")
    return fn


def _accepted(fn: RewardFn, fields: dict[str, Any]) -> dict[str, Any]:
    """The keyword fields `fn` accepts (by name, or all of them through **kwargs)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return fields
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return fields
    names = {p.name for p in params}
    return {k: v for k, v in fields.items() if k in names}


class _RewardModelSource:
    """Scores text with a reward model directory (its own tokenizer and chat template)."""

    def __init__(self, path: str, device: Any, batch_size: int = 32):
        from alignkit.data.templates import resolve_chat_template
        from alignkit.models.heads import load_reward_model

        self.model, self.tokenizer = load_reward_model(path)
        self.model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.template = resolve_chat_template(self.tokenizer, None)
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, messages: Sequence[list[dict]], completions: Sequence[str]) -> list[float]:
        from alignkit.data.encode import encode_messages

        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        rows = [encode_messages(self.tokenizer, self.template,
                                list(m) + [{"role": "assistant", "content": c}]).input_ids
                for m, c in zip(messages, completions)]
        out: list[float] = []
        for s in range(0, len(rows), self.batch_size):
            chunk = rows[s:s + self.batch_size]
            T = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), T), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), T), dtype=torch.long)
            for i, r in enumerate(chunk):
                ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
                mask[i, :len(r)] = 1
            out += self.model(ids.to(device), mask.to(device)).float().cpu().tolist()
        return out


class RewardScorer:
    """score = Σ_s w_s r_s over the configured sources (see the module docstring).

    ``scorer(prompts=..., completions=..., answers=...)`` -> ``(scores (N,) float32, per-source
    mean rewards {"rewards/<name>": mean})``; ``prompts`` are message lists.
    """

    def __init__(self, sources: Sequence[RewardSource], device: Any = "cpu"):
        if not sources:
            raise ConfigError("rl needs at least one reward source (`rewards:`)")
        self.sources = list(sources)
        self._fns: list[Callable[..., Sequence[float]]] = []
        for src in self.sources:
            if src.kind == "reward_model":
                self._fns.append(self._model_fn(_RewardModelSource(src.path, device)))
            elif src.kind == "function":
                self._fns.append(load_function(src.path))
            else:
                from alignkit.world.rewards import exact_match_reward

                self._fns.append(exact_match_reward)

    @staticmethod
    def _model_fn(rm: _RewardModelSource) -> RewardFn:
        def score(prompts, completions, *, messages, **_):
            return rm(messages, completions)
        return score

    def __call__(self, *, prompts: Sequence[list[dict]], completions: Sequence[str],
                 answers: Sequence[str | None] | None = None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts but {n} completions")
        texts = [_last_user_text(m) for m in prompts]
        fields = {"answers": list(answers) if answers is not None else [None] * n,
                  "messages": [list(m) for m in prompts]}
        total = torch.zeros(n, dtype=torch.float32)
        means: dict[str, float] = {}
        for src, fn in zip(self.sources, self._fns):
            values = fn(texts, list(completions), **_accepted(fn, fields))
            r = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
            if r.shape != (n,):
                raise ConfigError(f"reward source {src.name} returned {r.numel()} values for {n} "
                                  "completions; it must return one float per completion")
            if not bool(torch.isfinite(r).all()):
                bad = int((~torch.isfinite(r)).nonzero()[0])
                raise ConfigError(f"reward source {src.name} returned a non-finite reward "
                                  f"({float(r[bad])}) for completion {bad}: {completions[bad]!r}")
            total += src.weight * r
            key = f"rewards/{src.name}"
            if key in means:  # two sources of the same name: number the later ones
                key = f"{key}#{len([k for k in means if k.startswith(key)]) + 1}"
            means[key] = float(r.mean())
        return total, means


def _last_user_text(messages: Sequence[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


__all__ = ["RewardScorer", "RewardSource", "load_function"]
