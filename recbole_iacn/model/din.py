"""DIN: Deep Interest Network (Zhou et al., KDD 2018)."""

from __future__ import annotations

from torch import nn

from recbole_iacn.model.base import CTRModel
from recbole_iacn.model.layers import MLP, LocalActivationUnit


class DIN(CTRModel):
    """The candidate attends over the behaviour sequence (local activation unit, padding masked);
    the attended interest, the candidate and the other features feed a DNN (200-80, Dice)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedder.sequence_dim
        self.attention = LocalActivationUnit(
            d, d, config["attention_mlp_sizes"], config["attention_activation"], config["attention_softmax"]
        )
        self.dnn = MLP(
            self.deep_interest_input_dim(d),
            config["mlp_hidden_size"],
            config["dnn_activation"],
            config["dropout_prob"],
            config["dnn_batch_norm"],
        )
        self.output_layer = nn.Linear(self.dnn.out_dim, 1)
        self.reset_parameters()

    def forward(self, interaction):
        features = self.embedder(interaction)
        interest, _ = self.attention(features.target, features.history, features.history_mask)  # [B, D]
        hidden = self.dnn(self.deep_interest_input(features, interest))
        return self.output_layer(hidden).squeeze(-1)  # [B]
