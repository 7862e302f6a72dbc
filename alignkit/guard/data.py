"""Labelled texts for the guard: read from JSONL/JSON/CSV/Parquet files, or the built-in world.

A row has a text field (a string, or a list of chat messages whose contents are joined) and a
label field: ``"unsafe"``/``"safe"`` (any case), 1/0, ``"1"``/``"0"`` (CSV) or true/false.
Label 1 means unsafe (the guard should flag it). Several text fields are joined with a blank
line, e.g. ``text_field="prompt+completion"`` to score a whole exchange.

    >>> d = labelled_from_rows([{"prompt": "burn the barn", "label": "unsafe"},
    ...                         {"prompt": "bake bread", "label": 0}], "prompt", "label")
    >>> d.texts, d.labels.tolist(), d.n_unsafe
    (['burn the barn', 'bake bread'], [1, 0], 1)
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignkit.contract.digest import digest_obj
from alignkit.errors import ConfigError, DataError

UNSAFE_LABELS = {"unsafe": 1, "safe": 0, "1": 1, "0": 0, "true": 1, "false": 0}


@dataclass
class LabelledTexts:
    """N texts with labels (1 = unsafe) and, optionally, a slice value per text."""

    texts: list[str]
    labels: np.ndarray  # (N,) int64 in {0, 1}
    source: str
    lines: list[int] = field(default_factory=list)  # where each text came from (1-based)
    slices: list[str] | None = None  # e.g. the world's prompt `type`, for per-slice rates
    slice_field: str | None = None

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def n_unsafe(self) -> int:
        return int(self.labels.sum())

    @property
    def n_benign(self) -> int:
        return self.n - self.n_unsafe

    @property
    def digest(self) -> str:
        """`ds-...` over (text, label) pairs in order."""
        return digest_obj([[t, int(y)] for t, y in zip(self.texts, self.labels)], "dataset")

    def subset(self, idx: Sequence[int], source: str | None = None) -> "LabelledTexts":
        return LabelledTexts(texts=[self.texts[i] for i in idx], labels=self.labels[list(idx)],
                             source=source or self.source,
                             lines=[self.lines[i] for i in idx] if self.lines else [],
                             slices=[self.slices[i] for i in idx] if self.slices else None,
                             slice_field=self.slice_field)

    def manifest_entry(self) -> dict:
        return {"source": self.source, "digest": self.digest, "n_rows": self.n,
                "n_unsafe": self.n_unsafe, "n_benign": self.n_benign}


def parse_label(value: Any, *, file: str | None, line: int, field: str) -> int:
    """1 for unsafe, 0 for safe; anything else is a DataError naming file, line and field."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in UNSAFE_LABELS:
        return UNSAFE_LABELS[value.strip().lower()]
    raise DataError(f"expected 'unsafe'/'safe' or 1/0, got {value!r}", file=file, line=line,
                    field=field)


def _text_of(value: Any, *, file: str | None, line: int, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, Mapping) for m in value):
        parts = []
        for j, m in enumerate(value):
            content = m.get("content")
            if not isinstance(content, str):
                raise DataError(f"message {j} has no string 'content'", file=file, line=line,
                                field=field)
            parts.append(content)
        return "\n".join(parts)
    raise DataError(f"expected a string or a list of messages, got {type(value).__name__}",
                    file=file, line=line, field=field)


def text_fields(spec: str) -> list[str]:
    """'prompt+completion' -> ['prompt', 'completion']."""
    names = [s.strip() for s in spec.split("+")]
    if not all(names):
        raise ConfigError(f"text field {spec!r} has an empty name; use e.g. 'prompt' or "
                          "'prompt+completion'")
    return names


def _labelled(rows: Iterable[tuple[int, Any]], file: str | None, text_field: str,
              label_field: str, slice_field: str | None, source: str) -> LabelledTexts:
    names = text_fields(text_field)
    texts, labels, lines, slices = [], [], [], []
    for line, row in rows:
        if isinstance(row, DataError):
            raise row
        if not isinstance(row, Mapping):
            raise DataError(f"expected an object, got {type(row).__name__}", file=file, line=line)
        parts = []
        for name in names:
            if row.get(name) is None:
                raise DataError("missing", file=file, line=line, field=name)
            parts.append(_text_of(row[name], file=file, line=line, field=name))
        text = "\n\n".join(parts)
        if not text.strip():
            raise DataError("empty text", file=file, line=line, field=names[0])
        if row.get(label_field) is None:
            raise DataError("missing", file=file, line=line, field=label_field)
        labels.append(parse_label(row[label_field], file=file, line=line, field=label_field))
        if slice_field is not None:
            if row.get(slice_field) is None:
                raise DataError("missing (needed as the slice field)", file=file, line=line,
                                field=slice_field)
            slices.append(str(row[slice_field]))
        texts.append(text)
        lines.append(line)
    if not texts:
        raise DataError("no rows", file=file)
    return LabelledTexts(texts=texts, labels=np.asarray(labels, dtype=np.int64), source=source,
                         lines=lines, slices=slices if slice_field is not None else None,
                         slice_field=slice_field)


def labelled_from_rows(rows: Sequence[Mapping], text_field: str = "prompt",
                       label_field: str = "label", slice_field: str | None = None,
                       source: str = "<list>") -> LabelledTexts:
    """Labelled texts from in-memory rows (row i is "line" i+1 in errors)."""
    return _labelled(enumerate(rows, start=1), None, text_field, label_field, slice_field, source)


def read_labelled(path: str | os.PathLike, text_field: str = "prompt", label_field: str = "label",
                  slice_field: str | None = None) -> LabelledTexts:
    """Labelled texts from a JSONL / JSON / CSV / Parquet file (optionally .gz).

    The container formats, line numbering (JSONL physical line; CSV line a row starts on; row
    index for JSON and Parquet) and decoding errors are those of `alignkit.data.readers`; the
    record schema is the guard's own (any text and label field names), so the rows are not
    validated as one of the TRL record kinds.
    """
    # The container layer of the readers module, without its record-kind validation.
    from alignkit.data.readers import _resolve_source

    rows, name, _ = _resolve_source(path, None)
    return _labelled(((r.line, r.value) for r in rows), name, text_field, label_field,
                     slice_field, name)


# --------------------------------------------------------------------------- the world


def _unique_prompts(rows: list[dict]) -> list[dict]:
    """First row of every distinct prompt: a repeated text in both calibration and test would
    make the test measure memory of the calibration split, not generalisation."""
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["prompt"] not in seen:
            seen.add(r["prompt"])
            out.append(r)
    return out


def world_guard_data(seed: int = 0, n_train_per_slice: int = 80, n_heldout_per_slice: int = 80,
                     ) -> tuple[LabelledTexts, LabelledTexts, LabelledTexts]:
    """(train, calib, test) from the world's safety rows, sliced by prompt `type`.

    train: `make_safety_data(split="train")`. calib and test: `split="heldout"` (phrasings,
    people, towns and words never seen in train) divided in halves *within each type*, by a
    seeded shuffle, so both halves hold every slice. Rows are deduplicated by prompt text first,
    so calib and test share no text (they do share held-out phrasings: calibration is meant to
    happen on the distribution the guard will face).
    """
    from alignkit.world.build import WorldConfig
    from alignkit.world.facts import make_facts
    from alignkit.world.safety import make_safety_data

    cfg = WorldConfig(seed=seed)
    facts = make_facts(cfg.seed, n_people=cfg.n_people, n_towns=cfg.n_towns)
    train_rows = _unique_prompts(make_safety_data(facts, seed=seed, split="train",
                                                  n_per_slice=n_train_per_slice))
    held_rows = _unique_prompts(make_safety_data(facts, seed=seed, split="heldout",
                                                 n_per_slice=n_heldout_per_slice))
    train = labelled_from_rows(train_rows, slice_field="type", source="world:train")
    held = labelled_from_rows(held_rows, slice_field="type", source="world:heldout")
    rng = random.Random(f"guard-world-split-{seed}")
    calib_idx, test_idx = [], []
    by_type: dict[str, list[int]] = {}
    for i, t in enumerate(held.slices or []):
        by_type.setdefault(t, []).append(i)
    for t in sorted(by_type):
        idx = by_type[t]
        rng.shuffle(idx)
        half = len(idx) // 2
        calib_idx += idx[:half]
        test_idx += idx[half:]
    return (train, held.subset(sorted(calib_idx), "world:heldout/calib"),
            held.subset(sorted(test_idx), "world:heldout/test"))
