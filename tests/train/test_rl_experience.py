"""RL targets worked out by hand: token KL, explained variance, PPO/GRPO/RLOO advantages,
prompt schedule and minibatch layout (alignkit.train.rl_experience)."""
import math

import pytest
import torch

from alignkit.train.rl_experience import (ADVANTAGES, AdvantageInputs, explained_variance,
                                          iteration_prompt_indices, make_minibatches, token_kl)


def test_token_kl_by_hand():
    """d = logp - ref = [1, -1]; k1 = d = [1, -1]; k2 = d²/2 = [0.5, 0.5];
    k3 = expm1(-d) + d = [e^-1 - 1 + 1, e^1 - 1 - 1] = [0.367879, 0.718282]; masked slot -> 0."""
    lp = torch.tensor([[-1.0, -2.0, 0.0]])
    ref = torch.tensor([[-2.0, -1.0, float("nan")]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(token_kl(lp, ref, mask, "k1"), torch.tensor([[1.0, -1.0, 0.0]]))
    torch.testing.assert_close(token_kl(lp, ref, mask, "k2"), torch.tensor([[0.5, 0.5, 0.0]]))
    torch.testing.assert_close(token_kl(lp, ref, mask, "k3"),
                               torch.tensor([[math.exp(-1), math.e - 2, 0.0]]))


def test_explained_variance_by_hand():
    """target [1, 2, 3]: Var = (1 + 0 + 1)/3 = 2/3. pred [1, 2, 2]: residual [0, 0, 1], mean 1/3,
    Var = (1/9 + 1/9 + 4/9)/3 = 2/9. EV = 1 - (2/9)/(2/3) = 2/3. A masked element is ignored."""
    ev = explained_variance(torch.tensor([1.0, 2.0, 2.0, 50.0]), torch.tensor([1.0, 2.0, 3.0, 0.0]),
                            torch.tensor([1, 1, 1, 0]))
    assert ev == pytest.approx(2 / 3)
    # A constant target: 1.0 if predicted exactly, else 0.0 (scikit-learn's force_finite rule).
    assert explained_variance(torch.tensor([2.0, 2.0]), torch.tensor([2.0, 2.0])) == 1.0
    assert explained_variance(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])) == 0.0
    # Predicting the mean explains nothing; predicting the negation is worse than nothing.
    assert explained_variance(torch.tensor([2.0, 2.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])) == 0.0
    assert explained_variance(torch.tensor([-1.0, -2.0, -3.0]),
                              torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(-3.0)


def ppo_inputs(**kw) -> AdvantageInputs:
    base = dict(scores=torch.tensor([1.0]), kl=torch.tensor([[0.2, 0.4, 0.0]]),
                mask=torch.tensor([[1, 1, 0]]), beta=0.5, kl_in_reward=True, group_size=1,
                values=torch.tensor([[0.5, 0.25, 9.0]]), gamma=1.0, lam=1.0, whiten=False)
    return AdvantageInputs(**{**base, **kw})


def test_ppo_advantages_by_hand():
    """Rewards: -β·kl = [-0.1, -0.2], score 1 on the last token -> [-0.1, 0.8].
    γ = λ = 1: A_1 = 0.8 - V_1 = 0.8 - 0.25 = 0.55; A_0 = -0.1 + V_1 - V_0 + A_1
    = -0.1 + 0.25 - 0.5 + 0.55 = 0.2. Returns R = A + V = [0.7, 0.8].
    EV: Var(R) = 0.05² = 0.0025; residual R - V = [0.2, 0.55], Var = 0.175² = 0.030625;
    EV = 1 - 0.030625/0.0025 = -11.25."""
    out = ADVANTAGES["ppo"](ppo_inputs())
    torch.testing.assert_close(out.advantages, torch.tensor([[0.2, 0.55, 0.0]]))
    torch.testing.assert_close(out.returns, torch.tensor([[0.7, 0.8, 0.0]]))
    assert out.explained_variance == pytest.approx(-11.25)


def test_ppo_advantages_lambda_kl_in_loss_and_whitening():
    """λ = 0.5: A_0 = δ_0 + 0.5·A_1 = -0.35 + 0.275 = -0.075.
    KL in the loss (no penalty in the reward): rewards [0, 1]; A_1 = 0.75, A_0 = 0.25 - 0.5 + 0.75
    = 0.5. Whitening [0.2, 0.55]: mean 0.375, std 0.175 -> [-1, 1]."""
    torch.testing.assert_close(ADVANTAGES["ppo"](ppo_inputs(lam=0.5)).advantages,
                               torch.tensor([[-0.075, 0.55, 0.0]]))
    torch.testing.assert_close(ADVANTAGES["ppo"](ppo_inputs(kl_in_reward=False)).advantages,
                               torch.tensor([[0.5, 0.75, 0.0]]))
    torch.testing.assert_close(ADVANTAGES["ppo"](ppo_inputs(whiten=True)).advantages,
                               torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4, rtol=0)


def group_inputs(kl_in_reward: bool, scores=(1.0, 0.0, 0.0, 0.0), group_size=2):
    kl = torch.tensor([[0.25, 0.25], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    return AdvantageInputs(scores=torch.tensor(scores), kl=kl, mask=torch.tensor([[1, 1]] * 4),
                           beta=1.0, kl_in_reward=kl_in_reward, group_size=group_size)


def test_grpo_advantages_by_hand():
    """KL in the loss: r = [1, 0 | 0, 0]. Group 1: mean 0.5, unbiased std sqrt(0.25+0.25) =
    0.70711 -> A = ±0.5/(0.70711 + 1e-4) = ±0.70700; group 2: all equal -> 0. Every token of a
    completion gets its A. EV of the group mean: Var(r) = 0.1875, residual [0.5, -0.5, 0, 0]
    has Var 0.125 -> 1 - 0.125/0.1875 = 1/3.
    KL in the reward (β = 1, KL_0 = 0.25 + 0.25 = 0.5): r = [0.5, 0 | 0, 0] ->
    A = ±0.25/(0.35355 + 1e-4) = ±0.70691."""
    out = ADVANTAGES["grpo"](group_inputs(kl_in_reward=False))
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    torch.testing.assert_close(out.advantages, torch.tensor([[a, a], [-a, -a], [0, 0], [0, 0]]))
    assert out.returns is None
    assert out.explained_variance == pytest.approx(1 / 3)
    b = 0.25 / (math.sqrt(0.125) + 1e-4)
    torch.testing.assert_close(ADVANTAGES["grpo"](group_inputs(kl_in_reward=True)).advantages,
                               torch.tensor([[b, b], [-b, -b], [0, 0], [0, 0]]))


def test_rloo_advantages_by_hand():
    """r = [1, 0 | 3, 1], groups of 2: A_i = r_i - (the other one) = [1, -1, 2, -2].
    Baselines r - A = [0, 1, 1, 3]; Var(r) = 1.1875, Var(A) = (1+1+4+4)/4 = 2.5;
    EV = 1 - 2.5/1.1875 = -1.105263. KL in the reward (β = 1): r = [0.5, 0, 3, 1] -> A_0 = 0.5."""
    out = ADVANTAGES["rloo"](group_inputs(False, scores=(1.0, 0.0, 3.0, 1.0)))
    torch.testing.assert_close(out.advantages[:, 0], torch.tensor([1.0, -1.0, 2.0, -2.0]))
    assert out.explained_variance == pytest.approx(1 - 2.5 / 1.1875)
    kl_out = ADVANTAGES["rloo"](group_inputs(True, scores=(1.0, 0.0, 3.0, 1.0)))
    torch.testing.assert_close(kl_out.advantages[:, 0], torch.tensor([0.5, -0.5, 2.0, -2.0]))


def test_group_advantages_zero_on_masked_tokens():
    x = group_inputs(False)
    x.mask = torch.tensor([[1, 0], [1, 1], [1, 1], [1, 1]])
    for algo in ("grpo", "rloo"):
        assert float(ADVANTAGES[algo](x).advantages[0, 1]) == 0.0


def test_prompt_schedule_covers_each_pass_once_and_is_seeded():
    its = [iteration_prompt_indices(10, 4, i, seed=3) for i in range(5)]  # 20 draws = 2 passes
    flat = [p for it in its for p in it]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]  # each pass is reshuffled
    assert its == [iteration_prompt_indices(10, 4, i, seed=3) for i in range(5)]
    assert its != [iteration_prompt_indices(10, 4, i, seed=4) for i in range(5)]
    # more prompts per iteration than in the pool: wraps into the next pass
    assert sorted(iteration_prompt_indices(3, 6, 0, seed=0)) == [0, 0, 1, 1, 2, 2]


def test_minibatches_layout():
    """4 rows, 2 epochs, minibatch 2, micro-batch 1: 8 micro-batches; every row once per epoch;
    columns that are padding in the whole micro-batch are dropped (prompts on the left,
    responses on the right); extras copied into each."""
    t = {"prompt_ids": torch.tensor([[0, 0, 5], [0, 6, 7], [8, 9, 10], [0, 0, 11]]),
         "prompt_mask": torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]]),
         "response_ids": torch.tensor([[1, 0, 0], [2, 3, 0], [4, 5, 6], [7, 0, 0]]),
         "response_mask": torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0]]),
         "old_logps": torch.tensor([[-1.0, 0, 0], [-2, -3, 0], [-4, -5, -6], [-7, 0, 0]])}
    mbs = make_minibatches(t, n_epochs=2, minibatch=2, micro_batch=1, shuffle_key="x",
                           extras={"beta": 0.1})
    assert len(mbs) == 8 and all(b["beta"] == 0.1 for b in mbs)
    for epoch in (mbs[:4], mbs[4:]):
        assert sorted(int(b["response_ids"][0, 0]) for b in epoch) == [1, 2, 4, 7]
    for b in mbs:
        first = int(b["response_ids"][0, 0])
        n_resp = {1: 1, 2: 2, 4: 3, 7: 1}[first]
        n_prompt = {1: 1, 2: 2, 4: 3, 7: 1}[first]
        assert b["response_ids"].shape == (1, n_resp) and b["old_logps"].shape == (1, n_resp)
        assert b["prompt_ids"].shape == (1, n_prompt) and bool(b["prompt_mask"].all())
    # the two epochs use different orders (seeded by the key)
    assert [int(b["response_ids"][0, 0]) for b in mbs[:4]] != \
        [int(b["response_ids"][0, 0]) for b in mbs[4:]]
    with pytest.raises(ValueError, match="do not split"):
        make_minibatches(t, n_epochs=1, minibatch=3, micro_batch=1, shuffle_key="x")
