"""DIEN: Deep Interest Evolution Network (Zhou et al., AAAI 2019)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from recbole_iacn.errors import ConfigError
from recbole_iacn.model.base import CTRModel
from recbole_iacn.model.layers import MLP, LocalActivationUnit

# DIEN's auxiliary classifier of (state h_t, behaviour e), ``aux_classifier`` (its choices are declared in
# recbole_iacn.settings): the DIEN authors' code scores ``[h_t, e]`` with an MLP (``mlp``); the paper (eq. 2)
# with the inner product ``σ(h_tᵀ e)`` (``inner_product``).


def last_state_gru(gru: nn.GRU, inputs: torch.Tensor, lengths: torch.Tensor, return_outputs: bool = False):
    """Run ``gru`` over the first ``lengths`` steps of ``inputs [B, L, D]`` (packed: padded steps never
    touch the state). Returns the final state ``[B, H]`` (zero for empty rows) and, optionally, all
    outputs ``[B, L, H]`` (zero on padded steps)."""
    batch, steps, _ = inputs.shape
    packed = pack_padded_sequence(inputs, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    outputs, last = gru(packed)
    nonempty = (lengths > 0).unsqueeze(-1).to(inputs.dtype)
    last = last[-1] * nonempty  # [B, H]
    if not return_outputs:
        return last
    outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=steps)
    return last, outputs * nonempty.unsqueeze(1)


class AttentionalGRU(nn.Module):
    """AUGRU / AGRU: a GRU whose update is scaled by an attention weight ``a_t`` per step.

    AUGRU: ``u'_t = a_t·u_t``, ``h_t = (1 − u'_t)·h_{t−1} + u'_t·h̃_t``; AGRU: ``u'_t = a_t``.

    The recurrence is non-linear in ``h_{t−1}``, so the steps stay sequential, but only the recurrent
    product is done per step: the input projections of all steps are one matrix product, and, as in
    a packed GRU, rows are sorted by length so that step ``t`` updates only the rows still running
    (padded steps never touch the state, and cost nothing).
    """

    def __init__(self, input_size: int, hidden_size: int, attentional_update: bool = True):
        super().__init__()
        self.input_projection = nn.Linear(input_size, 3 * hidden_size)
        self.hidden_projection = nn.Linear(hidden_size, 3 * hidden_size)
        self.hidden_size = hidden_size
        self.attentional_update = attentional_update

    def forward(self, inputs: torch.Tensor, attention: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch = inputs.shape[0]
        if batch == 0:
            return inputs.new_zeros(0, self.hidden_size)
        lengths, order = lengths.sort(descending=True)
        steps = int(lengths[0])
        projected = self.input_projection(inputs[order, :steps])  # [B, T, 3H], longest rows first
        attention = attention[order, :steps].unsqueeze(-1)  # [B, T, 1]
        running = (lengths.unsqueeze(0) > torch.arange(steps, device=lengths.device).unsqueeze(1)).sum(1).tolist()
        h = inputs.new_zeros(batch, self.hidden_size)
        for t, active in enumerate(running):  # rows [0, active) are still inside their sequence
            h_active = h[:active]
            x_r, x_u, x_n = projected[:active, t].chunk(3, dim=-1)
            h_r, h_u, h_n = self.hidden_projection(h_active).chunk(3, dim=-1)
            reset = torch.sigmoid(x_r + h_r)
            candidate = torch.tanh(x_n + reset * h_n)
            a = attention[:active, t]
            update = a * torch.sigmoid(x_u + h_u) if self.attentional_update else a
            h_active = h_active + update * (candidate - h_active)
            h = torch.cat([h_active, h[active:]], dim=0) if active < batch else h_active
        return h[order.argsort()]


class DIEN(CTRModel):
    """Interest extractor GRU with the auxiliary next-behaviour loss, attention of the candidate over
    the extracted interests, and an interest-evolving layer (AUGRU by default; AGRU, AIGRU or GRU).

    Where each choice comes from (paper: Zhou et al., AAAI 2019; code: the authors' TensorFlow
    ``Model_DIN_V2_Gru_Vec_attGru_Neg``, on which the IaCN paper builds):

    * GRU state size 36 = item ⊕ category size: code (``HIDDEN_SIZE``);
    * auxiliary loss: the code's MLP 100-50 (sigmoid) over ``[h_t, e]`` (``aux_classifier: mlp``), or
      the paper's inner product ``σ(h_tᵀ e)`` (``aux_classifier: inner_product``); its negatives are
      drawn uniformly per batch here, once per sample in the code's data preparation;
    * attention: the code's ``din_fcn_attention`` (candidate projected to the state size where the
      sizes differ, 80-40 sigmoid MLP, softmax over the valid steps); the code always projects, through
      a PReLU;
    * AUGRU, AGRU, AIGRU: paper (equations 5-9); the code's ``VecAttGRUCell`` is AUGRU;
    * DNN 200-80 Dice over user, candidate, pooled behaviours and the final state: code, plus the
      candidate ⊙ pooled term (:meth:`CTRModel.deep_interest_input`).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedder.sequence_dim
        # default: the host's own item ⊕ category size, so that an attached component (IaCN) widens
        # only the item-id part of the inputs, not the GRU states (DIEN's code: HIDDEN_SIZE = 2·18)
        hidden = config["gru_hidden_size"] or self.embedder.host_sequence_dim
        self.gru_type = str(config["gru_type"]).upper()
        self.aux_loss_weight = config["aux_loss_weight"]
        self.interest_extractor = nn.GRU(d, hidden, batch_first=True)
        self.aux_classifier = str(config["aux_classifier"] or "mlp").lower()
        if self.aux_classifier == "inner_product" and hidden != d:
            raise ConfigError(
                f"aux_classifier: inner_product needs the GRU state as wide as a behaviour vector ({d}), but "
                f"gru_hidden_size is {hidden}. Set gru_hidden_size={d}, or use aux_classifier: mlp."
            )
        self.aux_net = MLP(hidden + d, config["aux_mlp_sizes"], "sigmoid") if self.aux_classifier == "mlp" else None
        self.aux_output = nn.Linear(self.aux_net.out_dim, 1) if self.aux_net is not None else None
        self.attention = LocalActivationUnit(
            d, hidden, config["attention_mlp_sizes"], config["attention_activation"], softmax=True
        )
        if self.gru_type in ("AUGRU", "AGRU"):
            self.interest_evolution = AttentionalGRU(hidden, hidden, attentional_update=self.gru_type == "AUGRU")
        else:
            self.interest_evolution = nn.GRU(hidden, hidden, batch_first=True)
        self.dnn = MLP(
            self.deep_interest_input_dim(hidden),
            config["mlp_hidden_size"],
            config["dnn_activation"],
            config["dropout_prob"],
            config["dnn_batch_norm"],
        )
        self.output_layer = nn.Linear(self.dnn.out_dim, 1)
        categories = torch.tensor(self.schema.item_categories or [0] * self.schema.num_items, dtype=torch.long)
        self.register_buffer("item_categories", categories, persistent=False)
        self.bce = nn.BCEWithLogitsLoss(reduction="none")
        self.reset_parameters()

    # ------------------------------------------------------------------ layers
    def _evolve(self, states, attention, lengths):
        if self.gru_type in ("AUGRU", "AGRU"):
            return self.interest_evolution(states, attention, lengths)
        if self.gru_type == "AIGRU":
            states = states * attention.unsqueeze(-1)
        return last_state_gru(self.interest_evolution, states, lengths)

    def _sample_negative_behaviours(self, history_items):
        """Uniform random items (not [PAD], not the clicked one) per behaviour step, with categories."""
        num_items = self.schema.num_items
        negatives = torch.randint(1, num_items, history_items.shape, device=history_items.device)
        clash = negatives == history_items
        negatives = torch.where(clash, negatives % (num_items - 1) + 1, negatives)  # a different item
        return negatives, self.item_categories[negatives]

    def auxiliary_loss(self, states, features, interaction):
        """DIEN's auxiliary loss: state ``h_t`` must tell the next clicked behaviour ``e_{t+1}`` from a
        sampled one; averaged over the valid steps ``t < n − 1``."""
        mask = features.history_mask[:, 1:]  # [B, L-1]
        if not bool(mask.any()):
            return states.sum() * 0.0
        history_items = interaction[self.schema.history_item_field]
        negatives, negative_categories = self._sample_negative_behaviours(history_items[:, 1:])
        has_categories = self.embedder.category_embedding is not None
        negative_vectors = self.embedder.embed_items(negatives, negative_categories if has_categories else None)
        current = states[:, :-1]  # [B, L-1, H]
        click = self.aux_logits(current, features.history[:, 1:])  # [B, L-1]
        noclick = self.aux_logits(current, negative_vectors)
        losses = self.bce(click, torch.ones_like(click)) + self.bce(noclick, torch.zeros_like(noclick))
        return (losses * mask).sum() / mask.sum()

    def aux_logits(self, states: torch.Tensor, behaviours: torch.Tensor) -> torch.Tensor:
        """Logit that state ``h_t [B, T, H]`` is followed by behaviour ``e [B, T, D]`` → ``[B, T]``."""
        if self.aux_net is None:  # the paper's σ(h_tᵀ e)
            return (states * behaviours).sum(-1)
        return self.aux_output(self.aux_net(torch.cat([states, behaviours], -1))).squeeze(-1)

    def _forward(self, interaction, with_aux: bool):
        features = self.embedder(interaction)
        lengths = interaction[self.schema.history_length_field]  # [B]
        _, states = last_state_gru(self.interest_extractor, features.history, lengths, return_outputs=True)
        attention = self.attention.scores(features.target, states, features.history_mask)  # [B, L]
        interest = self._evolve(states, attention, lengths)  # [B, H]
        logits = self.output_layer(self.dnn(self.deep_interest_input(features, interest))).squeeze(-1)
        aux = self.auxiliary_loss(states, features, interaction) if with_aux else None
        return logits, aux

    def forward(self, interaction):
        return self._forward(interaction, with_aux=False)[0]

    @property
    def loss_names(self):
        return ("main", "dien_aux") if self.aux_loss_weight > 0 else ("main",)

    def calculate_loss(self, interaction):
        logits, aux = self._forward(interaction, with_aux=self.aux_loss_weight > 0)
        main = self.loss_fct(logits, interaction[self.label_field])
        if aux is None:
            return main
        return main, self.aux_loss_weight * aux
