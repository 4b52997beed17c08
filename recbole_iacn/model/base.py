"""``CTRModel``: the base of every host model (pointwise, BCE on the label, AUC/LogLoss)."""

from __future__ import annotations

import torch
from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_iacn import settings
from recbole_iacn.model.embedding import FeatureEmbedder, FieldEmbedding, ItemEmbedding, init_embedding_
from recbole_iacn.model.schema import FeatureSchema


class CTRModel(AbstractRecommender):
    """A click-through-rate model over :class:`~recbole_iacn.model.embedding.CTRFeatures`.

    Subclasses implement ``forward(interaction)`` returning logits ``[B]``. The item-id lookup comes from
    :meth:`build_item_embedding`, the hook through which an auxiliary component (IaCN) widens the
    item embedding without the host knowing about it.
    """

    type = ModelType.CONTEXT
    input_type = InputType.POINTWISE
    #: names of the parts of ``calculate_loss``'s value, for the training log
    loss_names = ("main",)

    def __init__(self, config, dataset):
        super().__init__()
        self.schema = dataset if isinstance(dataset, FeatureSchema) else FeatureSchema.from_dataset(dataset)
        self.device = config["device"]
        self.embedding_size = config["embedding_size"]
        self.embedding_init = config["embedding_init"]
        self.embedding_init_std = config["embedding_init_std"]
        self.label_field = self.schema.label_field
        self.embedder = FeatureEmbedder(
            self.schema,
            self.embedding_size,
            self.build_item_embedding(config),
            user_features=config["host_user_features"] is not False,
            history_pooling=config["history_pooling"] or "mean",
        )
        self.loss_fct = nn.BCEWithLogitsLoss()

    # ------------------------------------------------------------------ hooks
    def build_item_embedding(self, config) -> nn.Module:
        """The module that maps item ids to vectors; must expose ``output_dim``.

        ``E_orig`` is ``item_embedding_size`` wide (null: ``embedding_size``). A wider ``E_orig`` is the
        width control of an attached component: ``X`` with ``item_embedding_size = d + d_aux`` has the
        same item-vector width, and the same host layers, as ``X_IaCN``, without the auxiliary task.
        """
        return ItemEmbedding(self.schema.num_items, config["item_embedding_size"] or self.embedding_size)

    # ------------------------------------------------------------------ RecBole API
    def calculate_loss(self, interaction):
        return self.loss_fct(self.forward(interaction), interaction[self.label_field])

    def predict(self, interaction):
        return torch.sigmoid(self.forward(interaction))

    # ------------------------------------------------------------------ shared pieces
    def deep_interest_input_dim(self, interest_dim: int) -> int:
        return self.embedder.side_dim + 3 * self.embedder.sequence_dim + interest_dim

    def deep_interest_input(self, features, interest: torch.Tensor) -> torch.Tensor:
        """The DNN input of DIN and DIEN: user, candidate, pooled behaviours, candidate ⊙ pooled
        behaviours, the attention/evolution interest, other fields. (The DIEN authors' DIN and DIEN
        concatenate user, candidate, the behaviours' sum and the interest; the candidate ⊙ pooled term is
        their PNN baseline's, kept here: it gives the DNN the candidate-history product directly.)"""
        pooled = features.history_pooled()
        return torch.cat(
            [
                features.user,
                features.target,
                features.item_extra,
                features.context,
                pooled,
                features.target * pooled,
                interest,
            ],
            dim=-1,
        )

    def reset_parameters(self):
        """Xavier-normal weights and zero biases for linear layers; embedding tables (an attached
        component's included) and float-field vectors by ``embedding_init``; zero padding rows."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                init_embedding_(module.weight, self.embedding_init, self.embedding_init_std, module.padding_idx)
            elif isinstance(module, FieldEmbedding):
                for vector in module.floats.values():
                    nn.init.normal_(vector, mean=0.0, std=self.embedding_init_std)

    # ------------------------------------------------------------------ validation
    @classmethod
    def validate_config(cls, config) -> None:
        """Reject invalid hyperparameters and data loader settings before any data is loaded: every
        setting the config holds is checked against its declaration in :mod:`recbole_iacn.settings`."""
        settings.validate(config)
        settings.check_loader_config(config)

