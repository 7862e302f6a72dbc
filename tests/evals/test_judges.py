"""Pairwise judges (alignkit.evals.judges): exact-match, reward-model, and the position adapter."""
import pytest
import torch
from torch import nn

from alignkit.data.encode import encode_messages
from alignkit.data.templates import resolve_chat_template
from alignkit.evals.judges import (exact_match_judge, pairwise_judge, prompt_text,
                                   reward_model_judge)
from alignkit.evals.winrate import pairwise_verdicts, win_rate
from alignkit.models.heads import RewardModel
from alignkit.models.loading import load_model


@pytest.fixture(scope="module")
def world_tiny():
    return load_model("builtin:world-tiny")


def test_exact_match_judge_correct_beats_wrong():
    judge = exact_match_judge({"Where does Ana live?": "Dunmere", "user: a\nassistant: b\nuser: c": "7"})
    assert judge("Where does Ana live?", " dunmere.", "Ashby") == "a"  # normalised match
    assert judge("Where does Ana live?", "Ashby", "Dunmere") == "b"
    assert judge("Where does Ana live?", "Dunmere", "DUNMERE") == "tie"  # both right
    assert judge("Where does Ana live?", "x", "y") == "tie"  # both wrong
    conv = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}]
    assert judge(conv, "7", "8") == "a"  # a conversation is looked up by its transcript
    with pytest.raises(KeyError, match="no answer for prompt 'unknown'"):
        judge("unknown", "a", "b")


def test_prompt_text_single_turn_is_verbatim_multi_turn_is_a_transcript():
    assert prompt_text([{"role": "user", "content": "Hi?"}]) == "Hi?"
    assert prompt_text([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]) \
        == "system: S\nuser: Q"


def test_pairwise_judge_maps_positions_and_rejects_junk():
    assert pairwise_judge(lambda p, x, y: "a")("q", "x", "y") == "first"
    assert pairwise_judge(lambda p, x, y: "b")("q", "x", "y") == "second"
    assert pairwise_judge(lambda p, x, y: "tie")("q", "x", "y") == "tie"
    assert pairwise_judge(lambda p, x, y: "second")("q", "x", "y") == "second"
    with pytest.raises(ValueError, match="judge answered 'A'"):
        pairwise_judge(lambda p, x, y: "A")("q", "x", "y")


class TokenCountReward(nn.Module):
    """A fake reward model: r = number of tokens in the conversation (hand-computable)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, input_ids, attention_mask):
        self.calls += 1
        return attention_mask.sum(dim=1).float()


def test_reward_model_judge_prefers_higher_reward_with_margin(world_tiny):
    tok = world_tiny.tokenizer
    tpl = resolve_chat_template(tok, None)
    rm = TokenCountReward()

    def n_tokens(reply):
        return len(encode_messages(tok, tpl, [{"role": "user", "content": "Q?"},
                                              {"role": "assistant", "content": reply}]).input_ids)

    long, short = "one two three four five", "one"
    diff = n_tokens(long) - n_tokens(short)  # the reward difference, by construction
    assert diff > 0
    judge = reward_model_judge(rm, tok, tpl)
    assert judge("Q?", long, short) == "a" and judge("Q?", short, long) == "b"
    assert judge("Q?", short, short) == "tie"
    assert rm.calls == 2  # two distinct (prompt, reply) pairs; the rest came from the cache
    assert judge.rewards[("Q?", long)] == n_tokens(long)
    # A margin at least as large as the difference makes it a tie; just below, it does not.
    assert reward_model_judge(rm, tok, tpl, margin=diff)("Q?", long, short) == "tie"
    assert reward_model_judge(rm, tok, tpl, margin=diff - 0.5)("Q?", long, short) == "a"
    # Both orders through pairwise_verdicts: a consistent judge gives real wins.
    res = pairwise_verdicts(pairwise_judge(judge), ["Q?", "Q?"], [long, short], [short, long])
    assert res.verdicts == ["a", "b"] and res.n_inconsistent == 0 and win_rate(res).value == 0.5


def test_reward_model_judge_uses_the_reward_models_own_score(world_tiny):
    tok = world_tiny.tokenizer
    tpl = resolve_chat_template(tok, None)
    torch.manual_seed(0)
    rm = RewardModel(world_tiny.model)
    replies = ["Dunmere", "I do not know where that is at all"]
    rewards = []
    for reply in replies:
        ids = encode_messages(tok, tpl, [{"role": "user", "content": "Q?"},
                                         {"role": "assistant", "content": reply}]).input_ids
        with torch.no_grad():
            rewards.append(float(rm(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))))
    judge = reward_model_judge(rm, tok, tpl)
    want = "a" if rewards[0] > rewards[1] else "b"
    assert judge("Q?", replies[0], replies[1]) == want
    assert judge.rewards[("Q?", replies[0])] == pytest.approx(rewards[0], abs=1e-6)
    with pytest.raises(ValueError, match="margin"):
        reward_model_judge(rm, tok, tpl, margin=-1)
