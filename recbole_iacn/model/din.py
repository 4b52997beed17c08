"""DIN: Deep Interest Network (Zhou et al., KDD 2018)."""

from __future__ import annotations

from torch import nn

from recbole_iacn.model.base import CTRModel
from recbole_iacn.model.layers import MLP, LocalActivationUnit


class DIN(CTRModel):
    """The candidate attends over the behaviour sequence (local activation unit, padding masked);
    the attended interest, the candidate and the other features feed a DNN (200-80, Dice).

    Where each choice comes from (paper: Zhou et al., KDD 2018; code: the DIEN authors' TensorFlow
    ``Model_DIN`` and ``din_attention``, on which the IaCN paper builds):

    * activation unit input ``[q, k, q − k, q ⊙ k]``, MLP 80-40 with sigmoid: code (the paper draws an
      out product and PReLU/Dice; ``attention_activation`` offers ``prelu`` and ``dice``);
    * softmax over the valid behaviours: code; the paper drops the softmax to keep the intensity of
      interests: ``attention_softmax: false`` gives the paper's form;
    * DNN 200-80 with Dice: paper and code; the code also batch-normalises the DNN input
      (``dnn_batch_norm`` normalises after each layer instead);
    * DNN input: see :meth:`CTRModel.deep_interest_input` (pooled behaviours by ``history_pooling``:
      sum by default (``properties/overall.yaml``), as in the code, or mean; user fields by
      ``host_user_features``);
    * one logit with BCE: the code's 2-way softmax with cross-entropy is the same model.
    """

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
