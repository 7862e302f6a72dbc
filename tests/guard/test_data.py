"""Reading labelled texts: accepted forms, and bad input as DataErrors naming file, line, field."""
import gzip
import json

import pytest

from alignkit.errors import ConfigError, DataError
from alignkit.guard.data import labelled_from_rows, read_labelled, world_guard_data


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_labels_in_every_accepted_spelling():
    rows = [{"prompt": "a", "label": "UNSAFE "}, {"prompt": "b", "label": "safe"},
            {"prompt": "c", "label": 1}, {"prompt": "d", "label": 0},
            {"prompt": "e", "label": True}, {"prompt": "f", "label": "0"}]
    assert labelled_from_rows(rows).labels.tolist() == [1, 0, 1, 0, 1, 0]


def test_prompt_plus_completion_and_messages(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "completion": "burn it", "y": 1},
            {"prompt": "bake", "completion": [{"role": "assistant", "content": "ok"}], "y": 0}]
    d = read_labelled(write_jsonl(tmp_path / "x.jsonl", rows), "prompt+completion", "y")
    assert d.texts == ["hi\n\nburn it", "bake\n\nok"]
    assert d.lines == [1, 2]


def test_csv_and_gzip(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text('text,label,kind\n"multi\nline",unsafe,a\nplain,0,b\n')
    d = read_labelled(p, "text", "label", slice_field="kind")
    assert (d.texts, d.labels.tolist(), d.lines, d.slices) == (
        ["multi\nline", "plain"], [1, 0], [2, 4], ["a", "b"])
    g = tmp_path / "x.jsonl.gz"
    with gzip.open(g, "wt") as f:
        f.write(json.dumps({"prompt": "z", "label": "safe"}) + "\n")
    assert read_labelled(g).texts == ["z"]


@pytest.mark.parametrize("row, field, message", [
    ({"label": "unsafe"}, "prompt", "missing"),
    ({"prompt": "x"}, "label", "missing"),
    ({"prompt": "x", "label": "maybe"}, "label", "expected 'unsafe'/'safe' or 1/0"),
    ({"prompt": "x", "label": 2}, "label", "expected"),
    ({"prompt": "   ", "label": 1}, "prompt", "empty text"),
    ({"prompt": 5, "label": 1}, "prompt", "expected a string or a list of messages"),
    ({"prompt": [{"role": "user"}], "label": 1}, "prompt", "no string 'content'"),
])
def test_bad_row_names_file_line_and_field(tmp_path, row, field, message):
    p = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "fine", "label": 0}, row])
    with pytest.raises(DataError, match=message) as e:
        read_labelled(p)
    assert (e.value.file, e.value.line, e.value.field) == (str(p), 2, field)


def test_container_errors_come_from_the_readers(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "a", "label": 1}\n\n{"prompt": \n')
    with pytest.raises(DataError, match="malformed JSON") as e:
        read_labelled(p)
    assert e.value.line == 3  # blank line 2 counted
    c = tmp_path / "bad.csv"
    c.write_text("prompt,label\nok,1\nfine,perhaps\n")
    with pytest.raises(DataError) as e:
        read_labelled(c)
    assert (e.value.line, e.value.field) == (3, "label")
    with pytest.raises(DataError, match="file not found"):
        read_labelled(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no rows"):
        read_labelled(write_jsonl(tmp_path / "empty.jsonl", []))
    with pytest.raises(DataError, match="expected an object") as e:
        read_labelled(write_jsonl(tmp_path / "list.jsonl", [[1, 2]]))
    with pytest.raises(ConfigError, match="empty name"):
        labelled_from_rows([{"prompt": "a", "label": 1}], "prompt+")


def test_world_splits_are_disjoint_and_cover_every_slice():
    train, calib, test = world_guard_data(n_train_per_slice=10, n_heldout_per_slice=20)
    assert not set(calib.texts) & set(test.texts)  # calib and test share no text
    assert not set(train.texts) & (set(calib.texts) | set(test.texts))
    assert set(calib.slices) == set(test.slices) == set(train.slices)
    # unsafe_direct + 5 benign look-alike + 5 jailbreak types + unanswerable + false_premise
    assert len(set(train.slices)) == 13
    assert calib.n_benign > 0 and test.n_unsafe > 0 and test.n_benign > 0
