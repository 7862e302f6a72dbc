"""File and in-memory readers (alignkit.data.readers)."""
from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignkit.data.readers import ReadResult, read_records
from alignkit.data.records import validate_record
from alignkit.errors import ConfigError, DataError


def U(c="question"):
    return {"role": "user", "content": c}


def A(c="answer"):
    return {"role": "assistant", "content": c}


# One hand-written sample per kind and form: (kind, conversational, rows).
SAMPLES = {
    "text": ("text", False, [{"text": "hello, world"}, {"text": "line one\nline \"two\""}]),
    "messages": ("messages", True, [{"messages": [U(), A()]},
                                    {"messages": [{"role": "system", "content": "terse"}, U("2+2"),
                                                  A("4")], "id": "m2"}]),
    "pc_standard": ("prompt_completion", False, [{"prompt": "Q: 1+1\nA:", "completion": " 2"},
                                                 {"prompt": "", "completion": "free text"}]),
    "pc_conversational": ("prompt_completion", True,
                          [{"prompt": [U("hi")], "completion": [A("hello")]}]),
    "pref_explicit": ("preference", False, [{"prompt": "Best pet?", "chosen": " Cat",
                                             "rejected": " Rock", "margin": 1.5}]),
    "pref_conversational": ("preference", True,
                            [{"prompt": [U()], "chosen": [A("good")], "rejected": [A("bad")]}]),
    "unpaired_standard": ("unpaired", False, [{"prompt": "p", "completion": "c", "label": True},
                                              {"prompt": "p", "completion": "d", "label": False,
                                               "weight": 0.5}]),
    "unpaired_conversational": ("unpaired", True,
                                [{"prompt": [U()], "completion": [A()], "label": False}]),
    "safety": ("safety", False, [{"prompt": "how to pick a lock", "label": "unsafe",
                                  "category": "crime", "type": "direct"},
                                 {"prompt": "how to kill a python process", "label": "safe"}]),
}


def _csv_cell(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def write_csv(path: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([_csv_cell(r[c]) if c in r else "" for c in cols])


def write_jsonl(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # from_pylist takes its columns from the first row; fill the others' gaps with null.
    cols = list(dict.fromkeys(k for r in rows for k in r))
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows]), path)


def make_source(fmt: str, tmp_path: Path, rows: list[dict]):
    if fmt == "jsonl":
        p = tmp_path / "d.jsonl"
        write_jsonl(p, rows)
    elif fmt == "jsonl.gz":
        p = tmp_path / "d.jsonl.gz"
        write_jsonl(p, rows)
    elif fmt == "json":
        p = tmp_path / "d.json"
        p.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "json_data":
        p = tmp_path / "d.json"
        p.write_text(json.dumps({"data": rows}), encoding="utf-8")
    elif fmt == "csv":
        p = tmp_path / "d.csv"
        write_csv(p, rows)
    elif fmt == "parquet":
        p = tmp_path / "d.parquet"
        write_parquet(p, rows)
    elif fmt == "dataset":
        import datasets

        cols = list(dict.fromkeys(k for r in rows for k in r))  # as for Parquet above
        return datasets.Dataset.from_list([{c: r.get(c) for c in cols} for r in rows])
    elif fmt == "list":
        return list(rows)
    return p


FORMATS = ["jsonl", "jsonl.gz", "json", "json_data", "csv", "parquet", "dataset", "list"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sample", list(SAMPLES))
def test_every_format_and_kind(fmt, sample, tmp_path):
    kind, conv, rows = SAMPLES[sample]
    res = read_records(make_source(fmt, tmp_path, rows))
    expected = [validate_record(r, kind) for r in rows]
    assert res.records == expected
    assert (res.kind, res.conversational, res.n_rows, res.n_bad) == (kind, conv, len(rows), 0)
    # The same content gives the same digest whatever the container.
    assert res.digest == read_records(rows).digest


def test_result_fields_and_manifest(tmp_path):
    p = tmp_path / "d.jsonl"
    write_jsonl(p, [{"chosen": "I like cats", "rejected": "I like cars"}])
    res = read_records(p)
    assert isinstance(res, ReadResult)
    assert res.records == [{"prompt": "I like ", "chosen": "cats", "rejected": "cars"}]
    assert res.source == str(p) and res.format == "jsonl"
    assert res.manifest_entry() == {
        "source": str(p), "digest": res.digest, "kind": "preference", "n_rows": 1, "n_bad": 0,
        "quarantine_path": None, "stats": {"implicit_prompt": 1}}
    assert res.digest.startswith("ds-")
    write_jsonl(p, [{"chosen": "I like cats", "rejected": "I like dogs"}])
    assert read_records(p).digest != res.digest


# ---------------------------------------------------------------------------- CSV specifics


def test_csv_by_hand_cells_and_line_numbers(tmp_path):
    """Header is line 1; the first row's prompt spans lines 2-3, so row 2 starts on line 4."""
    p = tmp_path / "u.csv"
    p.write_text(
        'prompt,completion,label,weight,tag\n'
        '"two\nlines",ok,1,2,a\n'
        'p2,"say ""hi""",FALSE,,\n'
        '\n'
        'p3,c3,maybe,,\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_records(p)
    e = info.value
    assert (e.file, e.line, e.field) == (str(p), 6, "label")
    assert "true/false/1/0" in str(e) and str(e).startswith(f"{p}:6: ")
    res = read_records(p, limit=2)
    assert res.records == [
        {"prompt": "two\nlines", "completion": "ok", "label": True, "weight": 2.0, "tag": "a"},
        {"prompt": "p2", "completion": 'say "hi"', "label": False, "tag": ""}]


def test_csv_conversational_cells_parsed_as_json(tmp_path):
    p = tmp_path / "pref.csv"
    rows = [{"prompt": [U()], "chosen": [A("x")], "rejected": [A("y")],
             "chat_template_kwargs": {"a": 1}, "tools": [{"name": "f"}]}]
    write_csv(p, rows)
    res = read_records(p)
    assert res.conversational and res.records == rows
    # An empty prompt cell in a conversational file means "implicit": prefix extracted.
    write_csv(p, [{"prompt": "", "chosen": [U(), A("x")], "rejected": [U(), A("y")]}])
    assert read_records(p).records == [{"prompt": [U()], "chosen": [A("x")],
                                        "rejected": [A("y")]}]


def test_csv_form_follows_the_completion_cell(tmp_path):
    """A standard completion keeps a JSON-looking prompt as plain text (no guessing per cell)."""
    p = tmp_path / "pc.csv"
    p.write_text('prompt,completion\n"[{""role"":""user""}]",[{"x\n', encoding="utf-8")
    assert read_records(p).records == [{"prompt": '[{"role":"user"}]', "completion": '[{"x'}]


@pytest.mark.parametrize("text,line,field,words", [
    ('messages\nnot json\n', 2, "messages", ("a list of messages as JSON",)),
    ('prompt,completion\n"[{""role"":""user"",""content"":""q""}]",'
     '"[{""role"":""user"",""content"":""a""}]"\n', 2, "completion[0].role",
     ("must be assistant",)),
    ('prompt,completion\n[oops,"[{""role"":""assistant"",""content"":""a""}]"\n', 2, "prompt",
     ("a list of messages as JSON",)),
    ('prompt,chosen,rejected,margin\np,a,b,high\n', 2, "margin", ("expected a number",)),
    ('text,id\nx,1,extra\n', 2, None, ("3 cells but the header has 2",)),
    ('text,text\nx,y\n', 1, None, ("duplicate column names",)),
    ('text\n"unterminated\n', 2, None, ("malformed CSV",)),
])
def test_csv_errors(tmp_path, text, line, field, words):
    p = tmp_path / "bad.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_records(p)
    e = info.value
    assert (e.file, e.line, e.field) == (str(p), line, field)
    for w in words:
        assert w in str(e)


# ---------------------------------------------------------------------------- errors


def test_jsonl_malformed_line_and_blank_lines(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": "b"\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_records(p)
    e = info.value
    assert (e.file, e.line, e.field) == (str(p), 3, None)
    assert "malformed JSON" in str(e) and str(e).startswith(f"{p}:3: ")


def test_jsonl_invalid_utf8_names_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n')
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        read_records(p)
    assert info.value.line == 2


def test_json_file_errors(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[\n{"text": "a"},\n{"text": }\n]', encoding="utf-8")
    with pytest.raises(DataError, match="malformed JSON") as info:
        read_records(p)
    assert (info.value.file, info.value.line) == (str(p), 3)
    p.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(DataError, match="list of objects"):
        read_records(p)
    p.write_text('[{"text": "a"}, {"text": "b", "weight": 0}]', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_records(p)
    assert (info.value.line, info.value.field) == (2, "weight")  # row index


def test_row_errors_name_file_line_field(tmp_path):
    p = tmp_path / "d.jsonl"
    write_jsonl(p, [{"messages": [U(), A()]}, {"messages": [U(), {"role": "bot", "content": "x"}]}])
    with pytest.raises(DataError) as info:
        read_records(p)
    e = info.value
    assert (e.file, e.line, e.field) == (str(p), 2, "messages[1].role")
    assert f"{p}:2: field 'messages[1].role': unknown role 'bot'" in str(e)


def test_kind_and_form_must_stay_the_same(tmp_path):
    p = tmp_path / "d.jsonl"
    write_jsonl(p, [{"text": "a"}, {"prompt": "p", "completion": "c"}])
    with pytest.raises(DataError, match="prompt_completion record but the earlier rows are text") \
            as info:
        read_records(p)
    assert info.value.line == 2
    write_jsonl(p, [{"prompt": "p", "completion": "c"}, {"prompt": [U()], "completion": [A()]}])
    with pytest.raises(DataError, match="conversational form but the earlier rows are standard") \
            as info:
        read_records(p)
    assert info.value.line == 2


def test_first_row_ambiguous_and_not_object(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "messages": []}\n', encoding="utf-8")
    with pytest.raises(DataError, match="ambiguous") as info:
        read_records(p)
    assert info.value.line == 1
    # Forcing the kind resolves it; the other key is kept as an extra field.
    assert read_records(p, kind="text").records == [{"text": "a", "messages": []}]
    p.write_text('["text"]\n', encoding="utf-8")
    with pytest.raises(DataError, match="not a JSON object"):
        read_records(p)


def test_forced_kind_validates_every_row(tmp_path):
    p = tmp_path / "d.jsonl"
    write_jsonl(p, [{"prompt": "p", "completion": "c", "label": True}])
    res = read_records(p, kind="prompt_completion")
    assert res.kind == "prompt_completion" and res.records[0]["label"] is True
    with pytest.raises(DataError, match="missing key 'text'"):
        read_records(p, kind="text")


def test_config_errors(tmp_path):
    p = tmp_path / "d.jsonl"
    write_jsonl(p, [{"text": "a"}])
    with pytest.raises(ConfigError, match="quarantine_path"):
        read_records(p, on_bad_rows="skip")
    with pytest.raises(ConfigError, match="must not be the source"):
        read_records(p, on_bad_rows="skip", quarantine_path=p)
    with pytest.raises(ConfigError, match="on_bad_rows"):
        read_records(p, on_bad_rows="drop")
    with pytest.raises(ConfigError, match="unknown record kind"):
        read_records(p, kind="chat")
    with pytest.raises(ConfigError, match="limit must be >= 1"):
        read_records(p, limit=0)
    with pytest.raises(ConfigError, match="unknown format"):
        read_records(p, format="xml")
    other = tmp_path / "d.txt"
    other.write_text('{"text": "a"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot tell the file format"):
        read_records(other)
    assert read_records(other, format="jsonl").records == [{"text": "a"}]
    with pytest.raises(DataError, match="file not found") as info:
        read_records(tmp_path / "missing.jsonl")
    assert info.value.file == str(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="cannot read records from a int"):
        read_records(3)


def test_empty_sources(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no valid rows"):
        read_records(p)
    res = read_records(p, kind="text")
    assert (res.records, res.n_rows, res.kind) == ([], 0, "text")


def test_missing_pyarrow_names_the_extra(tmp_path, monkeypatch):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"alignkit\[data\]"):
        read_records(p)


def test_corrupt_parquet_is_a_data_error(tmp_path):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read Parquet") as info:
        read_records(p)
    assert info.value.file == str(p)


def test_dataset_dict_needs_a_split():
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": "a"}])})
    with pytest.raises(ConfigError, match="pass one split"):
        read_records(dd)
    assert read_records(dd["train"]).source == "<datasets.Dataset>"


def test_parquet_nulls_mean_absent(tmp_path):
    """Parquet fills a field missing from some rows with null; it must read like the JSONL."""
    rows = [{"text": "a", "weight": 2.0, "id": "x"}, {"text": "b"}]
    p = tmp_path / "d.parquet"
    write_parquet(p, rows)
    assert read_records(p).records == [{"text": "a", "weight": 2.0, "id": "x"}, {"text": "b"}]


# ---------------------------------------------------------------------------- skip mode


def test_skip_mode_quarantines_and_counts(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        '{"prompt": "p", "completion": "c"}\n'
        '{"prompt": "p", "completion": ""}\n'
        'not json\n'
        '{"prompt": "p", "completion": "ok"}\n'
        '{"text": "other kind"}\n', encoding="utf-8")
    q = tmp_path / "out" / "quarantine.jsonl"
    res = read_records(p, on_bad_rows="skip", quarantine_path=q)
    assert [r["completion"] for r in res.records] == ["c", "ok"]
    assert (res.n_rows, res.n_bad, res.quarantine_path) == (5, 3, str(q))
    assert res.manifest_entry()["n_bad"] == 3
    bad = [json.loads(line) for line in q.read_text(encoding="utf-8").splitlines()]
    assert [(b["line"], b["field"]) for b in bad] == [(2, "completion"), (3, None), (5, None)]
    assert all(b["file"] == str(p) for b in bad)
    assert bad[1]["raw"] == "not json" and "malformed JSON" in bad[1]["error"]
    assert bad[0]["raw"] == '{"prompt": "p", "completion": ""}'
    assert "empty" in bad[0]["error"] and "earlier rows are prompt_completion" in bad[2]["error"]


def test_skip_mode_csv_raw_is_the_physical_text(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('text,weight\n"multi\nline",-1\nfine,\n', encoding="utf-8")
    q = tmp_path / "q.jsonl"
    res = read_records(p, on_bad_rows="skip", quarantine_path=q)
    assert res.records == [{"text": "fine"}] and res.n_bad == 1
    (b,) = [json.loads(line) for line in q.read_text(encoding="utf-8").splitlines()]
    assert b == {"file": str(p), "line": 2, "field": "weight",
                 "error": "per-example loss weight must be > 0, got -1.0",
                 "raw": '"multi\nline",-1'}


def test_skip_mode_in_memory_rows_and_all_bad(tmp_path):
    q = tmp_path / "q.jsonl"
    res = read_records([{"text": "a"}, 7, {"text": " "}], on_bad_rows="skip", quarantine_path=q)
    assert res.records == [{"text": "a"}] and res.n_bad == 2
    assert [json.loads(x)["raw"] for x in q.read_text().splitlines()] == [7, {"text": " "}]
    with pytest.raises(DataError, match="no valid rows.*2 bad rows"):
        read_records([{"text": ""}, {"text": " "}], on_bad_rows="skip", quarantine_path=q)
    assert len(q.read_text().splitlines()) == 2  # still written before the error
    res = read_records([{"text": "a"}], on_bad_rows="skip", quarantine_path=q)
    assert res.n_bad == 0 and q.read_text() == ""  # an empty file says "no bad rows"


def test_limit_counts_valid_records(tmp_path):
    rows = [{"text": "a"}, {"text": ""}, {"text": "b"}, {"text": "c"}]
    res = read_records(rows, limit=2, on_bad_rows="skip", quarantine_path=tmp_path / "q.jsonl")
    assert [r["text"] for r in res.records] == ["a", "b"]
    assert (res.n_rows, res.n_bad) == (3, 1)
    assert read_records(rows, limit=1).records == [{"text": "a"}]


# ---------------------------------------------------------------------------- round trips

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_nonblank = _text.filter(lambda s: s.strip() != "")
_conv_prompt = st.lists(st.builds(lambda c: U(c), _text), min_size=1, max_size=1)

_records = st.one_of(
    st.builds(lambda t: {"text": t}, _nonblank),
    st.builds(lambda p, c: {"prompt": p, "completion": c}, _text, _nonblank),
    st.builds(lambda p, c, r, m: {"prompt": p, "chosen": c, "rejected": r + "!", "margin": m},
              _text, _nonblank.filter(lambda s: not s.endswith("!")), _nonblank,
              st.floats(-1e6, 1e6, allow_nan=False)),
    st.builds(lambda p, c, lab, w: {"prompt": p, "completion": c, "label": lab, "weight": w},
              _text, _nonblank, st.booleans(), st.floats(1e-3, 1e3)),
    st.builds(lambda p, lab, cat: {"prompt": p, "label": lab, "category": cat, "type": ""},
              _text, st.sampled_from(["safe", "unsafe"]), _text),
    st.builds(lambda p, c: {"prompt": p, "completion": [A(c)]}, _conv_prompt, _nonblank),
    st.builds(lambda u, a, tag: {"messages": [U(u), A(a)], "tag": tag}, _text, _nonblank, _text),
)


def _same_kind(rows):
    first = rows[0]
    return [r for r in rows if set(r) == set(first) and
            isinstance(r.get("completion"), list) == isinstance(first.get("completion"), list)]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(_records, min_size=1, max_size=4).map(_same_kind))
def test_jsonl_and_csv_round_trip(tmp_path, rows):
    expected = [validate_record(r, read_records(rows[:1]).kind) for r in rows]
    pj, pc = tmp_path / "rt.jsonl", tmp_path / "rt.csv"
    write_jsonl(pj, rows)
    write_csv(pc, rows)
    assert read_records(pj).records == expected
    assert read_records(pc).records == expected


def test_csv_writer_in_tests_quotes_like_real_files():
    """Guard for the round-trip helper: newlines and quotes inside cells are quoted."""
    buf = io.StringIO()
    csv.writer(buf).writerow(["a\nb", 'say "x"'])
    assert buf.getvalue() == '"a\nb","say ""x"""\r\n'
