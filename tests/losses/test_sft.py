import math

import torch
from torch.testing import assert_close

from alignkit.losses.sft import sft_nll, token_logps


def test_sft_nll_three_tokens_by_hand():
    """Vocabulary of 3, three response tokens.

    Row 0: logits (0, 0, 0), target 1 -> p = 1/3, NLL = ln 3 = 1.098612
    Row 1: logits (ln 2, 0, 0) = odds 2:1:1, target 0 -> p = 2/4 = 1/2, NLL = ln 2 = 0.693147
    Row 2: logits (0, 0, ln 3) = odds 1:1:3, target 1 -> p = 1/5, NLL = ln 5 = 1.609438
    Token-average loss = (ln 3 + ln 2 + ln 5) / 3 = ln 30 / 3 = 1.133732.
    With weights (1, 1, 2): (ln 3 + ln 2 + 2 ln 5) / (1 + 1 + 2) = ln 150 / 4 = 1.252666.
    """
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, 0.0, math.log(3)]])
    targets = torch.tensor([1, 0, 1])
    lp = token_logps(logits, targets)
    assert_close(lp, torch.tensor([-math.log(3), -math.log(2), -math.log(5)]))
    nll = sft_nll(lp)
    assert_close(nll.sum() / 3, torch.tensor(math.log(30) / 3))
    w = torch.tensor([1.0, 1.0, 2.0])
    assert_close(sft_nll(lp, w).sum() / w.sum(), torch.tensor(math.log(150) / 4))


def test_token_logps_is_float32_for_half_logits():
    logits = torch.zeros(2, 4, dtype=torch.bfloat16)
    out = token_logps(logits, torch.tensor([0, 3]))
    assert out.dtype == torch.float32
    assert_close(out, torch.full((2,), -math.log(4)))
