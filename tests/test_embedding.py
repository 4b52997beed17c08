"""``Embedding``: nn.Embedding's values and gradients, with the CPU backward as one index_add_."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recbole_iacn.model.embedding import Embedding


@pytest.mark.parametrize("padding_idx", [None, 0, 3])
def test_embedding_matches_nn_embedding_forward_and_gradient(padding_idx):
    torch.manual_seed(0)
    ours = Embedding(11, 5, padding_idx=padding_idx).double()
    reference = nn.Embedding(11, 5, padding_idx=padding_idx).double()
    reference.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 11, (7, 9))
    ids[0, :4] = 3  # repeated ids accumulate
    ids[1, :3] = 0
    upstream = torch.randn(7, 9, 5, dtype=torch.float64)
    out, expected = ours(ids), reference(ids)
    assert out.shape == (7, 9, 5)
    assert torch.equal(out, expected)
    out.backward(upstream)
    expected.backward(upstream)
    assert torch.allclose(ours.weight.grad, reference.weight.grad, atol=1e-12)
    if padding_idx is not None:
        assert torch.all(ours.weight.grad[padding_idx] == 0)


def test_embedding_gradient_passes_gradcheck():
    weight = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[1, 2, 2], [5, 1, 0]])
    table = Embedding(6, 3)

    def lookup(w):
        return torch.func.functional_call(table, {"weight": w}, (ids,))

    assert torch.autograd.gradcheck(lookup, (weight,))


def test_embedding_is_an_nn_embedding_with_the_same_state_dict():
    table = Embedding(4, 2, padding_idx=0)
    assert isinstance(table, nn.Embedding)
    assert list(table.state_dict()) == list(nn.Embedding(4, 2).state_dict())
