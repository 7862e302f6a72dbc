"""Read record files (JSONL, JSON, CSV, Parquet, HH-RLHF) or in-memory rows into validated records.

`read_records` accepts the files people already have and returns a `ReadResult`: the validated
records (see `alignkit.data.records`), their kind, counts, and a digest for the run manifest.

Where a row is, for error messages (the DataError ``line`` field):

- JSONL: the 1-based physical line (blank lines are skipped but counted);
- CSV: the physical line on which the row starts (the header is line 1; a quoted cell may span
  several lines);
- JSON array, Parquet, ``datasets.Dataset``, Python list: the 1-based row index.

Bad rows either stop the read (``on_bad_rows="error"``, the default) or, with
``on_bad_rows="skip"``, are written to a quarantine JSONL file (one object per bad row:
``file``, ``line``, ``field``, ``error``, ``raw`` = the original line text for JSONL/CSV, the
row object otherwise) and counted in ``n_bad``. Nothing is dropped silently.

    >>> res = read_records([{"text": "hello"}, {"text": "world"}])
    >>> res.kind, res.n_rows, res.digest[:3]
    ('text', 2, 'ds-')
"""
from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.contract.digest import digest_obj
from alignkit.data.hh import hh_row_to_preference, looks_like_hh
from alignkit.data.records import (KINDS, OPTIONAL_KEYS, detect_kind, is_conversational,
                                   validate_record)
from alignkit.errors import ConfigError, DataError

FORMATS = ("jsonl", "json", "csv", "parquet", "hh")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
               ".parquet": "parquet", ".pq": "parquet"}
_DATA_EXTRA = "pip install 'alignkit[data]'"


@dataclass
class ReadResult:
    """What `read_records` read: validated records plus what a manifest needs to know."""

    records: list[dict]
    kind: str
    conversational: bool
    source: str
    n_rows: int  # rows seen (valid + bad)
    n_bad: int = 0  # rows written to the quarantine file
    quarantine_path: str | None = None
    stats: dict[str, int] = field(default_factory=dict)  # e.g. {"divergent_prefix": 5}
    format: str = ""  # the container format actually read ("jsonl", "hh", "list", ...)

    @property
    def digest(self) -> str:
        """Content digest of the records (`ds-...`); recomputed on each access."""
        return digest_obj(self.records, "dataset")

    def manifest_entry(self) -> dict:
        """The dataset's entry for a run manifest."""
        return {"source": self.source, "digest": self.digest, "kind": self.kind,
                "n_rows": self.n_rows, "n_bad": self.n_bad,
                "quarantine_path": self.quarantine_path, "stats": dict(self.stats)}


@dataclass
class _Row:
    line: int
    raw: Any  # what goes into the quarantine file
    value: Any  # the parsed row, or a DataError if it could not even be parsed


# ---------------------------------------------------------------------------- containers


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _format_from_name(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return _EXTENSIONS.get(os.path.splitext(name)[1])


def _decode(data: bytes, file: str, line: int | None) -> str | DataError:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        return DataError(f"not valid UTF-8 ({e.reason} at byte {e.start})", file=file, line=line)


def _iter_jsonl(path: Path, file: str) -> Iterator[_Row]:
    with _open_bytes(path) as f:
        for lineno, data in enumerate(f, start=1):
            if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]  # UTF-8 byte-order mark written by some editors
            if not data.strip():
                continue
            text = _decode(data, file, lineno)
            if isinstance(text, DataError):
                yield _Row(lineno, data.decode("utf-8", "replace"), text)
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                value = DataError(f"malformed JSON: {e.msg} (column {e.colno})",
                                  file=file, line=lineno)
            yield _Row(lineno, text.rstrip("\r\n"), value)


def _iter_json(path: Path, file: str) -> Iterator[_Row]:
    with _open_bytes(path) as f:
        data = f.read()
    text = _decode(data.removeprefix(b"\xef\xbb\xbf"), file, None)
    if isinstance(text, DataError):
        raise text
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON: {e.msg} (column {e.colno})", file=file,
                        line=e.lineno) from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DataError("a .json file must hold a list of objects or {\"data\": [...]}, got "
                        f"{type(doc).__name__}", file=file)
    for i, value in enumerate(doc, start=1):
        yield _Row(i, value, value)


def _iter_csv(path: Path, file: str) -> Iterator[_Row]:
    """Rows of a CSV file as {column: cell} with the line each row starts on."""
    if path.name.lower().endswith(".gz"):
        stream = gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    else:
        stream = open(path, encoding="utf-8-sig", newline="")
    consumed: list[str] = []  # physical lines of the row being parsed, for quarantine

    def lines():
        for physical in stream:
            consumed.append(physical)
            yield physical

    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, 2**31 - 1))  # a conversation cell can be long
    try:
        with stream:
            reader = csv.reader(lines(), strict=True)
            header: list[str] | None = None
            start = 1
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    raise DataError(f"malformed CSV: {e}", file=file,
                                    line=reader.line_num) from None
                except UnicodeDecodeError as e:
                    raise DataError(f"not valid UTF-8 ({e.reason})", file=file,
                                    line=reader.line_num + 1) from None
                raw = "".join(consumed).rstrip("\r\n")
                consumed.clear()
                line, start = start, reader.line_num + 1
                if not cells:
                    continue  # blank line
                if header is None:
                    if len(set(cells)) != len(cells):
                        dup = sorted({c for c in cells if cells.count(c) > 1})
                        raise DataError(f"duplicate column names {dup}", file=file, line=line)
                    header = cells
                    continue
                if len(cells) != len(header):
                    value: Any = DataError(f"row has {len(cells)} cells but the header has "
                                           f"{len(header)} columns", file=file, line=line)
                else:
                    value = dict(zip(header, cells))
                yield _Row(line, raw, value)
    finally:
        csv.field_size_limit(old_limit)


def _iter_parquet(path: Path, file: str) -> Iterator[_Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"reading Parquet needs pyarrow: {_DATA_EXTRA}") from e
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid / OSError types
        raise DataError(f"cannot read Parquet file: {e}", file=file) from None
    i = 0
    for batch in pf.iter_batches(batch_size=1024):
        for value in batch.to_pylist():
            i += 1
            yield _Row(i, value, value)


def _iter_memory(rows: Any, file: str) -> Iterator[_Row]:
    for i, value in enumerate(rows, start=1):
        yield _Row(i, value, value)


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "datasets"


# ---------------------------------------------------------------------------- CSV cells

_TRUE, _FALSE = ("true", "1"), ("false", "0")


def _looks_like_messages(cell: str) -> bool:
    """A CSV cell holding a JSON list of message objects (conversational form)."""
    if not cell.lstrip().startswith("["):
        return False
    try:
        value = json.loads(cell)
    except json.JSONDecodeError:
        return False
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def _json_cell(cell: str, key: str, what: str, file: str, line: int) -> Any:
    try:
        return json.loads(cell)
    except json.JSONDecodeError as e:
        raise DataError(f"expected {what} as JSON in this CSV cell: {e.msg} (column {e.colno})",
                        file=file, line=line, field=key) from None


def _coerce_csv(row: dict[str, str], kind: str, file: str, line: int) -> dict[str, Any]:
    """CSV cells are strings: decode the ones whose field is not a string for `kind`."""
    out: dict[str, Any] = dict(row)
    optional = set(OPTIONAL_KEYS) | {"margin"} | ({"type"} if kind == "safety" else set())
    for key in optional:
        if out.get(key) == "":
            del out[key]  # an empty optional cell means "absent"
    list_fields: tuple[str, ...] = ()
    if kind == "messages":
        list_fields = ("messages",)
    elif kind in ("prompt_completion", "unpaired") and _looks_like_messages(
            row.get("completion", "")):
        list_fields = ("prompt", "completion")
    elif kind == "preference" and _looks_like_messages(row.get("chosen", "")):
        list_fields = ("prompt", "chosen", "rejected")
    for key in list_fields:
        if key in out and not (key == "prompt" and kind == "preference" and out[key] == ""):
            out[key] = _json_cell(out[key], key, "a list of messages", file, line)
        elif key == "prompt" and kind == "preference":
            out.pop("prompt", None)  # empty prompt cell: an implicit preference
    if kind == "unpaired" and isinstance(out.get("label"), str):
        label = out["label"].strip().lower()
        if label not in _TRUE + _FALSE:
            raise DataError(f"expected true/false/1/0, got {out['label']!r}", file=file,
                            line=line, field="label")
        out["label"] = label in _TRUE
    for key in ("margin", "weight"):
        if key in out:
            try:
                out[key] = float(out[key])
            except ValueError:
                raise DataError(f"expected a number, got {out[key]!r}", file=file, line=line,
                                field=key) from None
    if "tools" in out:
        out["tools"] = _json_cell(out["tools"], "tools", "a list of tools", file, line)
    if "chat_template_kwargs" in out:
        out["chat_template_kwargs"] = _json_cell(out["chat_template_kwargs"],
                                                 "chat_template_kwargs", "an object", file, line)
    return out


# ---------------------------------------------------------------------------- quarantine


class _Quarantine:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.f = open(path, "w", encoding="utf-8")
        self.count = 0

    def write(self, row: _Row, err: DataError) -> None:
        entry = {"file": err.file, "line": err.line if err.line is not None else row.line,
                 "field": err.field, "error": err.message, "raw": row.raw}
        self.f.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


# ---------------------------------------------------------------------------- main entry


def _resolve_source(source: Any, format: str | None) -> tuple[Iterator[_Row], str, str]:
    """(row iterator, source name, container format)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = os.fspath(source)
        if not path.is_file():
            raise DataError("file not found" if not path.exists() else "not a file", file=name)
        container = format if format not in (None, "hh") else _format_from_name(path)
        if container is None:
            if format == "hh":
                container = "jsonl"
            else:
                raise ConfigError(f"{name}: cannot tell the file format from its name; pass "
                                  f"format= one of {', '.join(FORMATS)}")
        readers = {"jsonl": _iter_jsonl, "json": _iter_json, "csv": _iter_csv,
                   "parquet": _iter_parquet}
        return readers[container](path, name), name, container
    if isinstance(source, (list, tuple)):
        return _iter_memory(source, "<list>"), "<list>", "list"
    if _is_hf_dataset(source):
        if type(source).__name__ in ("DatasetDict", "IterableDatasetDict"):
            raise ConfigError(f"got a {type(source).__name__} with splits "
                              f"{list(source.keys())}; pass one split, e.g. ds['train']")
        name = f"<datasets.{type(source).__name__}>"
        return _iter_memory(source, name), name, "dataset"
    raise ConfigError(f"cannot read records from a {type(source).__name__}; pass a path "
                      f"(.jsonl, .jsonl.gz, .json, .csv, .parquet), a list of dicts or a "
                      f"datasets.Dataset")


def read_records(source: Any, *, kind: str | None = None, format: str | None = None,
                 on_bad_rows: str = "error", quarantine_path: str | os.PathLike | None = None,
                 limit: int | None = None) -> ReadResult:
    """Read and validate every row of `source`.

    Args:
        source: a path (.jsonl, .jsonl.gz, .json, .csv, .parquet; ``.gz`` works for all text
            formats), a list of dicts, or a ``datasets.Dataset``.
        kind: force the record kind (one of `alignkit.data.records.KINDS`); by default it is
            detected from the first valid row and every later row must be of the same kind
            and the same form (standard or conversational).
        format: force the file format (``jsonl``, ``json``, ``csv``, ``parquet`` or ``hh``);
            by default from the extension, and a source whose first row is an HH-RLHF pair
            (``chosen``/``rejected`` strings starting with ``"\\n\\nHuman:"``) is read as ``hh``:
            conversational preference records with the prompt = shared message prefix.
        on_bad_rows: ``"error"`` raises DataError at the first bad row; ``"skip"`` writes bad
            rows to `quarantine_path` (required then; the file is overwritten, and left empty
            when no row is bad) and counts them.
        limit: stop once this many valid records have been read.

    Returns a `ReadResult`; its ``stats`` counts ``implicit_prompt`` (prompts extracted from
    implicit preferences) and ``divergent_prefix`` (conversations that differ before their final
    assistant message).

        >>> res = read_records([{"chosen": "Paris is nice", "rejected": "Paris is dull"}])
        >>> res.records
        [{'prompt': 'Paris is ', 'chosen': 'nice', 'rejected': 'dull'}]
    """
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown record kind {kind!r}; known: {', '.join(KINDS)}")
    if format is not None and format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    if on_bad_rows not in ("error", "skip"):
        raise ConfigError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    if on_bad_rows == "skip" and quarantine_path is None:
        raise ConfigError("on_bad_rows='skip' needs quarantine_path: bad rows are written there "
                          "and counted, never dropped silently")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 (or None for no limit), got {limit}")

    rows, name, container = _resolve_source(source, format)
    if quarantine_path is not None and isinstance(source, (str, os.PathLike)):
        if Path(quarantine_path).resolve() == Path(source).resolve():
            raise ConfigError("quarantine_path must not be the source file itself")

    # Peek at the first row to recognise HH-RLHF pairs (unless a format was forced).
    hh = format == "hh"
    first = next(rows, None)
    if first is not None:
        rows = itertools.chain([first], rows)
        if format is None:
            hh = looks_like_hh(first.value)
    if hh and kind not in (None, "preference"):
        raise ConfigError(f"HH-RLHF rows are preference records, but kind={kind!r} was given")

    quarantine = _Quarantine(Path(quarantine_path)) if on_bad_rows == "skip" else None
    records: list[dict] = []
    stats: dict[str, int] = {}
    found_kind = "preference" if hh else kind
    found_conv: bool | None = None
    n_rows = 0
    try:
        for row in rows:
            if limit is not None and len(records) >= limit:
                break
            n_rows += 1
            row_stats: dict[str, int] = {}
            try:
                rec, rec_kind = _one_row(row, name, container, hh, kind, found_kind, row_stats)
                conv = is_conversational(rec, rec_kind)
                if found_conv is not None and conv != found_conv:
                    want = "conversational" if found_conv else "standard"
                    got = "conversational" if conv else "standard"
                    raise DataError(f"row is in {got} form but the earlier rows are {want}; "
                                    f"one dataset uses one form", file=name, line=row.line)
            except DataError as err:
                if quarantine is None:
                    raise
                quarantine.write(row, err)
                continue
            found_kind, found_conv = rec_kind, conv
            for key, n in row_stats.items():
                stats[key] = stats.get(key, 0) + n
            records.append(rec)
    finally:
        if quarantine is not None:
            quarantine.close()

    if found_kind is None:
        raise DataError("no valid rows, so the record kind cannot be detected"
                        + (f" ({quarantine.count} bad rows in {quarantine.path})"
                           if quarantine is not None and quarantine.count else ""), file=name)
    return ReadResult(records=records, kind=found_kind, conversational=bool(found_conv),
                      source=name, n_rows=n_rows,
                      n_bad=quarantine.count if quarantine is not None else 0,
                      quarantine_path=os.fspath(quarantine_path) if quarantine is not None
                      else None, stats=stats, format="hh" if hh else container)


def _one_row(row: _Row, name: str, container: str, hh: bool, forced_kind: str | None,
             found_kind: str | None, stats: dict[str, int]) -> tuple[dict, str]:
    """Validate one row; returns (record, kind). Raises DataError."""
    value, line = row.value, row.line
    if isinstance(value, DataError):
        raise value
    if hh:
        if container == "csv":
            value = _coerce_csv(value, "preference", name, line)
        return hh_row_to_preference(value, file=name, line=line, stats=stats), "preference"
    if forced_kind is not None:
        kind = forced_kind
    else:
        kind = detect_kind(value, file=name, line=line)
        if found_kind is not None and kind != found_kind:
            raise DataError(f"row is a {kind} record but the earlier rows are {found_kind}; "
                            f"one dataset holds one kind", file=name, line=line)
    if container == "csv":
        value = _coerce_csv(value, kind, name, line)
    return validate_record(value, kind, file=name, line=line, stats=stats), kind
