"""Raw rows for the synth stages: read JSONL/JSON files as they are, and get a row's text.

The synth filters accept any row form alignkit knows (``messages``, ``prompt``/``completion``,
``instruction``/``input``/``output`` as in Self-Instruct and Alpaca, ``text``, preference
``chosen``/``rejected``) and write kept rows back **unchanged**, so they read rows without
normalising them (`alignkit.data.readers` validates and normalises; here we only need the text).

A row's text (what dedup, decontamination and the hashed quality scorer see) is the string
content of its known fields, in the order of `TEXT_FIELDS`, joined by newlines; a field that
holds a list of chat messages contributes each message's content.

    >>> row_text({"instruction": "Add 2 and 3.", "input": "", "output": "5"})
    'Add 2 and 3.\\n5'
    >>> row_conversation({"prompt": "Hi", "completion": "Hello"})
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import DataError

# Fields whose string content is a row's text, in this order.
TEXT_FIELDS = ("instruction", "input", "output", "prompt", "completion", "response", "chosen",
               "rejected", "text", "messages")


@dataclass
class Row:
    """One object read from a file: where it was (1-based line or index) and what it held."""

    line: int
    data: dict


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_rows(path: str | Path) -> list[Row]:
    """Every object of a .jsonl / .json file (``.gz`` too), with its line (JSONL) or index.

    Blank JSONL lines are skipped but counted; a line that is not a JSON object is a DataError
    naming file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    rows: list[Row] = []
    with _open_text(p) as f:
        if name.endswith(".json"):
            try:
                doc = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"malformed JSON: {e.msg}", file=str(p), line=e.lineno) from None
            if isinstance(doc, Mapping) and isinstance(doc.get("data"), list):
                doc = doc["data"]
            if not isinstance(doc, list):
                raise DataError("a .json file must hold a list of objects", file=str(p))
            items = list(enumerate(doc, start=1))
        else:
            items = []
            for lineno, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    items.append((lineno, json.loads(text)))
                except json.JSONDecodeError as e:
                    raise DataError(f"malformed JSON: {e.msg} (column {e.colno})", file=str(p),
                                    line=lineno) from None
    for line, value in items:
        if not isinstance(value, Mapping):
            raise DataError(f"expected a JSON object, got {type(value).__name__}", file=str(p),
                            line=line)
        rows.append(Row(line, dict(value)))
    return rows


def _contents(value: Any, field: str, file: str | None, line: int | None) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out = []
        for j, m in enumerate(value):
            if not isinstance(m, Mapping) or not isinstance(m.get("content"), str):
                raise DataError("expected a chat message with a string 'content'", file=file,
                                line=line, field=f"{field}[{j}]")
            out.append(m["content"])
        return out
    raise DataError(f"expected a string or a list of messages, got {type(value).__name__}",
                    file=file, line=line, field=field)


def row_text(row: Mapping[str, Any], *, file: str | None = None, line: int | None = None) -> str:
    """The text of a row (see the module docstring); empty fields are left out."""
    parts: list[str] = []
    found = False
    for field in TEXT_FIELDS:
        if row.get(field) is None:
            continue
        found = True
        parts += [c for c in _contents(row[field], field, file, line) if c]
    if not found:
        raise DataError(f"row has no text field (expected one of {', '.join(TEXT_FIELDS)})",
                        file=file, line=line, field=TEXT_FIELDS[0])
    return "\n".join(parts)


def _as_messages(value: Any, role: str, field: str, file: str | None,
                 line: int | None) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    _contents(value, field, file, line)  # checks the shape
    return [{"role": str(m.get("role", role)), "content": m["content"]} for m in value]


def row_conversation(row: Mapping[str, Any], *, file: str | None = None,
                     line: int | None = None) -> list[dict]:
    """A row as a chat ending in the assistant reply, for scoring prompt + response.

    ``messages`` as they are; ``prompt`` + ``completion`` (or ``response``); ``instruction``
    (+ ``input``, after a blank line) as the user turn and ``output`` as the reply.
    """
    if row.get("messages") is not None:
        conv = _as_messages(row["messages"], "user", "messages", file, line)
    elif row.get("prompt") is not None and (row.get("completion") is not None
                                            or row.get("response") is not None):
        reply_field = "completion" if row.get("completion") is not None else "response"
        conv = (_as_messages(row["prompt"], "user", "prompt", file, line)
                + _as_messages(row[reply_field], "assistant", reply_field, file, line))
    elif row.get("instruction") is not None and row.get("output") is not None:
        user = str(row["instruction"])
        if row.get("input"):
            user += "\n\n" + str(row["input"])
        conv = [{"role": "user", "content": user},
                {"role": "assistant", "content": str(row["output"])}]
    else:
        raise DataError("cannot read a prompt and a response from this row (expected messages, "
                        "prompt+completion or instruction+output)", file=file, line=line)
    if not conv or conv[-1]["role"] != "assistant":
        raise DataError("the conversation must end with an assistant reply", file=file, line=line,
                        field="messages")
    return conv


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line, UTF-8, keys in the order given."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
