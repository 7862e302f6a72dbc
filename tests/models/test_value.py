"""The PPO critic: a per-token value head on a causal-LM backbone (alignkit.models.value)."""
import torch

from alignkit.models.loading import _doc_tiny_factory, load_model, register_builtin
from alignkit.models.value import ValueModel


def doc_tiny():
    register_builtin("doc-tiny", _doc_tiny_factory, overwrite=True)
    return load_model("builtin:doc-tiny").model


def test_head_starts_at_zero_and_padding_is_zero():
    vm = ValueModel(doc_tiny())
    v = vm(torch.tensor([[3, 4, 5, 0]]), torch.tensor([[1, 1, 1, 0]]))
    assert v.shape == (1, 4) and torch.equal(v, torch.zeros(1, 4))


def test_left_and_right_padding_give_the_same_values():
    """Position ids come from the mask, so a row's real tokens get the same values wherever its
    padding is."""
    torch.manual_seed(0)
    vm = ValueModel(doc_tiny()).eval()
    torch.nn.init.normal_(vm.value_head.weight)
    right = vm(torch.tensor([[3, 4, 5, 0, 0]]), torch.tensor([[1, 1, 1, 0, 0]]))
    left = vm(torch.tensor([[0, 0, 3, 4, 5]]), torch.tensor([[0, 0, 1, 1, 1]]))
    torch.testing.assert_close(right[:, :3], left[:, 2:], atol=1e-5, rtol=0)
    assert torch.equal(right[:, 3:], torch.zeros(1, 2)) and torch.equal(left[:, :2], torch.zeros(1, 2))
    assert right.abs().sum() > 0


def test_value_loss_trains_head_and_backbone():
    """With a zero head only the head gets a gradient at first; once it is nonzero the backbone
    does too (the critic is a full network, not a probe)."""
    lm = doc_tiny()
    vm = ValueModel(lm).train()
    ids, mask = torch.tensor([[3, 4, 5]]), torch.ones(1, 3, dtype=torch.long)
    (vm(ids, mask) - 1.0).pow(2).sum().backward()
    assert vm.value_head.bias.grad.abs().sum() > 0
    emb = lm.get_input_embeddings().weight
    assert emb.grad is None or emb.grad.abs().sum() == 0
    vm.zero_grad()
    torch.nn.init.constant_(vm.value_head.weight, 0.1)
    (vm(ids, mask) - 1.0).pow(2).sum().backward()
    assert emb.grad.abs().sum() > 0
