"""DAIN: Deep Adaptive Interest Network (arXiv 2409.02425), as described in ``docs/method.md``."""

from __future__ import annotations

import torch
from torch import nn

from recbole_iacn.model.base import CTRModel
from recbole_iacn.model.layers import MLP


class DAIN(CTRModel):
    """User and item embeddings with the context field embeddings, concatenated, through a
    "neural collaborative filtering" MLP (128-64-32, ReLU) to one output. The behaviour sequence is
    not read by DAIN itself (DAIN + IaCN feeds it to the capsule network only).

    ``loss_type``: ``BCE`` (default, on the logit: the loss of every other host here) or ``MSE`` (the
    paper's, on the probability). Everything else follows the paper; it has no public code.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        in_dim = self.embedder.sequence_dim + self.embedder.side_dim
        self.mlp = MLP(
            in_dim, config["mlp_hidden_size"], config["dnn_activation"], config["dropout_prob"], config["dnn_batch_norm"]
        )
        self.output_layer = nn.Linear(self.mlp.out_dim, 1)
        self.loss_type = str(config["loss_type"]).upper()
        self.mse = nn.MSELoss()
        self.reset_parameters()

    def forward(self, interaction):
        f = self.embedder(interaction, with_history=False)
        x = torch.cat([f.user, f.target, f.item_extra, f.context], dim=-1)
        return self.output_layer(self.mlp(x)).squeeze(-1)

    def calculate_loss(self, interaction):
        if self.loss_type == "MSE":
            return self.mse(torch.sigmoid(self.forward(interaction)), interaction[self.label_field])
        return super().calculate_loss(interaction)
