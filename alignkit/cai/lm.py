"""A chat model seen the way CAI uses it: reply to conversations, and score answer choices.

`ChatLM.reply` samples (or greedily decodes) one reply per conversation through the chat
template (`alignkit.data.encode.encode_prompt`, the prefix training sees) and the batched
generator of `alignkit.rollout.generate`.

`ChatLM.choice_logprobs` gives, for each conversation, the log-probability of each answer choice
as the assistant's next token. The choices are written as full assistant replies and tokenised
through the same chat template; the scored token of choice i is the first token where the
choices' encodings part, and the context is the shared prefix before it. With the world's
template the reply "A" starts with the token " A"; with "(A)"/"(B)" the shared "(" becomes
context, like the "The answer is: (" prompt of Bai et al. 2022. One forward per conversation,
left-padded so that the last position is the scored one (`logits_to_keep=1`: no full
(B, T, V) logits).

    >>> from alignkit.models.loading import load_model
    >>> lm = ChatLM.from_loaded(load_model("builtin:world-tiny"))
    >>> [len(x) for x in lm.choice_logprobs([[{"role": "user", "content": "A or B?"}]], ("A", "B"))]
    [2]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from alignkit.contract.specs import DecodeSpec
from alignkit.errors import ConfigError


@dataclass
class ChatLM:
    """A causal LM, its tokenizer and chat template, and the model's digest (for provenance)."""

    model: Any
    tokenizer: Any
    template: Any  # alignkit.data.templates.ChatTemplate
    digest: str = "unknown"  # "mdl-…"
    batch_size: int = 16  # conversations per forward in choice_logprobs

    @classmethod
    def load(cls, spec: Any, template: str | None = None) -> "ChatLM":
        from alignkit.models.loading import load_model

        return cls.from_loaded(load_model(spec), template)

    @classmethod
    def from_loaded(cls, loaded: Any, template: str | None = None) -> "ChatLM":
        from alignkit.data.templates import resolve_chat_template

        return cls(loaded.model, loaded.tokenizer,
                   resolve_chat_template(loaded.tokenizer, template), loaded.digest)

    # ------------------------------------------------------------------ generation

    def reply(self, conversations: Sequence[Sequence[dict]], decode: DecodeSpec) -> list[str]:
        """One reply per conversation (special tokens stripped, surrounding space trimmed)."""
        from alignkit.data.encode import encode_prompt
        from alignkit.rollout.generate import generate

        if not conversations:
            return []
        prompts = [encode_prompt(self.tokenizer, self.template, conv) for conv in conversations]
        outs = generate(self.model, self.tokenizer, prompts, decode)
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in outs]

    # ------------------------------------------------------------------ choice scoring

    def choice_contexts(self, conversation: Sequence[dict],
                        choices: Sequence[str]) -> tuple[list[int], list[int]]:
        """(context ids, one token id per choice): where the choices' encodings first differ."""
        from alignkit.data.encode import encode_messages, encode_prompt

        prompt = encode_prompt(self.tokenizer, self.template, conversation)
        full = [encode_messages(self.tokenizer, self.template,
                                [*conversation, {"role": "assistant", "content": c}]).input_ids
                for c in choices]
        n = min(len(f) for f in full)
        cut = next((t for t in range(n) if len({f[t] for f in full}) > 1), n)
        tokens = [f[cut] if cut < len(f) else None for f in full]
        if cut < len(prompt) or None in tokens or len(set(tokens)) < len(tokens):
            raise ConfigError(f"answer choices {list(choices)} are not told apart by one next "
                              f"token after the prompt under chat template "
                              f"{getattr(self.template, 'name', '?')!r}; choose other choices")
        return full[0][:cut], tokens

    def choice_logprobs(self, conversations: Sequence[Sequence[dict]],
                        choices: Sequence[str]) -> list[list[float]]:
        """log π(choice_i's token | conversation, assistant turn opened), per conversation.

        Returns one list of len(choices) log-probs (natural log, full-vocabulary softmax) per
        conversation, in order.
        """
        import torch

        items = [self.choice_contexts(c, choices) for c in conversations]
        # Batched in order of length (less padding); results go back to the input order.
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        out: list[list[float]] = [[] for _ in items]
        try:
            with torch.no_grad():
                for start in range(0, len(order), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    chunk = [items[i] for i in idx]
                    T = max(len(ctx) for ctx, _ in chunk)
                    ids = torch.zeros((len(chunk), T), dtype=torch.long)
                    mask = torch.zeros((len(chunk), T), dtype=torch.long)
                    for i, (ctx, _) in enumerate(chunk):  # left padding: last column is scored
                        ids[i, T - len(ctx):] = torch.tensor(ctx, dtype=torch.long)
                        mask[i, T - len(ctx):] = 1
                    positions = (mask.cumsum(-1) - 1).clamp(min=0)
                    kw = dict(input_ids=ids.to(device), attention_mask=mask.to(device),
                              position_ids=positions.to(device))
                    try:
                        logits = self.model(**kw, logits_to_keep=1).logits[:, -1, :]  # (B, V)
                    except TypeError:  # an architecture without logits_to_keep: full logits
                        logits = self.model(**kw).logits[:, -1, :]
                    logps = torch.log_softmax(logits.float(), dim=-1)
                    index = torch.tensor([tok for _, tok in chunk], dtype=torch.long, device=device)
                    for i, row in zip(idx, logps.gather(1, index).cpu().tolist()):
                        out[i] = row
        finally:
            if was_training:
                self.model.train()
        return out


__all__ = ["ChatLM"]
