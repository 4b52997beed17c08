"""Wide & Deep (Cheng et al., 2016) with the behaviour sequence pooled, as in the DIEN paper's baseline."""

from __future__ import annotations

import torch
from torch import nn

from recbole_iacn.model.base import CTRModel
from recbole_iacn.model.embedding import OffsetEmbedding
from recbole_iacn.model.layers import MLP, length_mask, masked_mean
from recbole_iacn.model.schema import FLOAT, TOKEN, TOKEN_SEQ


class WideLinear(nn.Module):
    """The wide part: one learned weight per id of every sparse field, summed, plus a bias.

    Token fields (candidate item, its category, user and context fields) contribute their id's weight;
    each token sequence (the behaviours and their categories) the mean weight of its real entries; float
    fields a weight times the value. All weights sit in one :class:`OffsetEmbedding` table.
    """

    def __init__(self, schema):
        super().__init__()
        self.schema = schema
        skip = (schema.label_field, schema.history_length_field)
        self.token_fields = [n for n, f in schema.fields.items() if f.type == TOKEN and n not in skip]
        self.sequence_fields = [n for n, f in schema.fields.items() if f.type == TOKEN_SEQ]
        self.float_fields = [n for n, f in schema.fields.items() if f.type == FLOAT and n not in skip]
        self.history_fields = (schema.history_item_field, schema.history_category_field)
        self.weights = OffsetEmbedding([schema.num(n) for n in self.token_fields + self.sequence_fields], 1)
        self.float_weights = nn.Parameter(torch.zeros(len(self.float_fields)))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, interaction) -> torch.Tensor:
        names = self.token_fields + self.sequence_fields
        weights = self.weights([interaction[n] for n in names])
        total = self.bias + sum(w.squeeze(-1) for w in weights[: len(self.token_fields)])  # [B]
        history_mask = None
        for name, w in zip(self.sequence_fields, weights[len(self.token_fields) :]):
            ids = interaction[name]  # [B, L]
            if name in self.history_fields:
                if history_mask is None:
                    history_mask = length_mask(interaction[self.schema.history_length_field], ids.shape[1])
                mask = history_mask
            else:
                mask = ids > 0
            total = total + masked_mean(w, mask).squeeze(-1)
        for i, name in enumerate(self.float_fields):
            total = total + self.float_weights[i] * interaction[name].float()
        return total


class WideDeep(CTRModel):
    """Deep: MLP over the user, candidate, pooled behaviours (``history_pooling``) and other fields; wide:
    :class:`WideLinear`.

    Where each choice comes from (paper: Cheng et al., 2016; code: the DIEN authors' ``Model_WideDeep``,
    the baseline of the DIEN and IaCN tables):

    * deep part 200-80 over user, candidate and pooled behaviours: code (which uses PReLU;
      ``dnn_activation`` chooses);
    * wide part: one learned weight per id of every sparse field (a generalised linear model over the
      raw ids, the paper's wide part without its cross-product transformations, which this package
      does not build); the code's wide part is instead a linear layer over the candidate, the
      behaviours' sum and their product.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        in_dim = self.embedder.side_dim + 2 * self.embedder.sequence_dim
        self.deep = MLP(
            in_dim, config["mlp_hidden_size"], config["dnn_activation"], config["dropout_prob"], config["dnn_batch_norm"]
        )
        self.deep_output = nn.Linear(self.deep.out_dim, 1)
        self.wide = WideLinear(self.schema)
        self.reset_parameters()
        nn.init.zeros_(self.wide.weights.table.weight)

    def forward(self, interaction):
        f = self.embedder(interaction)
        x = torch.cat([f.user, f.target, f.item_extra, f.context, f.history_pooled()], dim=-1)
        return self.deep_output(self.deep(x)).squeeze(-1) + self.wide(interaction)
