"""SFT's `cai_teaching_per_slice`: the CAI teaching rows are added to builtin:world data, counted
with their constitution in the manifest entry, and trained on their last assistant turn only
(a row's own `train_on` overrides the config's)."""
import pytest

from alignkit.cai.constitution import load_constitution
from alignkit.data.encode import encode_messages
from alignkit.data.templates import resolve_chat_template
from alignkit.errors import DataError
from alignkit.models.loading import load_model
from alignkit.train.sft import SFTConfig, _encode_all, load_sft_rows
from alignkit.world.build import WorldConfig

WORLD = WorldConfig(corpus_passes=1, sft_per_family=4, heldout_per_family=2, n_people=16)


def _all_rows(cfg):
    train, val, entry = load_sft_rows(cfg)
    return train + val, entry


def test_teaching_rows_are_added_counted_and_recorded():
    plain, plain_entry = _all_rows(SFTConfig(world=WORLD, replay_docs=0))
    mixed, entry = _all_rows(SFTConfig(world=WORLD, replay_docs=0, cai_teaching_per_slice=1))
    taught = [r for r in mixed if r.get("source") == "cai-teaching"]
    # 1 row per slice x 15 slices (5 categories x unsafe, jailbreak, look-alike), 6 rows each
    assert len(taught) == 90 and len(mixed) == len(plain) + 90
    assert {r["task"] for r in taught} == {"critique", "revision", "comparison"}
    assert all(r["train_on"] == "last" for r in taught)
    const = load_constitution("builtin:world")
    assert entry["cai_teaching"] == {"n_rows": 90, "per_slice": 1, "constitution": {
        "source": "builtin:world", "name": const.id, "version": const.version,
        "digest": const.digest}}
    assert "cai_teaching" not in plain_entry and entry["digest"] != plain_entry["digest"]


def test_teaching_row_trains_on_its_last_assistant_turn_only():
    tok = load_model("builtin:world-tiny").tokenizer
    tpl = resolve_chat_template(tok, None)
    cfg = SFTConfig(world=WORLD, replay_docs=0, cai_teaching_per_slice=1)  # train_on: all
    rows, _ = _all_rows(cfg)
    row = next(r for r in rows if r.get("task") == "critique")
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user", "assistant"]
    ((ex, _, _),) = _encode_all([row], tok, tpl, cfg)
    last = encode_messages(tok, tpl, row["messages"], train_on="last")
    every = encode_messages(tok, tpl, row["messages"], train_on="all")
    assert ex.labels == last.labels != every.labels  # the given reply (turn 2) is not trained
    trained = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != -100]
    target = row["messages"][-1]["content"]
    assert tok.decode(trained, skip_special_tokens=True).strip() == target
    # a plain chat row without the field still follows the config
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"},
                         {"role": "user", "content": "Again"},
                         {"role": "assistant", "content": "B"}]}
    ((plain, _, _),) = _encode_all([chat], tok, tpl, cfg)
    assert plain.labels == encode_messages(tok, tpl, chat["messages"], train_on="all").labels


def test_bad_row_train_on_is_a_data_error():
    tok = load_model("builtin:world-tiny").tokenizer
    tpl = resolve_chat_template(tok, None)
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"}],
           "train_on": "first"}
    with pytest.raises(DataError, match="train_on"):
        _encode_all([row], tok, tpl, SFTConfig(world=WORLD))
