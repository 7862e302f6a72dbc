"""What SFT on the built-in world mixes in: policy rows (safety_per_slice) and replayed
pretraining documents (replay_docs), and how a replayed document is trained."""
from alignkit.data.templates import resolve_chat_template
from alignkit.models.loading import load_model
from alignkit.train.sft import SFTConfig, _encode_all, load_sft_rows
from alignkit.world.build import WorldConfig, build_world

WORLD = WorldConfig(corpus_passes=1, sft_per_family=4, heldout_per_family=2, n_people=16)


def _all_rows(cfg):
    train, val, entry = load_sft_rows(cfg)
    return train + val, entry


def test_replay_and_safety_rows_are_added_with_their_categories():
    plain, plain_entry = _all_rows(SFTConfig(world=WORLD, replay_docs=0))
    mixed, mixed_entry = _all_rows(SFTConfig(world=WORLD, replay_docs=7, safety_per_slice=1))
    replay = [r for r in mixed if r.get("category") == "replay"]
    assert len(replay) == 7 and all(r["text"] in build_world(WORLD).corpus for r in replay)
    safety = [r for r in mixed if "type" in r and "messages" in r]
    assert len(safety) == 17  # 1 per slice: 5 policy categories + 12 other slices
    assert len(mixed) == len(plain) + 7 + 17
    assert mixed_entry["digest"] != plain_entry["digest"]  # the dataset digest covers the mix


def test_replayed_document_trains_every_token_and_takes_its_category_weight():
    tok = load_model("builtin:world-tiny").tokenizer
    tpl = resolve_chat_template(tok, None)
    cfg = SFTConfig(world=WORLD, category_weights={"replay": 0.25})
    rows = [{"text": "Dunmere lies in the north coast.", "category": "replay"},
            {"messages": [{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}], "family": "job"}]
    (doc, w_doc, c_doc), (chat, w_chat, c_chat) = _encode_all(rows, tok, tpl, cfg)
    assert (c_doc, w_doc) == ("replay", 0.25) and (c_chat, w_chat) == ("job", 1.0)
    trained = sum(l != -100 for l in doc.labels)
    assert trained == len(doc.input_ids) - 1  # every token but the first (language modelling)
    assert sum(l != -100 for l in chat.labels) < len(chat.input_ids) // 2  # only the reply
