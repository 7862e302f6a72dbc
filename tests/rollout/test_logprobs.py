"""Sequence and per-token log-probs of given responses (alignkit.rollout.logprobs)."""
import pytest
import torch

from alignkit.models.loading import load_model
from alignkit.rollout.logprobs import sequence_logprobs, token_logprobs


@pytest.fixture(scope="module")
def model():
    return load_model("builtin:world-tiny").model


PROMPTS = [[5, 17, 40], [7], [9, 12, 30, 31, 44, 8], [11, 3]]
RESPONSES = [[21, 22], [60, 61, 62, 63, 64], [], [99]]


def hand_token_logprobs(model, prompt, response):
    """One unpadded forward per pair: log_softmax(logits[m-1+t])[y_t] for t = 0..n-1."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()  # (T, V)
    logp = logits.log_softmax(-1)
    m = len(prompt)
    return [float(logp[m - 1 + t, y]) for t, y in enumerate(response)]


def test_per_token_matches_single_forwards(model):
    got = token_logprobs(model, PROMPTS, RESPONSES, batch_size=3)  # padding inside each batch
    for p, r, g in zip(PROMPTS, RESPONSES, got):
        want = hand_token_logprobs(model, p, r)
        assert len(g) == len(r)
        torch.testing.assert_close(torch.tensor(g), torch.tensor(want), atol=1e-5, rtol=0)


def test_sequence_is_sum_of_tokens_and_batch_size_does_not_matter(model):
    seq1 = sequence_logprobs(model, PROMPTS, RESPONSES, batch_size=1)
    seq4 = sequence_logprobs(model, PROMPTS, RESPONSES, batch_size=4)
    hand = [sum(hand_token_logprobs(model, p, r)) for p, r in zip(PROMPTS, RESPONSES)]
    torch.testing.assert_close(torch.tensor(seq1), torch.tensor(hand, dtype=torch.float32),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(seq4), torch.tensor(seq1), atol=1e-5, rtol=0)
    assert seq1[2] == 0.0  # empty response: log 1
    assert all(s < 0 for i, s in enumerate(seq1) if i != 2)


def test_uniform_model_gives_minus_log_vocab_per_token(model):
    """A model whose logits are all equal assigns log(1/V) to every token: a value by hand.

    With V tokens each of the 3 response tokens scores −ln V and the sequence −3·ln V; e.g. for
    V = 1941, −7.57096 per token and −22.71288 in all. (V is read from the model: the world
    tokenizer's size follows the world's text.)
    """
    import copy
    import math

    flat = copy.deepcopy(model)
    with torch.no_grad():
        flat.get_output_embeddings().weight.zero_()  # tied embeddings: logits are all 0
    V = flat.config.vocab_size
    per = token_logprobs(flat, [[4, 5]], [[6, 7, 8]])[0]
    torch.testing.assert_close(torch.tensor(per), torch.full((3,), -math.log(V)), atol=1e-5, rtol=0)
    assert sequence_logprobs(flat, [[4, 5]], [[6, 7, 8]])[0] == pytest.approx(-3 * math.log(V),
                                                                              abs=1e-4)


def test_restores_training_mode_and_uses_eval_mode(model):
    model.train()
    try:
        a = sequence_logprobs(model, PROMPTS[:1], RESPONSES[:1])
        assert model.training
    finally:
        model.eval()
    assert a == pytest.approx(sequence_logprobs(model, PROMPTS[:1], RESPONSES[:1]), abs=1e-6)


def test_bad_input_is_named(model):
    with pytest.raises(ValueError, match="prompts\\[1\\] is empty"):
        token_logprobs(model, [[1], []], [[2], [3]])
    with pytest.raises(ValueError, match="2 prompts and 1 responses"):
        token_logprobs(model, [[1], [2]], [[3]])
    with pytest.raises(ValueError, match="batch_size"):
        token_logprobs(model, [[1]], [[2]], batch_size=0)
