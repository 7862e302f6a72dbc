"""Training objectives as pure functions of log-probs or rewards (imports only torch).

`PREFERENCE_LOSSES` maps the `alignkit prefer` loss names to their functions; see
`alignkit.losses.preference` for the shared keyword-argument call convention.
"""
from alignkit.losses.preference import (
    PREFERENCE_LOSSES,
    REFERENCE_FREE_LOSSES,
    UNPAIRED_LOSSES,
    PreferenceLossOutput,
    cdpo_loss,
    hinge_loss,
    ipo_loss,
    kto_loss,
    kto_reference_kl,
    orpo_loss,
    preference_metrics,
    robust_loss,
    sigmoid_loss,
    simpo_loss,
)
from alignkit.losses.reward import bradley_terry, reward_centering, soft_bradley_terry
from alignkit.losses.sft import sft_nll, token_logps

__all__ = [
    "PREFERENCE_LOSSES",
    "REFERENCE_FREE_LOSSES",
    "UNPAIRED_LOSSES",
    "PreferenceLossOutput",
    "bradley_terry",
    "cdpo_loss",
    "hinge_loss",
    "ipo_loss",
    "kto_loss",
    "kto_reference_kl",
    "orpo_loss",
    "preference_metrics",
    "reward_centering",
    "robust_loss",
    "sft_nll",
    "sigmoid_loss",
    "simpo_loss",
    "soft_bradley_terry",
    "token_logps",
]
