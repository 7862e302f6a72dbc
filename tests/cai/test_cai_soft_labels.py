"""Soft preference labels (`chosen_prob`) in the prefer (cdpo) and reward stages, by hand."""
import math

import pytest
import torch

from alignkit.data.encode import EncodedExample
from alignkit.errors import DataError
from alignkit.losses.preference import cdpo_loss
from alignkit.train.prefer import LOSS_ARGUMENTS, Encoded, PreferConfig, make_batches, soft_labels
from alignkit.train.reward import make_pair_batches, reward_step


def test_cdpo_with_per_pair_smoothing_is_cross_entropy_against_p():
    # pair 1: h = 0 -> -(1-ε)log σ(0) - ε log σ(0) = log 2 whatever ε
    # pair 2: β·h = log 3 -> σ = 0.75; ε = 0.25 (p = 0.75): -0.75 log 0.75 - 0.25 log 0.25
    #         = 0.75·0.287682 + 0.25·1.386294 = 0.562335 (the binary entropy of 0.75: optimum)
    out = cdpo_loss(policy_chosen_logps=torch.tensor([-1.0, math.log(3.0)]),
                    policy_rejected_logps=torch.tensor([-1.0, 0.0]),
                    ref_chosen_logps=torch.zeros(2), ref_rejected_logps=torch.zeros(2),
                    beta=1.0, label_smoothing=torch.tensor([0.1, 0.25]))
    torch.testing.assert_close(out.losses, torch.tensor([math.log(2.0), 0.562335]),
                               atol=1e-5, rtol=0)
    # the same as the scalar form pair by pair
    scalar = cdpo_loss(policy_chosen_logps=torch.tensor([math.log(3.0)]),
                       policy_rejected_logps=torch.tensor([0.0]), ref_chosen_logps=torch.zeros(1),
                       ref_rejected_logps=torch.zeros(1), beta=1.0, label_smoothing=0.25)
    torch.testing.assert_close(out.losses[1:], scalar.losses)


def test_per_pair_smoothing_is_checked():
    kw = dict(policy_chosen_logps=torch.zeros(2), policy_rejected_logps=torch.zeros(2),
              ref_chosen_logps=torch.zeros(2), ref_rejected_logps=torch.zeros(2), beta=1.0)
    with pytest.raises(ValueError, match=r"\[0, 0.5\]"):
        cdpo_loss(**kw, label_smoothing=torch.tensor([0.1, 0.6]))
    with pytest.raises(ValueError, match="label_smoothing"):
        cdpo_loss(**kw, label_smoothing=torch.tensor([0.1, 0.2, 0.3]))


def test_soft_labels_read_and_checked():
    assert soft_labels([{"x": 1}, {"x": 2}]) is None
    assert soft_labels([{"chosen_prob": 0.7}, {"chosen_prob": 1}]) == [0.7, 1.0]
    with pytest.raises(DataError) as e:
        soft_labels([{"chosen_prob": 0.7}, {}], "f.jsonl")
    assert (e.value.file, e.value.line, e.value.field) == ("f.jsonl", 2, "chosen_prob")
    with pytest.raises(DataError, match="swap chosen and rejected"):
        soft_labels([{"chosen_prob": 0.3}])
    with pytest.raises(DataError, match=r"\[0.5, 1\]"):
        soft_labels([{"chosen_prob": "high"}])


def test_prefer_batches_carry_one_minus_p_and_cdpo_reads_it():
    seqs = [EncodedExample([1, 2, 3], [-100, 2, 3]) for _ in range(6)]
    enc = Encoded(seqs, [], ["a"] * 3, chosen_probs=[0.9, 0.6, 0.75])
    [batch] = make_batches(enc, micro_batch_size=3, pad_token_id=0, packing=False,
                           pack_length=16, rng=None)
    torch.testing.assert_close(batch["label_smoothing"], torch.tensor([0.1, 0.4, 0.25]))
    sides = {"policy_chosen_logps": 1, "policy_rejected_logps": 2, "ref_chosen_logps": 3,
             "ref_rejected_logps": 4, "label_smoothing": batch["label_smoothing"]}
    args = LOSS_ARGUMENTS["cdpo"](PreferConfig(loss="cdpo", label_smoothing=0.05), sides)
    assert args["label_smoothing"] is sides["label_smoothing"]
    # without soft labels the config's ε is used
    args = LOSS_ARGUMENTS["cdpo"](PreferConfig(loss="cdpo", label_smoothing=0.05),
                                  {**sides, "label_smoothing": None})
    assert args["label_smoothing"] == 0.05


class FixedRewards(torch.nn.Module):
    """Reward = the first token id's value / 1000 (a stand-in reward model)."""

    def forward(self, input_ids, attention_mask):
        return input_ids[:, 0].float() / 1000.0


def test_reward_step_uses_soft_bradley_terry_with_soft_labels():
    # pair 1: r_c = r_r -> loss log 2; pair 2: r_c - r_r = log 3 (σ = 0.75), p = 0.9:
    #   -0.9 log 0.75 - 0.1 log 0.25 = 0.258914 + 0.138629 = 0.397543
    d = round(math.log(3.0) * 1000)  # token ids are integers: d = 1099 -> 1.099
    pairs = [([500], [500]), ([500 + d], [500])]
    [batch] = make_pair_batches(pairs, [0.0, 0.0], micro_batch_size=2, pad_token_id=0, rng=None,
                                probs=[0.6, 0.9])
    losses, r_c, r_r = reward_step(FixedRewards(), batch, center_coef=0.0)
    x = d / 1000.0
    expected = -0.9 * math.log(1 / (1 + math.exp(-x))) - 0.1 * math.log(1 / (1 + math.exp(x)))
    torch.testing.assert_close(losses, torch.tensor([math.log(2.0), expected]), atol=1e-5, rtol=0)
    assert expected == pytest.approx(0.397543, abs=2e-3)
    # without probs: plain Bradley-Terry, -log σ(d)
    [hard] = make_pair_batches(pairs, [0.0, 0.0], micro_batch_size=2, pad_token_id=0, rng=None)
    losses, _, _ = reward_step(FixedRewards(), hard, center_coef=0.0)
    assert float(losses[1]) == pytest.approx(math.log(1 + math.exp(-x)), abs=1e-5)
