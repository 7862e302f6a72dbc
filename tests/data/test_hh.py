"""HH-RLHF text format (alignkit.data.hh), on hand-made texts and on the real test split.

HH-RLHF holds offensive text by design: these tests never print it. Failures report row
indices and counts only (assertions compare lists of indices, not the texts).
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignkit.data.hh import hh_row_to_preference, looks_like_hh, parse_hh_text, render_hh_text
from alignkit.data.readers import read_records
from alignkit.errors import DataError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HH_FILE = DATA / "hh_rlhf_harmless_base_test.jsonl.gz"
needs_hh = pytest.mark.skipif(not HH_FILE.is_file(),
                              reason=f"real HH-RLHF test split not found at {HH_FILE}")


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


# ---------------------------------------------------------------------------- parse / render


@pytest.mark.parametrize("text,messages", [
    ("\n\nHuman: hi\n\nAssistant: hello", [U("hi"), A("hello")]),
    # Two spaces after the marker: one is the separator, one is content.
    ("\n\nHuman: hi\n\nAssistant:  hello", [U("hi"), A(" hello")]),
    # "Human:" without a blank line before it is text inside the turn.
    ("\n\nHuman: quote: Human: yes\nAssistant: no\n\nAssistant: ok",
     [U("quote: Human: yes\nAssistant: no"), A("ok")]),
    # Newlines and trailing whitespace are content.
    ("\n\nHuman: a\nb \n\n\nAssistant: c\n", [U("a\nb \n"), A("c\n")]),
    # Empty final reply (4 real texts end like this): parsed, rejected later by validation.
    ("\n\nHuman: hi\n\nAssistant: ", [U("hi"), A("")]),
    # Two assistant turns in a row (13 real texts): kept as two messages.
    ("\n\nHuman: hi\n\nAssistant: part 1\n\nAssistant:  part 2", [U("hi"), A("part 1"),
                                                               A(" part 2")]),
])
def test_parse_and_render_by_hand(text, messages):
    assert parse_hh_text(text) == messages
    assert render_hh_text(messages) == text


@pytest.mark.parametrize("text,words", [
    ("Human: hi\n\nAssistant: x", ("must start with",)),
    (" \n\nHuman: hi\n\nAssistant: x", ("must start with",)),
    ("\n\nHuman:hi\n\nAssistant: x", ("turn 0", "not followed by a space")),
    ("\n\nHuman: hi\n\nAssistant:", ("turn 1", "not followed by a space")),
    (["not", "text"], ("expected an HH-RLHF conversation string",)),
])
def test_parse_errors_name_location(text, words):
    with pytest.raises(DataError) as info:
        parse_hh_text(text, file="hh.jsonl", line=4, field="rejected")
    e = info.value
    assert (e.file, e.line, e.field) == ("hh.jsonl", 4, "rejected")
    assert str(e).startswith("hh.jsonl:4: field 'rejected': ")
    for w in words:
        assert w in str(e)


@pytest.mark.parametrize("messages,field,words", [
    ([{"role": "system", "content": "x"}, U("hi")], "messages[0].role",
     ("only user and assistant",)),
    ([U("hi\n\nAssistant: forged"), A("x")], "messages[0].content", ("turn marker",)),
    ([U("hi"), A("x\n\nHuman: more")], "messages[1].content", ("turn marker",)),
    ([U(None)], "messages[0].content", ("expected a string",)),
])
def test_render_errors(messages, field, words):
    with pytest.raises(DataError) as info:
        render_hh_text(messages)
    assert info.value.field == field
    for w in words:
        assert w in str(info.value)


# Content alphabet rich in the characters that matter: newlines, spaces, colons, "Human".
_content = st.lists(st.sampled_from(["\n", " ", ":", "H", "Human", "Assistant", "x", "é"]),
                    max_size=10).map("".join)
_turn = st.tuples(st.sampled_from(["Human", "Assistant"]), _content)


@settings(max_examples=300, deadline=None)
@given(st.lists(_turn, min_size=1, max_size=6))
def test_render_parse_round_trip_on_generated_texts(turns):
    """Any text in HH form: render(parse(x)) == x; a marker with no space after it is refused."""
    text = "".join(f"\n\n{speaker}: {body}" for speaker, body in turns)
    text = "\n\nHuman: " + text  # must start with a Human turn
    if re.search(r"\n\n(Human|Assistant):(?! )", text):
        with pytest.raises(DataError, match="not followed by a space"):
            parse_hh_text(text)
        return
    assert render_hh_text(parse_hh_text(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), _content), max_size=6))
def test_parse_render_round_trip_on_generated_messages(pairs):
    """Messages without a turn marker in their content: parse(render(m)) == m."""
    messages = [{"role": r, "content": c} for r, c in pairs]
    if messages and messages[0]["role"] != "user":
        messages.insert(0, U("start"))
    try:
        text = render_hh_text(messages)
    except DataError:
        # Only content holding a marker is refused.
        assert any("\n\nHuman:" in m["content"] or "\n\nAssistant:" in m["content"]
                   for m in messages)
        return
    assert parse_hh_text(text) == messages if messages else text == ""


# ---------------------------------------------------------------------------- rows


def test_hh_row_to_preference():
    row = {"chosen": "\n\nHuman: q\n\nAssistant: good",
           "rejected": "\n\nHuman: q\n\nAssistant: bad", "id": 3}
    assert looks_like_hh(row)
    stats = {}
    assert hh_row_to_preference(row, stats=stats) == {
        "chosen": [A("good")], "rejected": [A("bad")], "id": 3, "prompt": [U("q")]}
    assert stats == {"implicit_prompt": 1}


def test_hh_row_divergent_is_kept_and_counted():
    """chosen: [q, a1, a2]; rejected: [q, a3] -> prompt [q], continuations differ in length."""
    row = {"chosen": "\n\nHuman: q\n\nAssistant: a1\n\nAssistant:  a2",
           "rejected": "\n\nHuman: q\n\nAssistant: a3"}
    stats = {}
    rec = hh_row_to_preference(row, stats=stats)
    assert rec["prompt"] == [U("q")]
    assert rec["chosen"] == [A("a1"), A(" a2")] and rec["rejected"] == [A("a3")]
    assert stats == {"implicit_prompt": 1, "divergent_prefix": 1}


@pytest.mark.parametrize("row,field,words", [
    ({"chosen": "\n\nHuman: q\n\nAssistant: ", "rejected": "\n\nHuman: q\n\nAssistant: b"},
     "chosen[1].content", ("empty assistant turn",)),
    ({"chosen": "\n\nHuman: q\n\nAssistant: b", "rejected": "\n\nHuman: q\n\nAssistant: b"},
     "rejected", ("identical",)),
    ({"chosen": "\n\nHuman: q\n\nAssistant: b"}, "rejected", ("missing key 'rejected'",)),
    ({"chosen": "\n\nHuman: q\n\nAssistant: b", "rejected": "plain"}, "rejected",
     ("must start with",)),
    ({"prompt": "x", "chosen": "\n\nHuman: q\n\nAssistant: b",
      "rejected": "\n\nHuman: q\n\nAssistant: c"}, "prompt", ("shared prefix",)),
])
def test_hh_row_errors(row, field, words):
    with pytest.raises(DataError) as info:
        hh_row_to_preference(row, file="hh.jsonl", line=9)
    e = info.value
    assert (e.file, e.line, e.field) == ("hh.jsonl", 9, field)
    for w in words:
        assert w in str(e)


def test_reader_detects_and_forces_hh(tmp_path):
    rows = [{"chosen": "\n\nHuman: q\n\nAssistant: yes",
             "rejected": "\n\nHuman: q\n\nAssistant: no"}]
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = read_records(p)
    assert (res.format, res.kind, res.conversational) == ("hh", "preference", True)
    assert res.records == [{"prompt": [U("q")], "chosen": [A("yes")], "rejected": [A("no")]}]
    # An explicit container format turns detection off: plain implicit string preference.
    plain = read_records(p, format="jsonl")
    assert not plain.conversational and plain.records[0]["chosen"] == "yes"
    other = tmp_path / "pairs.data"
    other.write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    assert read_records(other, format="hh").records == res.records
    with pytest.raises(Exception, match="HH-RLHF rows are preference records"):
        read_records(p, kind="messages")


# ---------------------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def hh_rows():
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@needs_hh
def test_real_file_round_trips_exactly(hh_rows):
    assert len(hh_rows) == 2312
    failed = [(i, key) for i, row in enumerate(hh_rows) for key in ("chosen", "rejected")
              if render_hh_text(parse_hh_text(row[key])) != row[key]]
    assert failed == []  # indices only: the texts are never printed


@needs_hh
def test_real_file_reads_as_preferences(hh_rows, tmp_path):
    q = tmp_path / "hh.quarantine.jsonl"
    res = read_records(HH_FILE, on_bad_rows="skip", quarantine_path=q)
    assert (res.format, res.kind, res.conversational) == ("hh", "preference", True)
    assert (res.n_rows, res.n_bad, len(res.records)) == (2312, 4, 2308)
    assert res.stats == {"implicit_prompt": 2308, "divergent_prefix": 5}
    bad = [json.loads(line) for line in q.read_text(encoding="utf-8").splitlines()]
    # The 4 rows whose chosen reply is empty ("...\n\nAssistant: " at the end).
    assert [(b["line"], b["field"]) for b in bad] == [
        (87, "chosen[3].content"), (517, "chosen[1].content"), (926, "chosen[1].content"),
        (1104, "chosen[1].content")]
    assert all(b["raw"] == json.dumps(hh_rows[b["line"] - 1], ensure_ascii=False) or
               json.loads(b["raw"]) == hh_rows[b["line"] - 1] for b in bad)
    # Lossless end to end: prompt + continuation renders back to the original texts.
    kept = [row for i, row in enumerate(hh_rows, start=1) if i not in {b["line"] for b in bad}]
    mismatched = [i for i, (rec, row) in enumerate(zip(res.records, kept))
                  if render_hh_text(rec["prompt"] + rec["chosen"]) != row["chosen"]
                  or render_hh_text(rec["prompt"] + rec["rejected"]) != row["rejected"]]
    assert mismatched == []
    divergent = [i for i, rec in enumerate(res.records)
                 if len(rec["chosen"]) > 1 or len(rec["rejected"]) > 1]
    assert len(divergent) == 5


@needs_hh
def test_real_file_error_mode_stops_at_first_empty_reply():
    with pytest.raises(DataError) as info:
        read_records(HH_FILE)
    e = info.value
    assert (e.file, e.line, e.field) == (str(HH_FILE), 87, "chosen[3].content")
    assert "empty assistant turn" in e.message
