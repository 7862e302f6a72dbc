"""The world's tokenizer: a small byte-level BPE trained on the world's own text.

Byte-level, so any string (including user text that spells control tokens) is encodable;
digits are split one per token so arithmetic is learnable.

The chat format is ChatML with one space between the role line and the content. GPT-style
BPE spells " river" (after a space) and "river" (at the start of a line) as *different* tokens;
with the space, the first word of a reply is the same token as that word in prose and in the
prompt, so a tiny model neither has to learn every answer twice nor to map one token onto
another to copy a word from the prompt. The generation prompt stops before the space, so
rendering stays prefix-consistent (see `alignkit.data.encode`). The chat format
is ChatML, the same format SmolLM2 uses, so the world exercises the same masking and
injection rules as the real model.
"""
from __future__ import annotations

from typing import Iterable

BOS = "<|endoftext|>"   # document separator in pretraining
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"    # end of turn: the token every assistant turn must learn to emit
PAD = "<|pad|>"          # a dedicated pad token, distinct from EOS
SPECIAL_TOKENS = [BOS, IM_START, IM_END, PAD]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n ' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_world_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """Train the BPE on `texts` and wrap it as a `transformers.PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=IM_END, pad_token=PAD,
        additional_special_tokens=[IM_START], clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast
