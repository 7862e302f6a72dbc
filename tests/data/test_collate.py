"""Padding collator: hand-computed batches, and the pad == eos trap."""
from __future__ import annotations

import pytest
import torch

from alignkit.data.collate import pad_collate
from alignkit.data.encode import IGNORE_INDEX, EncodedExample, encode_messages
from alignkit.data.templates import ChatTemplate
from alignkit.errors import ConfigError


def test_right_padding_by_hand():
    """[5, 6, 7] and [8]: T = 3; the second row gets two pads (id 0), mask 0, label -100."""
    batch = pad_collate([EncodedExample([5, 6, 7], [-100, 6, 7]), EncodedExample([8], [8])], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_left_padding_by_hand():
    """Left padding for generation: real tokens end at the last column, positions start at 0."""
    batch = pad_collate([[5, 6, 7], {"input_ids": [8, 9], "labels": [-100, 9]}], pad_token_id=3,
                        padding_side="left")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [3, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]
    assert batch["labels"].tolist() == [[5, 6, 7], [-100, -100, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 1]]


def test_pad_to_multiple_of():
    """Longest is 5 tokens; multiple of 4 -> T = 8."""
    batch = pad_collate([[1] * 5, [2]], pad_token_id=0, pad_to_multiple_of=4)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum(dim=1).tolist() == [5, 1]


def test_bad_input():
    with pytest.raises(ValueError, match="empty batch"):
        pad_collate([], pad_token_id=0)
    with pytest.raises(ValueError, match="example 1 has no tokens"):
        pad_collate([[1], []], pad_token_id=0)
    with pytest.raises(ValueError, match="example 0: 2 input_ids but 1 labels"):
        pad_collate([{"input_ids": [1, 2], "labels": [1]}], pad_token_id=0)
    with pytest.raises(ConfigError, match="padding_side"):
        pad_collate([[1]], pad_token_id=0, padding_side="middle")
    with pytest.raises(ConfigError, match="pad_token_id is None"):
        pad_collate([[1]], pad_token_id=None)


def _chatml_tokenizer_with_pad_equal_eos():
    """Like SmolLM2: pad_token == eos_token == '<|im_end|>'."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "user", "assistant", "\n", " ", "Hi", "Hello", "there", "?", "!"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+|[^\w\s]|\s"), behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                            "eos_token": "<|im_end|>", "pad_token": "<|im_end|>"})
    return tok


def test_pad_equal_eos_keeps_the_end_of_turn_trainable():
    """The trap: padding found by `ids == pad_token_id` would also hide every real <|im_end|>.

    Row 0 (short) is 'Hi' -> 'Hello' and gets padded with <|im_end|> ids; row 1 is longer.
    Every <|im_end|> that closes an assistant turn must keep its label and attention."""
    tok = _chatml_tokenizer_with_pad_equal_eos()
    assert tok.pad_token_id == tok.eos_token_id
    tpl = ChatTemplate.builtin("chatml")
    short = encode_messages(tok, tpl, [{"role": "user", "content": "Hi"},
                                       {"role": "assistant", "content": "Hello"}])
    long = encode_messages(tok, tpl, [{"role": "user", "content": "Hi there?"},
                                      {"role": "assistant", "content": "Hello there!"}])
    batch = pad_collate([short, long], pad_token_id=tok.pad_token_id)
    eos = tok.eos_token_id
    n = len(short)
    # every real <|im_end|> is attended to; the assistant's one is a target
    real_eos = (batch["input_ids"] == eos) & (batch["attention_mask"] == 1)
    assert real_eos.sum(dim=1).tolist() == [2, 2]  # user turn + assistant turn, per row
    trained_eos = (batch["labels"] == eos).sum(dim=1).tolist()
    assert trained_eos == [1, 1]
    # the padding (also <|im_end|> ids) is masked and never a target
    assert batch["input_ids"][0, n:].eq(eos).all() and batch["attention_mask"][0, n:].eq(0).all()
    assert batch["labels"][0, n:].eq(IGNORE_INDEX).all()
    # for contrast: masking by id, the wrong way, would lose the trained end of turn
    wrong = batch["labels"].masked_fill(batch["input_ids"] == tok.pad_token_id, IGNORE_INDEX)
    assert (wrong == eos).sum().item() == 0
