"""Parity with TRL 1.16.0's loss code on the same random batches (test-only dependency).

Install it without letting pip touch torch/transformers/accelerate:

    .venv/bin/pip install --no-deps trl==1.16.0

How TRL is called without a model. TRL 1.16 has no stand-alone DPO/KTO loss function: the loss
lives inside `DPOTrainer._compute_loss(self, model, inputs, return_outputs)` and
`KTOTrainer._compute_loss(...)`, which run the model and then do the arithmetic. We call those
methods unbound, `DPOTrainer._compute_loss.__get__(stub)(fake_model, inputs, False)`, where

- `stub` is a `types.SimpleNamespace` holding exactly the attributes the method reads (beta,
  loss types, label smoothing, a pass-through accelerator, an empty metrics dict, ...), with
  `precompute_ref_logps=True` so the reference log-probs come straight from `inputs` (for KTO
  also `_compute_kl_logps`, TRL's own helper, bound to the same stub);
- `fake_model` is a callable standing in for the policy: each row's first token id is a row key,
  and it returns per-token log-probs that sum to the per-sequence log-prob we chose for that
  row, plus dummy entropy/logit/top-1 tensors for TRL's logging. Response lengths (which TRL's
  IPO reads) are set through `completion_mask`.

So TRL's own arithmetic (log-ratios, its IPO length normalisation from `completion_mask`, the
loss formulas, the mean, the reward metrics, KTO's KL reference point) runs on our numbers.
TRL returns only the batch-mean loss, so per-example parity is checked with batches of one.
ORPO and SimPO have method-level losses in `trl.experimental` (`ORPOTrainer.odds_ratio_loss`,
`CPOTrainer.cpo_loss`) that take log-probs directly; they are bound to stubs the same way.

The stubs rely on TRL's private method bodies, so the module skips unless TRL is exactly 1.16.0.
"""
from __future__ import annotations

import types
from collections import defaultdict

import pytest
import torch
from torch.testing import assert_close

from alignkit.losses import (
    PREFERENCE_LOSSES,
    kto_reference_kl,
    orpo_loss,
    preference_metrics,
    simpo_loss,
)

trl = pytest.importorskip("trl")
if trl.__version__ != "1.16.0":
    pytest.skip(f"parity stubs are written against TRL 1.16.0, found {trl.__version__}",
                allow_module_level=True)

from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402
from trl.trainer.kto_trainer import KTOTrainer  # noqa: E402

TOL = dict(atol=1e-6, rtol=1e-6)
SEQ_LEN = 12  # tokens per row: 1 prompt token + up to 10 completion tokens + padding
_KL_KEY_OFFSET = 10_000  # row keys of KTO's mismatched (KL) rows


class _FakeModel:
    """Stands in for a causal LM: returns fixed per-sequence log-probs keyed by each row's first id."""

    training = True

    def __init__(self, logps_by_key: dict[int, float]):
        self.logps_by_key = logps_by_key

    def __call__(self, input_ids, **_):
        n, t = input_ids.shape
        total = torch.tensor([self.logps_by_key[int(k)] for k in input_ids[:, 0]], dtype=torch.float32)
        # The whole log-prob sits on the first completion token (shifted position 0; every row
        # has one prompt token) and the other positions are 0, so TRL's sum over positions
        # reproduces our float32 number bit for bit; spreading it would add rounding noise.
        per_token = torch.zeros(n, t - 1)
        per_token[:, 0] = total
        return types.SimpleNamespace(
            log_probs=per_token,
            entropy=torch.zeros(n, t - 1),
            mean_logits=torch.zeros(n, t - 1),
            is_top1=torch.zeros(n, t - 1, dtype=torch.bool),
        )


def _accelerator() -> types.SimpleNamespace:
    same = lambda x: x  # noqa: E731 - single process: gather is the identity
    return types.SimpleNamespace(device=torch.device("cpu"), gather=same, gather_for_metrics=same)


def _rows(keys: list[int], lengths: list[int]) -> dict[str, torch.Tensor]:
    """input_ids/attention_mask/completion_mask for rows with one prompt token then `length` tokens."""
    n = len(keys)
    input_ids = torch.ones(n, SEQ_LEN, dtype=torch.long)
    input_ids[:, 0] = torch.tensor(keys)
    completion_mask = torch.zeros(n, SEQ_LEN, dtype=torch.long)
    attention_mask = torch.zeros(n, SEQ_LEN, dtype=torch.long)
    for i, length in enumerate(lengths):
        completion_mask[i, 1:1 + length] = 1
        attention_mask[i, :1 + length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


def _random_pairs(seed: int, batch: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, SEQ_LEN - 1, (2, batch), generator=g)
    policy = -torch.rand(2, batch, generator=g) * 3 * lengths  # ~ -1.5 nats per token
    ref = policy + torch.randn(2, batch, generator=g)  # reference within about ±1 nat
    return {
        "policy_chosen_logps": policy[0], "policy_rejected_logps": policy[1],
        "ref_chosen_logps": ref[0], "ref_rejected_logps": ref[1],
        "chosen_lengths": lengths[0], "rejected_lengths": lengths[1],
    }


# --------------------------------------------------------------------------------------------
# DPO family


def _trl_dpo(loss_type: str, beta: float, label_smoothing: float, b: dict[str, torch.Tensor]):
    """TRL's mean loss and logged metrics for the pairs in `b`."""
    n = b["policy_chosen_logps"].numel()
    logps = torch.cat([b["policy_chosen_logps"], b["policy_rejected_logps"]]).tolist()
    lengths = torch.cat([b["chosen_lengths"], b["rejected_lengths"]]).tolist()
    inputs = _rows(list(range(2 * n)), lengths)  # batch is [chosen..., rejected...]
    inputs["ref_chosen_logps"] = b["ref_chosen_logps"]
    inputs["ref_rejected_logps"] = b["ref_rejected_logps"]
    model = _FakeModel(dict(enumerate(logps)))
    stub = types.SimpleNamespace(
        model=model, accelerator=_accelerator(), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type],
        loss_weights=[1.0], beta=beta, label_smoothing=label_smoothing, use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0,
        _tp_size=1, args=types.SimpleNamespace(gradient_checkpointing_kwargs=None),
    )
    loss = DPOTrainer._compute_loss.__get__(stub)(model, inputs, False)
    metrics = {k: v[-1] for k, v in stub._metrics["train"].items() if k.startswith("rewards/")}
    return loss, metrics


def _ours(loss_type: str, beta: float, label_smoothing: float, b: dict[str, torch.Tensor]):
    kwargs = {k: b[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                                "ref_chosen_logps", "ref_rejected_logps")}
    if loss_type in ("robust", "cdpo"):
        kwargs["label_smoothing"] = label_smoothing
    if loss_type == "ipo":
        kwargs.update(chosen_lengths=b["chosen_lengths"], rejected_lengths=b["rejected_lengths"])
    return PREFERENCE_LOSSES[loss_type](beta=beta, **kwargs)


DPO_CASES = [
    ("sigmoid", 0.1, 0.0),
    ("sigmoid", 0.5, 0.0),
    ("hinge", 0.1, 0.0),
    ("hinge", 0.5, 0.0),  # some pairs past the margin: zero loss
    ("ipo", 0.1, 0.0),
    ("ipo", 1.0, 0.0),
    ("robust", 0.1, 0.0),
    ("robust", 0.1, 0.2),
    ("robust", 0.5, 0.4),
]


@pytest.mark.parametrize("loss_type, beta, eps", DPO_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_dpo_family_matches_trl(loss_type, beta, eps, seed):
    b = _random_pairs(seed)
    out = _ours(loss_type, beta, eps, b)
    trl_loss, trl_metrics = _trl_dpo(loss_type, beta, eps, b)
    assert_close(out.losses.mean(), trl_loss, **TOL)
    ours = preference_metrics(out.chosen_rewards, out.rejected_rewards)
    assert set(ours) == set(trl_metrics)
    for key, value in ours.items():
        assert value == pytest.approx(trl_metrics[key], abs=1e-6), key
    # per-example: TRL only returns a mean, so compare batches of one
    for i in range(b["policy_chosen_logps"].numel()):
        single = {k: v[i:i + 1] for k, v in b.items()}
        trl_single, _ = _trl_dpo(loss_type, beta, eps, single)
        assert_close(out.losses[i], trl_single, **TOL)


def test_cdpo_matches_trls_label_smoothed_pairwise_loss():
    """TRL 1.16 dropped label smoothing from its "sigmoid" loss; its "aot" loss with batch size 1
    is exactly the cDPO formula (sorting one element is the identity)."""
    b = _random_pairs(3)
    out = _ours("cdpo", 0.2, 0.15, b)
    for i in range(b["policy_chosen_logps"].numel()):
        single = {k: v[i:i + 1] for k, v in b.items()}
        trl_single, _ = _trl_dpo("aot", 0.2, 0.15, single)
        assert_close(out.losses[i], trl_single, **TOL)


def test_the_parity_harness_can_fail():
    """Guard against a stub that makes everything agree: different β must disagree with TRL."""
    b = _random_pairs(0)
    trl_loss, _ = _trl_dpo("sigmoid", 0.1, 0.0, b)
    assert not torch.allclose(_ours("sigmoid", 0.2, 0.0, b).losses.mean(), trl_loss, atol=1e-3)
    # and IPO without length normalisation is a different objective from TRL's
    ipo_trl, _ = _trl_dpo("ipo", 0.1, 0.0, b)
    unnormalised = PREFERENCE_LOSSES["ipo"](
        beta=0.1, length_normalize=False,
        **{k: b[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                             "ref_chosen_logps", "ref_rejected_logps")})
    assert not torch.allclose(unnormalised.losses.mean(), ipo_trl, atol=1e-3)


# --------------------------------------------------------------------------------------------
# KTO


def _trl_kto(beta, w_d, w_u, policy, ref, labels, kl_policy, kl_ref):
    n = policy.numel()
    lengths = [3] * n
    inputs = _rows(list(range(n)), lengths)
    kl_rows = _rows([_KL_KEY_OFFSET + i for i in range(n)], lengths)
    inputs.update({f"KL_{k}": v for k, v in kl_rows.items()})
    inputs["label"] = labels
    inputs["ref_logps"] = ref
    inputs["ref_KL_logps"] = kl_ref
    table = dict(enumerate(policy.tolist()))
    table.update({_KL_KEY_OFFSET + i: v for i, v in enumerate(kl_policy.tolist())})
    model = _FakeModel(table)
    stub = types.SimpleNamespace(
        model=model, accelerator=_accelerator(), aux_loss_enabled=False, precompute_ref_logps=True,
        calculate_KL=True, loss_type="kto", beta=beta, desirable_weight=w_d, undesirable_weight=w_u,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0,
        _tp_size=1, args=types.SimpleNamespace(gradient_checkpointing_kwargs=None),
    )
    # TRL's own helper computes the mismatched-pair log-probs; bind it to the stub as well
    stub._compute_kl_logps = KTOTrainer._compute_kl_logps.__get__(stub)
    loss = KTOTrainer._compute_loss.__get__(stub)(model, inputs, False)
    metrics = {k: v[-1] for k, v in stub._metrics["train"].items()
               if k.startswith("rewards/") or k == "kl"}
    return loss, metrics


@pytest.mark.parametrize("beta, w_d, w_u", [(0.1, 1.0, 1.0), (0.5, 1.0, 1.33), (2.0, 0.7, 1.0)])
@pytest.mark.parametrize("kl_shift", [0.5, -0.5])  # positive KL estimate, and one clamped to 0
@pytest.mark.parametrize("seed", [0, 1])
def test_kto_matches_trl(beta, w_d, w_u, kl_shift, seed):
    g = torch.Generator().manual_seed(seed)
    n = 8
    policy = -torch.rand(n, generator=g) * 20
    ref = policy + torch.randn(n, generator=g)
    labels = torch.rand(n, generator=g) < 0.5
    labels[0], labels[1] = True, False  # both kinds present
    kl_policy = -torch.rand(n, generator=g) * 20
    kl_ref = kl_policy - kl_shift + 0.1 * torch.randn(n, generator=g)

    kl = kto_reference_kl(kl_policy, kl_ref)
    out = PREFERENCE_LOSSES["kto"](policy_logps=policy, ref_logps=ref, labels=labels, kl=kl,
                                   beta=beta, desirable_weight=w_d, undesirable_weight=w_u)
    trl_loss, trl_metrics = _trl_kto(beta, w_d, w_u, policy, ref, labels, kl_policy, kl_ref)

    assert_close(out.losses.mean(), trl_loss, **TOL)
    assert out.extras["kl"].item() == pytest.approx(trl_metrics["kl"], abs=1e-6)
    if kl_shift < 0:
        assert trl_metrics["kl"] == 0.0  # the clamp was exercised on both sides
    ours = preference_metrics(out.chosen_rewards, out.rejected_rewards, paired=False)
    assert set(ours) == {k for k in trl_metrics if k != "kl"}
    for key, value in ours.items():
        assert value == pytest.approx(trl_metrics[key], abs=1e-6), key
    # per-example, in batch order: one-row batches (TRL's KL is then that row's own mismatch
    # term, so feed ours the same single-row estimate)
    for i in range(n):
        s = slice(i, i + 1)
        trl_single, _ = _trl_kto(beta, w_d, w_u, policy[s], ref[s], labels[s], kl_policy[s], kl_ref[s])
        single = PREFERENCE_LOSSES["kto"](
            policy_logps=policy[s], ref_logps=ref[s], labels=labels[s],
            kl=kto_reference_kl(kl_policy[s], kl_ref[s]), beta=beta,
            desirable_weight=w_d, undesirable_weight=w_u)
        assert_close(single.losses[0], trl_single, **TOL)


# --------------------------------------------------------------------------------------------
# SimPO and ORPO (trl.experimental method-level losses on log-probs)


@pytest.mark.parametrize("beta, gamma, eps", [(2.0, 0.5, 0.0), (2.5, 1.4, 0.1)])
def test_simpo_matches_trl_cpo(beta, gamma, eps):
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    b = _random_pairs(4)
    out = simpo_loss(policy_chosen_logps=b["policy_chosen_logps"],
                     policy_rejected_logps=b["policy_rejected_logps"],
                     chosen_lengths=b["chosen_lengths"], rejected_lengths=b["rejected_lengths"],
                     beta=beta, gamma=gamma, label_smoothing=eps)
    stub = types.SimpleNamespace(alpha=0.0, loss_type="simpo", simpo_gamma=gamma, beta=beta,
                                 label_smoothing=eps, accelerator=_accelerator())
    # TRL's CPO trainer feeds cpo_loss per-token AVERAGE log-probs when loss_type="simpo"
    avg_c = b["policy_chosen_logps"] / b["chosen_lengths"]
    avg_r = b["policy_rejected_logps"] / b["rejected_lengths"]
    losses, chosen_rewards, rejected_rewards = CPOTrainer.cpo_loss.__get__(stub)(avg_c, avg_r)
    assert_close(out.losses, losses, **TOL)
    assert_close(out.chosen_rewards, chosen_rewards, **TOL)
    assert_close(out.rejected_rewards, rejected_rewards, **TOL)


def test_orpo_matches_trl_odds_ratio_loss():
    """TRL's odds_ratio_loss returns β·log σ(log odds ratio) (to be SUBTRACTED from its NLL), so
    our or_loss = -TRL losses / β. TRL's NLL is a token average over the whole batch, ours a
    per-sequence average (documented deviation); with equal chosen lengths they coincide."""
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    beta = 0.25
    b = _random_pairs(5)
    equal = torch.full_like(b["chosen_lengths"], 7)
    out = orpo_loss(policy_chosen_logps=b["policy_chosen_logps"],
                    policy_rejected_logps=b["policy_rejected_logps"],
                    chosen_lengths=equal, rejected_lengths=b["rejected_lengths"], beta=beta)
    stub = types.SimpleNamespace(beta=beta, accelerator=_accelerator())
    avg_c = b["policy_chosen_logps"] / equal
    avg_r = b["policy_rejected_logps"] / b["rejected_lengths"]
    trl_losses, trl_chosen, trl_rejected, trl_mean_ratio, trl_mean_log_odds = (
        ORPOTrainer.odds_ratio_loss.__get__(stub)(avg_c, avg_r))
    assert_close(out.extras["or_loss"], -trl_losses / beta, **TOL)
    assert_close(out.extras["log_odds"].mean(), trl_mean_log_odds, **TOL)
    assert_close(out.chosen_rewards, trl_chosen, **TOL)
    assert_close(out.rejected_rewards, trl_rejected, **TOL)
    # TRL's total: nll - losses.mean(), nll = token-average NLL of the chosen answers; with every
    # chosen answer 7 tokens long that is mean(-avg_c)
    trl_total = (-avg_c).mean() - trl_losses.mean()
    assert_close(out.losses.mean(), trl_total, **TOL)
