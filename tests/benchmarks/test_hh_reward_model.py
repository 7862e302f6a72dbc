"""The data preparation and the baseline of benchmarks/hh_reward_model.py (nothing trained here)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
spec = importlib.util.spec_from_file_location("bench_hh_reward_model", BENCH / "hh_reward_model.py")
hh = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = hh
spec.loader.exec_module(hh)


def _row(first: str, chosen: str = "no", rejected: str = "yes, here", turns: int = 1) -> dict:
    prompt = []
    for t in range(turns):
        prompt += [{"role": "user", "content": first if t == 0 else f"more {t}"}]
        if t < turns - 1:
            prompt += [{"role": "assistant", "content": "ok"}]
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def test_turns_bucket():
    assert [hh.turns_bucket(_row("a", turns=n)["prompt"]) for n in (1, 2, 3, 5)] == ["1", "2", "3+", "3+"]


def test_shorter_reply_baseline_by_hand():
    """Chosen shorter in rows 0 and 2, longer in row 1, equal in row 3 (counts as wrong):
    2/4 = 0.5, Wilson at n = 4: [0.1500, 0.8500] (centre 0.5 ± 0.34996)."""
    rows = [_row("a", "no", "sure"), _row("b", "a long reply", "x"), _row("c", "", "y"),
            _row("d", "same", "size")]
    b = hh.shorter_reply_accuracy(rows)
    assert b["value"] == 0.5 and b["n"] == 4
    assert b["lo"] == pytest.approx(0.1500, abs=1e-4) and b["hi"] == pytest.approx(0.8500, abs=1e-4)


def test_grouped_split_keeps_openings_on_one_side():
    """10 rows with 4 distinct first turns (case and spaces ignored): groups of 4, 3, 2, 1.
    The held-out part takes whole groups until it has >= 20% of the rows, so no opening is on
    both sides; it is seeded, and both parts keep the input order."""
    firsts = ["How?", "how? ", "HOW?", "how?", "Why", "why", "why", "Who", "who", "Where"]
    rows = [_row(f, chosen=str(i)) for i, f in enumerate(firsts)]
    train, held = hh.grouped_split(rows, 0.2, seed=0)
    assert len(train) + len(held) == 10 and len(held) >= 2
    key = lambda r: r["prompt"][0]["content"].strip().lower()  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in held}
    assert [r["chosen"][0]["content"] for r in held] == sorted(
        (r["chosen"][0]["content"] for r in held), key=int)
    assert hh.grouped_split(rows, 0.2, seed=0) == (train, held)
    with pytest.raises(ValueError, match="heldout_fraction"):
        hh.grouped_split(rows, 1.0, seed=0)


def test_prepare_filters_long_pairs_and_quarantines_bad_rows(tmp_path):
    """Three HH pairs, one with an empty final reply (quarantined) and one whose rejected side
    is far longer than max_length (left out and counted): one pair remains, held out or
    trained, never both; the written rows carry the `turns` slice."""
    from alignkit.data.templates import resolve_chat_template
    from alignkit.models.loading import load_model

    data = tmp_path / "hh.jsonl"
    long = " ".join(["word"] * 400)
    rows = [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away"},
            {"chosen": "\n\nHuman: Tell me\n\nAssistant: ", "rejected": "\n\nHuman: Tell me\n\nAssistant: No"},
            {"chosen": "\n\nHuman: Long?\n\nAssistant: No", "rejected": f"\n\nHuman: Long?\n\nAssistant: {long}"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tok = load_model("builtin:world-tiny").tokenizer
    out = tmp_path / "out"
    out.mkdir()
    split = hh.prepare(data, out, tok, resolve_chat_template(tok, None), max_length=128,
                       heldout_fraction=0.5, seed=0, max_pairs=None)
    assert split["rows_read"] == 2 and split["quarantined"] == 1 and split["too_long"] == 1
    assert split["kept"] == 1 and split["train"] + split["heldout"] == 1
    written = [json.loads(line) for name in ("train", "heldout")
               for line in (out / f"{name}.jsonl").read_text().splitlines()]
    assert written[0]["turns"] == "1" and written[0]["chosen"][0]["content"] == "Hello"
    assert len((out / "quarantine.jsonl").read_text().splitlines()) == 1
