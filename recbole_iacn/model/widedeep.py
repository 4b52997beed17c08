"""Wide & Deep (Cheng et al., 2016) with the behaviour sequence pooled, as in the DIEN paper's baseline."""

from __future__ import annotations

import torch
from torch import nn

from recbole_iacn.model.base import CTRModel
from recbole_iacn.model.layers import MLP, length_mask, masked_mean
from recbole_iacn.model.schema import FLOAT, TOKEN, TOKEN_SEQ


class WideLinear(nn.Module):
    """The wide part: one learned weight per id of every sparse field, summed, plus a bias.

    Token fields (candidate item, its category, user and context fields) contribute their id's weight;
    the behaviour sequence contributes the mean weight of its items (and categories); float fields a
    weight times the value.
    """

    def __init__(self, schema):
        super().__init__()
        self.schema = schema
        self.token_fields = [
            name for name, f in schema.fields.items()
            if f.type == TOKEN and name not in (schema.label_field, schema.history_length_field)
        ]
        self.sequence_fields = [
            name for name, f in schema.fields.items() if f.type == TOKEN_SEQ
        ]
        self.float_fields = [
            name for name, f in schema.fields.items() if f.type == FLOAT and name != schema.label_field
        ]
        self.weights = nn.ModuleDict(
            {name: nn.Embedding(schema.num(name), 1, padding_idx=0) for name in self.token_fields + self.sequence_fields}
        )
        self.float_weights = nn.Parameter(torch.zeros(len(self.float_fields)))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, interaction) -> torch.Tensor:
        total = self.bias
        for name in self.token_fields:
            total = total + self.weights[name](interaction[name]).squeeze(-1)  # [B]
        history_mask = None
        for name in self.sequence_fields:
            ids = interaction[name]  # [B, L]
            if name in (self.schema.history_item_field, self.schema.history_category_field):
                if history_mask is None:
                    history_mask = length_mask(interaction[self.schema.history_length_field], ids.shape[1])
                mask = history_mask
            else:
                mask = ids > 0
            total = total + masked_mean(self.weights[name](ids), mask).squeeze(-1)
        for i, name in enumerate(self.float_fields):
            total = total + self.float_weights[i] * interaction[name].float()
        return total


class WideDeep(CTRModel):
    """Deep: MLP over the user, candidate, mean behaviour and other fields; wide: :class:`WideLinear`."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        in_dim = self.embedder.side_dim + 2 * self.embedder.sequence_dim
        self.deep = MLP(
            in_dim, config["mlp_hidden_size"], config["dnn_activation"], config["dropout_prob"], config["dnn_batch_norm"]
        )
        self.deep_output = nn.Linear(self.deep.out_dim, 1)
        self.wide = WideLinear(self.schema)
        self.reset_parameters()
        for table in self.wide.weights.values():
            nn.init.zeros_(table.weight)

    def forward(self, interaction):
        f = self.embedder(interaction)
        x = torch.cat([f.user, f.target, f.item_extra, f.context, f.history_mean()], dim=-1)
        return self.deep_output(self.deep(x)).squeeze(-1) + self.wide(interaction)
