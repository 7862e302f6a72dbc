"""Batched sampling with a KV cache that also returns each sampled token's log-probability.

Online RL needs, for every sampled response token y_t, log π(y_t | x, y_<t) under the policy
that sampled it (PPO's "old" log-probs). `sample` runs its own decoding loop over the model's
``past_key_values`` so that the log-probs come out of the same forward pass as the samples:

    prefill:  one forward over the left-padded prompts (B, P), keeping only the last logits
    step t:   z_t = logits of the last position                                  (B, V)
              log π_T(. | x, y_<t) = log_softmax(z_t / T)      <- recorded at the sampled token
              y_t ~ softmax(filter(z_t / T))                    filter = top-k, then top-p
              feed y_t with the cache; attention mask and position ids grow by one column

**Which log-prob is recorded.** ``logprobs[b, t] = log softmax(z_t / T)[y_t]``: the policy's
softmax at temperature T *before* top-k / top-p truncation (the "unmodified" tempered policy
π_T). With top-k / top-p the tokens are drawn from the renormalised truncated distribution, so
the recorded value is then not the probability the token was drawn with; it is the probability
of the smooth policy π_T that training differentiates, which is what PPO's ratio
π_θ,T / π_old,T compares (the convention of TRL's PPO/GRPO trainers, which divide the logits
by the sampling temperature in their training forward). Rescoring with the same convention:
`alignkit.rollout.logprobs.rollout_token_logprobs(..., temperature=T)`. Greedy decoding
(``temperature == 0``) records the untempered policy's log-probs (T = 1), and
``Rollout.temperature`` is then 1.0: the temperature to rescore with.

**Layout.** Prompts are left-padded to a common length P (so every row's next token is in the
same column); responses are right-padded to R (the longest response in the batch).
``input_ids = cat(prompt_ids, response_ids)`` with ``attention_mask = cat(prompt_mask,
response_mask)`` is then one row per sequence with padding on both sides; position ids count
real tokens only (`alignkit.models.heads.positions_from_mask`), so RoPE sees each row as if
it were unpadded.

**Stopping.** A row stops at the first EOS / end-of-turn id (the id is kept as the response's
last token: it is an action the policy must learn to take, with its own log-prob), at a stop
string (the token completing it is kept; the text cut is `completion_texts`' job), or after
``max_new_tokens``. Stopped rows keep being fed padding (masked out) until every row has
stopped, then the loop ends. Stop strings are checked by decoding each running row's response
after every step (a Python loop over rows, only when ``decode.stop`` is non-empty).

**Reproducibility.** Draws come from one `torch.Generator` seeded with ``decode.seed`` (or the
generator passed in), never from the global RNG: the same model, prompts, spec and seed give the
same samples, and sampling does not move the training RNG.

    >>> from alignkit.models.loading import load_model, register_builtin, _doc_tiny_factory
    >>> register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    >>> lm = load_model("builtin:doc-tiny")
    >>> spec = DecodeSpec(temperature=1.0, max_new_tokens=4, seed=3)
    >>> r = sample(lm.model, lm.tokenizer, [[3, 4], [5]], spec)
    >>> r.prompt_ids.shape, r.response_ids.shape[0], r.logprobs.shape == r.response_ids.shape
    (torch.Size([2, 2]), 2, True)
    >>> torch.equal(sample(lm.model, lm.tokenizer, [[3, 4], [5]], spec).response_ids, r.response_ids)
    True
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import torch

from alignkit.contract.specs import DecodeSpec
from alignkit.rollout.generate import stop_token_ids


@dataclass
class Rollout:
    """Sampled responses with their log-probs; every tensor's first axis is the sequence."""

    prompt_ids: torch.Tensor  # (B, P) long, left-padded with the pad id
    prompt_mask: torch.Tensor  # (B, P) long, 1 on real prompt tokens
    response_ids: torch.Tensor  # (B, R) long, right-padded with the pad id; includes the EOS
    response_mask: torch.Tensor  # (B, R) long, 1 on generated tokens (EOS included)
    logprobs: torch.Tensor  # (B, R) float32, log π_T(y_t | x, y_<t); 0 where masked
    finished: torch.Tensor  # (B,) bool, the row emitted an EOS / end-of-turn id
    stopped: torch.Tensor  # (B,) bool, the row ended on a stop string
    temperature: float  # T of the recorded log-probs (1.0 for greedy): rescore with it

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) number of response tokens per row (EOS included)."""
        return self.response_mask.sum(dim=1)

    @property
    def truncated(self) -> torch.Tensor:
        """(B,) bool: the row ran out of ``max_new_tokens`` (no EOS, no stop string)."""
        return ~(self.finished | self.stopped)

    def prompts(self) -> list[list[int]]:
        """The real prompt tokens of each row."""
        return [row[m.bool()].tolist() for row, m in zip(self.prompt_ids, self.prompt_mask)]

    def responses(self) -> list[list[int]]:
        """The real response tokens of each row (the EOS id included when there is one)."""
        return [row[m.bool()].tolist() for row, m in zip(self.response_ids, self.response_mask)]

    def select(self, index: torch.Tensor | Sequence[int]) -> "Rollout":
        """The rows `index` (a minibatch), in that order."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.prompt_ids.device)
        return Rollout(**{f.name: (getattr(self, f.name)[idx] if f.name != "temperature"
                                   else self.temperature) for f in fields(self)})

    def to(self, device: Any) -> "Rollout":
        return Rollout(**{f.name: (getattr(self, f.name).to(device) if f.name != "temperature"
                                   else self.temperature) for f in fields(self)})


# ----------------------------------------------------------------------------- filters

def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value are kept), -inf elsewhere.

    logits (B, V) -> (B, V). ``k == 0`` or ``k >= V`` is a no-op.

        >>> top_k_filter(torch.tensor([[1.0, 3.0, 2.0]]), 2)
        tensor([[-inf, 3., 2.]])
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration"):
    keep the smallest set of most likely tokens whose probability reaches ``p``; -inf elsewhere.

    A token is kept when the probability mass of the tokens strictly more likely than it (in
    sorted order) is below ``p``, so the most likely token is always kept. ``p >= 1`` is a
    no-op. logits (B, V) -> (B, V).

        >>> top_p_filter(torch.log(torch.tensor([[0.5, 0.3, 0.2]])), 0.7)  # 0.5 < 0.7, 0.8 >= 0.7
        tensor([[-0.6931, -1.2040,    -inf]])
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# ----------------------------------------------------------------------------- sampling

def _left_pad(prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, P - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[i, P - len(p):] = 1
    return ids, mask


def _stop_string_hits(tokenizer: Any, response_ids: torch.Tensor, response_mask: torch.Tensor,
                      alive: torch.Tensor, stops: Sequence[str]) -> torch.Tensor:
    """(B,) bool: running rows whose decoded response so far contains a stop string."""
    hits = torch.zeros_like(alive)
    for b in alive.nonzero().flatten().tolist():
        text = tokenizer.decode(response_ids[b][response_mask[b].bool()].tolist(),
                                skip_special_tokens=True)
        hits[b] = any(s in text for s in stops)
    return hits


@torch.no_grad()
def _sample_chunk(model: Any, prompts: Sequence[Sequence[int]], decode: DecodeSpec, *,
                  stops: torch.Tensor, pad: int, tokenizer: Any,
                  generator: torch.Generator | None) -> Rollout:
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = _left_pad(prompts, pad)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    B, P = prompt_ids.shape
    n_new = decode.max_new_tokens
    greedy = decode.temperature == 0
    T = 1.0 if greedy else decode.temperature

    # The attention mask of the whole decode, filled as tokens arrive: (B, P + n_new).
    mask = torch.cat([prompt_mask, torch.zeros(B, n_new, dtype=torch.long, device=device)], 1)
    positions = (prompt_mask.cumsum(1) - 1).clamp(min=0)  # (B, P)
    next_pos = prompt_mask.sum(1, keepdim=True)  # (B, 1) position of the first new token

    response = torch.full((B, n_new), pad, dtype=torch.long, device=device)
    response_mask = torch.zeros((B, n_new), dtype=torch.long, device=device)
    logprobs = torch.zeros((B, n_new), dtype=torch.float32, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    stopped = torch.zeros(B, dtype=torch.bool, device=device)

    # Without left padding the mask is all ones at every step (new tokens, pads of finished
    # rows included, are always visible): pass none, so the model skips building a mask from it
    # each step. Same attention either way; it is what keeps batch 1 at generate()'s speed.
    unpadded = bool(prompt_mask.all())
    out = model(input_ids=prompt_ids, attention_mask=None if unpadded else prompt_mask,
                position_ids=positions, use_cache=True, logits_to_keep=1)
    past = out.past_key_values
    filtering = decode.top_k > 0 or decode.top_p < 1.0
    steps = 0
    for t in range(n_new):
        logits = out.logits[:, -1].float()  # (B, V)
        scaled = logits if T == 1.0 else logits / T
        logp_all = torch.log_softmax(scaled, dim=-1)  # the unmodified tempered policy
        if greedy:
            token = logits.argmax(dim=-1)
        else:
            probs = (torch.softmax(top_p_filter(top_k_filter(scaled, decode.top_k), decode.top_p),
                                   dim=-1) if filtering else logp_all.exp())
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        alive = ~(finished | stopped)
        token = torch.where(alive, token, pad)
        response[:, t] = token
        response_mask[:, t] = alive.long()
        logprobs[:, t] = torch.where(alive, logp_all.gather(1, token[:, None]).squeeze(1), 0.0)
        finished |= alive & torch.isin(token, stops)
        if decode.stop:
            stopped |= _stop_string_hits(tokenizer, response[:, :t + 1], response_mask[:, :t + 1],
                                         alive & ~finished, decode.stop)
        steps = t + 1
        if bool((finished | stopped).all()) or t == n_new - 1:
            break
        mask[:, P + t] = 1  # the new token is visible to itself and later ones (padding too)
        out = model(input_ids=token[:, None],
                    attention_mask=None if unpadded else mask[:, :P + t + 1],
                    position_ids=next_pos + t, past_key_values=past, use_cache=True)
        past = out.past_key_values
    return Rollout(prompt_ids=prompt_ids, prompt_mask=prompt_mask,
                   response_ids=response[:, :steps], response_mask=response_mask[:, :steps],
                   logprobs=logprobs[:, :steps], finished=finished, stopped=stopped,
                   temperature=T)


def _pad_to(x: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    missing = width - x.shape[1]
    if missing == 0:
        return x
    fill = torch.full((x.shape[0], missing), value, dtype=x.dtype, device=x.device)
    return torch.cat([fill, x] if left else [x, fill], dim=1)


def concat_rollouts(parts: Sequence[Rollout], pad: int) -> Rollout:
    """One Rollout from several (re-padding prompts on the left, responses on the right)."""
    if not parts:
        raise ValueError("no rollouts to concatenate")
    if len({r.temperature for r in parts}) != 1:
        raise ValueError("rollouts sampled at different temperatures cannot be concatenated")
    if len(parts) == 1:
        return parts[0]
    P = max(r.prompt_ids.shape[1] for r in parts)
    R = max(r.response_ids.shape[1] for r in parts)
    return Rollout(
        prompt_ids=torch.cat([_pad_to(r.prompt_ids, P, pad, True) for r in parts]),
        prompt_mask=torch.cat([_pad_to(r.prompt_mask, P, 0, True) for r in parts]),
        response_ids=torch.cat([_pad_to(r.response_ids, R, pad, False) for r in parts]),
        response_mask=torch.cat([_pad_to(r.response_mask, R, 0, False) for r in parts]),
        logprobs=torch.cat([_pad_to(r.logprobs, R, 0.0, False) for r in parts]),
        finished=torch.cat([r.finished for r in parts]),
        stopped=torch.cat([r.stopped for r in parts]),
        temperature=parts[0].temperature)


def sample(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], decode: DecodeSpec, *,
           generator: torch.Generator | None = None, stop_ids: Sequence[int] | None = None
           ) -> Rollout:
    """Sample one response per prompt (token ids, e.g. from `encode_prompt`) as a `Rollout`.

    Prompts go through the model in chunks of ``decode.batch_size``, in order. ``generator``
    defaults to a new one seeded with ``decode.seed`` on the model's device. ``stop_ids``
    defaults to the tokenizer's EOS plus the model's generation-config EOS ids. The model runs
    in eval mode (no dropout); its train/eval mode is restored afterwards.
    """
    if not prompts:
        raise ValueError("no prompts to sample from")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompts[{i}] is empty; the first token needs a context")
    if decode.stop and tokenizer is None:
        raise ValueError(f"stop strings {decode.stop} need a tokenizer to decode responses")
    device = next(model.parameters()).device
    stops = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer, model)
    if not stops:
        raise ValueError("no stop (EOS) token id: give stop_ids or a tokenizer with an EOS")
    pad = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None \
        else stops[0]
    if generator is None and decode.temperature > 0:
        generator = torch.Generator(device=device).manual_seed(decode.seed)
    stops_t = torch.tensor(stops, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        parts = [_sample_chunk(model, prompts[s:s + decode.batch_size], decode, stops=stops_t,
                               pad=pad, tokenizer=tokenizer, generator=generator)
                 for s in range(0, len(prompts), decode.batch_size)]
    finally:
        model.train(was_training)
    return concat_rollouts(parts, pad)


def completion_texts(rollout: Rollout, tokenizer: Any, stop: Sequence[str] = ()) -> list[str]:
    """Each response as text: special tokens (the EOS) dropped, cut before the first stop string.

        >>> class Tok:
        ...     def decode(self, ids, skip_special_tokens=True): return "".join(map(str, ids))
        >>> r = Rollout(torch.ones(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long),
        ...             torch.tensor([[1, 2, 3, 0]]), torch.tensor([[1, 1, 1, 0]]),
        ...             torch.zeros(1, 4), torch.tensor([False]), torch.tensor([True]), 1.0)
        >>> completion_texts(r, Tok(), stop=("23",))
        ['1']
    """
    out = []
    for ids in rollout.responses():
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cuts = [text.find(s) for s in stop if s and s in text]
        out.append(text[:min(cuts)] if cuts else text)
    return out


__all__ = ["Rollout", "completion_texts", "concat_rollouts", "sample", "top_k_filter",
           "top_p_filter"]
