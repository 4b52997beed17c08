"""Building blocks shared by the host models: activations, MLPs, masked operations, attention."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Dice(nn.Module):
    """Data-adaptive activation of DIN (Zhou et al., 2018), for inputs of any shape ``[..., dim]``.

    ``f(s) = p(s)·s + (1 − p(s))·α·s`` with ``p(s) = sigmoid((s − E[s]) / sqrt(Var[s] + ε))``, the
    moments taken over the batch while training and as running averages at inference (BatchNorm
    without affine parameters), ``α`` learned per unit. (RecBole's ``Dice`` keeps ``α`` fixed at 0 and
    never normalises, which makes it ``sigmoid(s)·s``.)
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        p = torch.sigmoid(self.norm(x.reshape(-1, shape[-1])).reshape(shape))
        return p * x + (1 - p) * self.alpha * x


class PReLU(nn.Module):
    """PReLU with one learned slope per unit of the *last* dimension, for inputs ``[..., dim]``.

    ``nn.PReLU(dim)`` reads dimension 1 as the channels, which is the behaviour axis L of a
    ``[B, L, H]`` tensor; DIN's activation units act per hidden unit, whatever the leading shape.
    Slopes start at 0.25, as ``nn.PReLU``'s.
    """

    def __init__(self, dim: int, init: float = 0.25):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, self.weight * x)


from recbole_iacn.settings import ACTIVATIONS  # noqa: E402  (declared with dnn_activation)


def activation(name: str, dim: int) -> nn.Module:
    """An activation layer by name: relu, prelu, dice, sigmoid, tanh or none."""
    name = str(name).lower()
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return PReLU(dim)
    if name == "dice":
        return Dice(dim)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"Unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}.")


class MLP(nn.Sequential):
    """``Linear → [BatchNorm] → activation → [Dropout]`` for each hidden size, on ``[..., in_dim]``."""

    def __init__(
        self,
        in_dim: int,
        hidden_sizes: Sequence[int],
        activation_name: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        layers = []
        for size in hidden_sizes:
            layers.append(nn.Linear(in_dim, size))
            if batch_norm:
                layers.append(_LastDimBatchNorm(size))
            layers.append(activation(activation_name, size))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = size
        super().__init__(*layers)
        self.out_dim = in_dim


class _LastDimBatchNorm(nn.BatchNorm1d):
    def forward(self, x):
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


def length_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``[B, steps]`` mask of the first ``lengths[b]`` steps: whatever a padded position holds, it
    never reaches a model."""
    return torch.arange(steps, device=lengths.device) < lengths.unsqueeze(-1)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over the ``True`` entries of ``mask``; masked entries, and rows with none, get 0."""
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, L, D]`` over the valid steps of ``mask [B, L]``; zero for empty rows."""
    weights = mask.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class LocalActivationUnit(nn.Module):
    """DIN's attention of a candidate (query) over behaviours (keys).

    The score MLP reads ``[q, k, q − k, q ⊙ k]``. Its first layer is evaluated in the algebraically
    equal form ``(W_q + W_d)·q + (W_k − W_d)·k + W_p·(q ⊙ k)``: the query term is computed once per
    sample instead of once per behaviour, and no ``[B, L, 4D]`` tensor is built. Parameters are those
    of the plain ``Linear(4D, H1)``, so the two forms are interchangeable.

    Args:
        query_dim: size of the query; projected to ``key_dim`` first when different (as in DIEN).
        key_dim: size of each behaviour vector.
        hidden_sizes: score MLP sizes (DIN: 80, 40).
        activation_name: activation of the score MLP (DIN's code: sigmoid).
        softmax: normalise scores over valid behaviours (DIEN's code) or use them raw, masked (DIN paper).
    """

    def __init__(self, query_dim, key_dim, hidden_sizes=(80, 40), activation_name="sigmoid", softmax=True):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("attention_mlp_sizes needs at least one layer size.")
        self.query_projection = nn.Linear(query_dim, key_dim) if query_dim != key_dim else None
        self.first = nn.Linear(4 * key_dim, hidden_sizes[0])
        self.first_activation = activation(activation_name, hidden_sizes[0])
        self.rest = MLP(hidden_sizes[0], hidden_sizes[1:], activation_name)
        self.score = nn.Linear(self.rest.out_dim, 1)
        self.softmax = softmax
        self.key_dim = key_dim
        # layers whose output depends on batch statistics (Dice, batch norm) must see the real
        # behaviours only: otherwise whatever padded slots hold changes every score
        self.uses_batch_statistics = any(isinstance(m, (Dice, nn.BatchNorm1d)) for m in self.modules())

    def scores(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights ``[B, L]`` of ``query [B, Dq]`` over ``keys [B, L, D]``."""
        if self.query_projection is not None:
            query = self.query_projection(query)
        d = self.key_dim
        w_q, w_k, w_d, w_p = self.first.weight.split(d, dim=1)  # each [H1, D]
        hidden = (
            nn.functional.linear(query, w_q + w_d, self.first.bias).unsqueeze(1)  # [B, 1, H1]
            + nn.functional.linear(keys, w_k - w_d)  # [B, L, H1]
            + nn.functional.linear(query.unsqueeze(1) * keys, w_p)  # [B, L, H1]
        )
        if self.uses_batch_statistics:  # score the valid behaviours only; padded slots stay 0
            raw = hidden.new_zeros(hidden.shape[:2])
            raw[mask] = self._score_mlp(hidden[mask]).squeeze(-1)
        else:
            raw = self._score_mlp(hidden).squeeze(-1)  # [B, L]
        if self.softmax:
            return masked_softmax(raw, mask)
        return raw * mask

    def _score_mlp(self, hidden: torch.Tensor) -> torch.Tensor:
        """First layer's pre-activations ``[..., H1]`` → raw scores ``[..., 1]``."""
        return self.score(self.rest(self.first_activation(hidden)))

    def forward(self, query, keys, mask):
        """Return (pooled ``[B, D]``, weights ``[B, L]``)."""
        weights = self.scores(query, keys, mask)
        return torch.einsum("bl,bld->bd", weights, keys), weights
