"""Quality scorers for training rows, and keeping rows by threshold or top-k.

Two scorers, one protocol (`score(rows) -> (N,) float64`, higher = better):

- `HashedQualityScorer`: a classifier trained on example files of good and bad rows. It is the
  guard's hashed n-gram logistic regression (`alignkit.guard.features` + `classifier`, word
  1-2-grams and char 3-5-grams, L2-regularised, class-balanced), trained with label 1 = good,
  so the score is P(good | text) = sigmoid(w·x + b), in [0, 1]. A row's text is `row_text`.
  It uses 2^16 hashed buckets by default (the guard: 2^18).
- `RewardModelScorer`: a reward model saved by `alignkit reward` (`load_reward_model`); the
  score is r(prompt, response), the reward of the row's conversation (`row_conversation`)
  encoded through the chat template exactly as the reward stage encodes it. Unbounded.

Selection: ``keep_threshold=t`` keeps rows with score >= t; ``top_k=k`` keeps the k highest
scores (ties broken by input order, so the choice is deterministic).

    >>> scorer = HashedQualityScorer.train(["a clear and correct answer"] * 3,
    ...                                    ["asdf qwer zxcv"] * 3)
    >>> s = scorer.score([{"text": "a correct answer"}, {"text": "qwer zxcv"}])
    >>> bool(s[0] > 0.5 > s[1])
    True
    >>> select([0.2, 0.9, 0.5, 0.9], top_k=2)
    [1, 3]
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alignkit.errors import ConfigError, DataError
from alignkit.synth.rows import row_conversation, row_text


QUALITY_DIM = 2**16  # hashed feature buckets of the quality scorer


class HashedQualityScorer:
    kind = "hashed"

    def __init__(self, classifier: Any):
        self.classifier = classifier  # alignkit.guard.classifier.LinearClassifier, label 1 = good

    @classmethod
    def train(cls, good_texts: Sequence[str], bad_texts: Sequence[str], *,
              features: Any = None, fit: Any = None) -> "HashedQualityScorer":
        """Fit on good (label 1) and bad (label 0) texts; `features`/`fit` as in the guard."""
        from alignkit.guard.classifier import train_classifier
        from alignkit.guard.features import FeatureSpec

        if not good_texts or not bad_texts:
            which = "good" if not good_texts else "bad"
            raise DataError(f"the quality scorer needs examples of both kinds, but there is no "
                            f"{which} example")
        texts = list(good_texts) + list(bad_texts)
        labels = [1] * len(good_texts) + [0] * len(bad_texts)
        if features is None:
            # 2^16 buckets, not the guard's 2^18: good/bad example sets are small (hundreds to
            # a few thousand rows), and the L-BFGS fit is about 10x faster.
            features = FeatureSpec(dim=QUALITY_DIM)
        return cls(train_classifier(texts, labels, features, fit))

    def score(self, rows: Sequence[Mapping[str, Any]], *, file: str | None = None,
              lines: Sequence[int] | None = None) -> np.ndarray:
        """(N,) P(good) per row; `file`/`lines` locate rows in errors."""
        lines = lines if lines is not None else range(1, len(rows) + 1)
        return self.classifier.score([row_text(r, file=file, line=ln)
                                      for r, ln in zip(rows, lines)])

    def describe(self) -> dict:
        fit = dict(self.classifier.fit or {})
        if "n_unsafe" in fit:  # the guard's label 1 is "unsafe"; here it is "good"
            fit["n_good"] = fit.pop("n_unsafe")
        return {"kind": self.kind, "features": self.classifier.spec.model_dump(mode="json"),
                "fit": fit}


class RewardModelScorer:
    kind = "reward"

    def __init__(self, model: Any, tokenizer: Any, template: Any, *, batch_size: int = 16,
                 max_length: int | None = None, path: str | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.batch_size, self.max_length, self.path = batch_size, max_length, path

    @classmethod
    def load(cls, path: str, *, template: str | None = None, batch_size: int = 16,
             max_length: int | None = None) -> "RewardModelScorer":
        """A reward model directory (`save_reward_model`); `template` None = its tokenizer's."""
        from alignkit.data.templates import resolve_chat_template
        from alignkit.models.heads import load_reward_model

        model, tokenizer = load_reward_model(path)
        return cls(model, tokenizer, resolve_chat_template(tokenizer, template),
                   batch_size=batch_size, max_length=max_length, path=str(path))

    def score(self, rows: Sequence[Mapping[str, Any]], *, file: str | None = None,
              lines: Sequence[int] | None = None) -> np.ndarray:
        """(N,) rewards, batched (right padding, which the reward head pools correctly); rows
        sorted by length so padding stays small. `file`/`lines` locate rows in errors."""
        import torch

        from alignkit.data.encode import encode_messages

        lines = lines if lines is not None else range(1, len(rows) + 1)
        ids = [encode_messages(self.tokenizer, self.template,
                               row_conversation(r, file=file, line=ln),
                               max_length=self.max_length, file=file, line=ln).input_ids
               for r, ln in zip(rows, lines)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros(len(ids), dtype=np.float64)
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), self.batch_size):
                    batch = order[start:start + self.batch_size]
                    width = max(len(ids[i]) for i in batch)
                    x = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, T)
                    mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
                    for b, i in enumerate(batch):
                        x[b, :len(ids[i])] = torch.tensor(ids[i])
                        mask[b, :len(ids[i])] = 1
                    rewards = self.model(x.to(device), mask.to(device))  # (B,)
                    out[batch] = rewards.double().cpu().numpy()
        finally:
            self.model.train(was_training)
        return out

    def describe(self) -> dict:
        return {"kind": self.kind, "path": self.path, "template": self.template.name,
                "template_digest": self.template.digest, "max_length": self.max_length}


def select(scores: Sequence[float], *, keep_threshold: float | None = None,
           top_k: int | None = None) -> list[int]:
    """Indices kept, ascending: score >= keep_threshold, or the top_k scores (ties: earlier row)."""
    if keep_threshold is not None and top_k is not None:
        raise ConfigError("give keep_threshold or top_k, not both")
    s = np.asarray(scores, dtype=np.float64)
    if keep_threshold is not None:
        return [int(i) for i in np.flatnonzero(s >= keep_threshold)]
    if top_k is not None:
        if top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {top_k}")
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))
        return sorted(order[:top_k])
    return list(range(len(s)))
