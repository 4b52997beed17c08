"""IaCN: the Interest-aware Capsule Network, an auxiliary task that attaches to any host model.

The method is described in ``docs/method.md``. The component owns the auxiliary item table ``E_aux``. The host
reads it through :meth:`IaCN.host_view` (gradient scaled by δ), the capsule network through
:meth:`IaCN.capsule_view` (gradient scaled by 1 − δ), so that

    g(E_aux) = (1 − δ)·∂(λ·L_IaCN)/∂E_aux + δ·∂L_main/∂E_aux,

while every other capsule-network parameter receives ∂(λ·L_IaCN) unscaled and the host's own table
``E_orig`` receives ∂L_main only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from recbole_iacn import settings
from recbole_iacn.model.embedding import Embedding, OffsetEmbedding, init_embedding_
from recbole_iacn.model.iacn_fused import (
    fused_attention_softmax,
    fused_routing,
    fused_squash,
    routing_aggregate,
    scaled_normalise,
    squash_parts,
)
from recbole_iacn.model.layers import MLP, length_mask, masked_softmax


# ---------------------------------------------------------------------------- gradient mixing
class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` backward."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    return x if scale == 1.0 else _ScaleGradient.apply(x, scale)


# ---------------------------------------------------------------------------- capsule maths
def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``‖s‖² / (1 + ‖s‖²) · s / ‖s‖``, computed as ``‖s‖ / (1 + ‖s‖²) · s``: no division by ``‖s‖``,
    so zero stays zero with a zero gradient."""
    return squash_parts(s, dim)[0]


def interest_counts(lengths: torch.Tensor, max_interests: int) -> torch.Tensor:
    """``K_u = max(1, min(K_max, ceil(log2 n)))`` for ``n ≥ 1``; 0 for an empty history."""
    n = lengths.to(torch.float64).clamp(min=1.0)
    k = torch.ceil(torch.log2(n)).clamp(min=1, max=max_interests).to(torch.long)
    return torch.where(lengths > 0, k, torch.zeros_like(k))


class BehaviourToInterestRouting(nn.Module):
    """MIND's B2I dynamic routing with a shared bilinear map ``M`` and fixed random start logits.

    ``scale`` ``s`` > 0 feeds the behaviours in as ``s·c_i/‖c_i‖``: the refinement ``u_jᵀ x̂_i`` then has
    the same size at every catalogue size and E_aux scale, and with ``s`` well above the start logits'
    spread (``logit_std``) it is the behaviours' content, not their position, that decides the routing
    (docs/method.md, "Routing by content"). ``scale`` 0 and ``logit_std`` 1 are MIND's form.
    """

    def __init__(
        self, dim: int, max_interests: int, iterations: int, max_length: int, seed: int, stop_gradient: bool = True,
        scale: float = 0.0, logit_std: float = 1.0,
    ):
        super().__init__()
        self.scale = float(scale or 0.0)  # None (a checkpoint written before the setting) reads as 0
        self.bilinear = nn.Linear(dim, dim, bias=False)  # M, shared by all behaviours and interests
        generator = torch.Generator().manual_seed(seed)
        # Not learned: with a shared M, identical start logits would make all capsules identical. Drawn from
        # a generator of its own, so that their scale changes nothing else the seed draws.
        start = torch.randn(max_length, max_interests, generator=generator) * float(logit_std or 1.0)
        self.register_buffer("initial_logits", start)
        self.iterations = iterations
        self.max_interests = max_interests
        # MIND's and ComiRec's reference code refine the logits on stop_gradient(x̂): the gradient
        # then flows through the last iteration's Σ_i a_ij x̂_i only, with the weights a_ij constant
        self.stop_gradient = stop_gradient

    def check_length(self, length: int) -> None:
        if length > self.initial_logits.shape[0]:
            raise ValueError(
                f"behaviour sequences of length {length} exceed the {self.initial_logits.shape[0]} the "
                "routing was built for; rebuild the model for the longer MAX_ITEM_LIST_LENGTH."
            )

    def normalise(self, behaviours: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """``s · c_i / ‖c_i‖`` for each behaviour ``[B, L, h]`` (``c_i`` itself when the scale is 0); ``fused``:
        as one autograd Function (:class:`~recbole_iacn.model.iacn_fused.ScaledNormalise`), same values."""
        if not self.scale:
            return behaviours
        if fused:
            return scaled_normalise(behaviours, self.scale)
        return self.scale * nn.functional.normalize(behaviours, dim=-1)

    def behaviour_vectors(self, behaviours: torch.Tensor, behaviour_mask: torch.Tensor) -> torch.Tensor:
        """``x̂_i = M·normalise(c_i)`` ``[B, L, h]``, zero on padded behaviours: whatever weight they get,
        they add nothing to a capsule."""
        return self.bilinear(self.normalise(behaviours)) * behaviour_mask.unsqueeze(-1)

    def interest_mask(self, num_interests: torch.Tensor) -> torch.Tensor:
        """``K_u [B]`` → ``[B, K]``, True for each user's first ``K_u`` interests."""
        return torch.arange(self.max_interests, device=num_interests.device) < num_interests.unsqueeze(-1)

    def start_weights(self, length: int, interest_mask: torch.Tensor) -> torch.Tensor:
        """The routing before any refinement, ``softmax_j(b⁰_ij)`` over each user's ``K_u`` interests:
        ``[B, L, K]``, the same for every user with the same ``K_u`` (it depends on positions only)."""
        logits = self.initial_logits[:length].unsqueeze(0)  # [1, L, K]
        return torch.softmax(logits.masked_fill(~interest_mask.unsqueeze(1), float("-inf")), dim=-1)

    def forward(self, behaviours, behaviour_mask, num_interests):
        """behaviours ``[B, L, h]``, mask ``[B, L]``, ``K_u [B]`` → capsules ``[B, K, h]``,
        interest mask ``[B, K]`` and the final routing weights ``[B, L, K]``."""
        batch, length, _ = behaviours.shape
        self.check_length(length)
        k = self.max_interests
        x_hat = self.behaviour_vectors(behaviours, behaviour_mask)  # [B, L, h]
        interest_mask = self.interest_mask(num_interests)  # [B, K]
        # unused interests get exactly zero routing weight (exp underflows), hence zero capsules
        unused = torch.zeros(batch, k, 1, dtype=x_hat.dtype, device=x_hat.device).masked_fill(
            ~interest_mask.unsqueeze(-1), torch.finfo(x_hat.dtype).min
        )
        # logits are kept as [B, K, L]: the softmax over interests then runs over a middle dimension,
        # faster on CPU than over a last dimension of size K (benchmarks/kernels.py)
        logits = self.initial_logits[:length].t().unsqueeze(0).expand(batch, k, length)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.stop_gradient):
            refining = x_hat.detach() if self.stop_gradient else x_hat
            refining_t = refining.transpose(1, 2).contiguous()  # bmm on the transposed view is ~3x slower
            for _ in range(self.iterations - 1):
                capsules = squash(torch.bmm(torch.softmax(logits + unused, dim=1), refining))  # [B, K, h]
                logits = logits + torch.bmm(capsules, refining_t)  # b_ij += u_jᵀ x̂_i
        weights = torch.softmax(logits + unused, dim=1)  # over each user's K_u interests
        capsules = squash(torch.bmm(weights, x_hat))  # [B, K, h]
        return capsules, interest_mask, (weights * behaviour_mask.unsqueeze(1)).transpose(1, 2)


def batched_dot(vectors: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``vectors [B, N, h]`` · ``query [B, h]`` → ``[B, N]``. A broadcast product and sum: for these
    small N, on CPU faster forward + backward than ``einsum``/``bmm`` (``benchmarks/kernels.py``; numbers in
    ``benchmarks/results/*/kernels``)."""
    return (vectors * query.unsqueeze(1)).sum(-1)


class LabelAwareAttention(nn.Module):
    """``i_u = I_u · softmax(pow(I_uᵀ c_t, p))`` over the user's valid interests."""

    def __init__(self, power: int):
        super().__init__()
        self.power = power

    def weights(self, interests, interest_mask, target):
        """interests ``[B, K, h]``, mask ``[B, K]``, target ``[B, h]`` → attention weights ``[B, K]``
        (0 on masked interests; each row sums to 1 where the user has any interest)."""
        return masked_softmax(batched_dot(interests, target).pow(self.power), interest_mask)

    def forward(self, interests, interest_mask, target):
        """interests ``[B, K, h]``, mask ``[B, K]``, target ``[B, h]`` → user vector ``i_u [B, h]``."""
        weights = self.weights(interests, interest_mask, target)
        return (weights.unsqueeze(-1) * interests).sum(1)  # [B, h]


class InterestMLP(nn.Module):
    """MIND's H layers: a ReLU MLP from ``capsule ⊕ profile`` back to ``h``, for each interest.

    The first layer is evaluated as ``W_c·capsule + W_p·profile``, the profile term once per user
    instead of once per interest, without building the ``[B, K, h + P]`` concatenation.
    """

    def __init__(self, dim: int, profile_dim: int, hidden_sizes):
        super().__init__()
        sizes = [*hidden_sizes, dim]
        self.capsule_layer = nn.Linear(dim, sizes[0])
        self.profile_layer = nn.Linear(profile_dim, sizes[0], bias=False) if profile_dim else None
        self.first_activation = nn.ReLU()
        self.rest = MLP(sizes[0], sizes[1:], "relu")

    def forward(self, capsules: torch.Tensor, profile: torch.Tensor | None = None) -> torch.Tensor:
        """capsules ``[B, K, h]``, profile ``[B, P]`` (or None) → ``[B, K, h]``."""
        hidden = self.capsule_layer(capsules)
        if profile is not None:
            hidden = hidden + self.profile_layer(profile).unsqueeze(1)
        return self.rest(self.first_activation(hidden))


# ---------------------------------------------------------------------------- the component
class UserInterests(NamedTuple):
    """What the capsule network forms for a batch of users."""

    vectors: torch.Tensor  # I_u [B, K, h]: zero for unused capsules
    mask: torch.Tensor  # [B, K]: True for the user's K_u interests
    routing_weights: torch.Tensor  # a_ij [B, L, K]: behaviour i → interest j (0 on padding and unused)


class IaCN(nn.Module):
    """Capsule network + label-aware attention + sampled-softmax loss over its own item table."""

    def __init__(self, config, schema):
        super().__init__()
        self.validate_config(config)
        self.schema = schema
        self.delta = float(config["iacn_delta"])
        self.weight = float(config["iacn_lambda"])
        self.dim = config["iacn_embedding_size"] or config["embedding_size"]  # null: as wide as every field
        self.num_negatives = config["iacn_num_negatives"]
        self.negative_sampler = config["iacn_negative_sampler"]
        self.max_interests = config["iacn_max_interests"]
        self.select_rows = config["iacn_select_rows"]
        # the loss's parameter-free parts as autograd Functions (iacn_fused.py); None (a checkpoint written
        # before the setting existed) reads as false
        self.fused_loss = bool(config["iacn_fused_loss"])
        # interest j is used iff n > 2^j (j ≥ 1) and n ≥ 1 (j = 0): ceil(log2 n) > j ⟺ n > 2^j, so the
        # interest mask of interest_counts is one comparison (not in the state dict)
        thresholds = [0] + [2 ** min(j, 62) for j in range(1, self.max_interests)]
        self.register_buffer("interest_thresholds", torch.tensor(thresholds), persistent=False)
        self.aux_item_embedding = Embedding(schema.num_items, self.dim, padding_idx=0)  # E_aux
        self.routing = BehaviourToInterestRouting(
            self.dim,
            self.max_interests,
            config["iacn_routing_iterations"],
            max(schema.history_length, 1),
            config["seed"],
            config["iacn_routing_stop_gradient"],
            config["iacn_routing_scale"],
            config["iacn_routing_logit_std"],
        )
        self.profile_fields = schema.profile_fields()
        self.profile_embedding = (
            OffsetEmbedding([schema.num(f) for f in self.profile_fields], config["iacn_profile_embedding_size"])
            if self.profile_fields
            else None
        )
        profile_dim = config["iacn_profile_embedding_size"] * len(self.profile_fields)
        self.interest_mlp = InterestMLP(self.dim, profile_dim, config["iacn_mlp_hidden_size"])
        self.attention = LabelAwareAttention(config["iacn_attention_power"])
        # the host's reset_parameters re-initialises E_aux alike with its other tables
        init_embedding_(self.aux_item_embedding.weight, config["embedding_init"], config["embedding_init_std"], 0)

    @property
    def output_dim(self) -> int:
        return self.dim

    # ------------------------------------------------------------------ validation
    @staticmethod
    def validate_config(config) -> None:
        """Check the ``iacn_*`` settings against their declarations (:mod:`recbole_iacn.settings`)."""
        settings.validate(config, ("IaCN",))

    # ------------------------------------------------------------------ views of E_aux
    def host_view(self, ids: torch.Tensor) -> torch.Tensor:
        """``E_aux[ids]`` as the host sees it: its gradient reaches E_aux scaled by δ."""
        return scale_gradient(self.aux_item_embedding(ids), self.delta)

    def capsule_view(self, ids: torch.Tensor) -> torch.Tensor:
        """``E_aux[ids]`` as the capsule network sees it: gradient scaled by 1 − δ."""
        return scale_gradient(self.aux_item_embedding(ids), 1.0 - self.delta)

    # ------------------------------------------------------------------ interests
    def interests(self, interaction, behaviours=None):
        """Interest matrix ``I_u [B, K, h]`` and its mask ``[B, K]`` (False for unused capsules).

        ``behaviours`` (``[B, L, h]``) may pass ``capsule_view`` of the history when the caller has
        looked it up already.
        """
        formed = self.form_interests(interaction, behaviours)
        return formed.vectors, formed.mask

    def form_interests(self, interaction, behaviours=None) -> UserInterests:
        """:meth:`interests` with the final routing weights ``[B, L, K]`` that formed them."""
        history = interaction[self.schema.history_item_field]  # [B, L]
        lengths = interaction[self.schema.history_length_field]  # [B]
        mask = length_mask(lengths, history.shape[1])
        counts = interest_counts(lengths, self.max_interests)
        if behaviours is None:
            behaviours = self.capsule_view(history)
        capsules, interest_mask, routing_weights = self.routing(behaviours, mask, counts)
        profile = None
        if self.profile_fields:
            profile = torch.cat(self.profile_embedding([interaction[f] for f in self.profile_fields]), -1)
        interests = self.interest_mlp(capsules, profile) * interest_mask.unsqueeze(-1)
        return UserInterests(interests, interest_mask, routing_weights)

    def interest_item_scores(self, interests: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``c_tᵀ i_u^k`` for every interest and item: interests ``[B, K, h]``, item ids ``[N]`` →
        ``[B, K, N]`` (0 for unused interests, whose vectors are zero)."""
        return torch.matmul(interests, self.aux_item_embedding(items).t())

    def relationship_score(self, interaction, items=None) -> torch.Tensor:
        """``R_score = max_k c_tᵀ i_u^k`` over the valid interests (``-inf`` for an empty history).

        ``items`` ``[B]`` (default: the interaction's candidate) → ``[B]``.
        """
        items = interaction[self.schema.item_field] if items is None else items
        interests, interest_mask = self.interests(interaction)
        scores = batched_dot(interests, self.aux_item_embedding(items))
        return scores.masked_fill(~interest_mask, float("-inf")).max(-1).values

    # ------------------------------------------------------------------ loss
    def loss(self, interaction, select_rows: bool | None = None) -> torch.Tensor:
        """``L_IaCN``: sampled-softmax negative log-likelihood of the candidate given ``i_u``, over
        samples with label 1 and a non-empty history (0, still in the graph, when there are none).

        ``select_rows`` (default: ``iacn_select_rows``) gathers those rows first, which halves the work;
        else every row is computed and the others are weighted 0, which gives the same value and
        gradients without the two host synchronisations (``any``, ``nonzero``); the measured effect is in
        ``benchmarks/results/2026-11-23/performance-cuda-select-rows``.
        """
        s = self.schema
        label = interaction[s.label_field]
        keep = (label > 0.5) & (interaction[s.history_length_field] > 0)  # label 1, non-empty history
        if select_rows is None:
            select_rows = self.select_rows
        fields = [s.item_field, s.history_item_field, s.history_length_field, *self.profile_fields]
        if select_rows:
            if not bool(keep.any()):
                return self.aux_item_embedding.weight.sum() * 0.0
            rows = _select_rows(interaction, keep, fields)
            losses = self._candidate_losses(rows, keep=None)
            return losses.mean()
        rows = {f: interaction[f] for f in fields}
        weights = keep.to(self.aux_item_embedding.weight.dtype)
        losses = self._candidate_losses(rows, keep=keep)
        return (losses * weights).sum() / weights.sum().clamp(min=1.0)

    def _candidate_losses(self, rows, keep: torch.Tensor | None) -> torch.Tensor:
        """``-log P(c_t | i_u)`` of each row ``[B']``. ``keep`` (when rows were not selected) marks the
        rows that count; in-batch negatives are drawn from those rows only."""
        s = self.schema
        history, targets = rows[s.history_item_field], rows[s.item_field]  # [B', L], [B']
        sampled = self.negative_sampler == "uniform"
        if sampled:
            negatives = torch.randint(1, s.num_items, (len(targets), self.num_negatives), device=targets.device)
        else:
            negatives = history.new_zeros(len(targets), 0)
        # one lookup of E_aux for behaviours, then the candidate and its sampled negatives
        candidate_ids = torch.cat([targets.unsqueeze(-1), negatives], dim=1)  # [B', 1 (+ N)]
        vectors = self.capsule_view(torch.cat([history, candidate_ids], dim=1))  # [B', L + 1 (+ N), h]
        # one split (one gradient concatenation backward) rather than slices
        behaviours, candidates = vectors.split([history.shape[1], candidate_ids.shape[1]], 1)
        excluded = _excluded_candidates(candidate_ids, targets, sampled, keep)
        if self.fused_loss:
            return self._fused_losses(rows, behaviours, candidates, excluded, sampled)
        target_vectors = candidates[:, 0]  # [B', h]
        interests, interest_mask = self.interests(rows, behaviours=behaviours)
        user_vectors = self.attention(interests, interest_mask, target_vectors)  # [B', h]
        if sampled:
            logits = batched_dot(candidates, user_vectors)  # [B', 1 + N], column 0 is the positive
            target_column = targets.new_zeros(len(targets))
        else:
            logits = user_vectors @ target_vectors.t()  # [B', B'], the diagonal is the positive
            target_column = torch.arange(len(targets), device=targets.device)
        logits = logits.masked_fill(excluded, float("-inf"))
        return nn.functional.cross_entropy(logits, target_column, reduction="none")

    def _fused_losses(self, rows, behaviours, candidates, excluded, sampled: bool) -> torch.Tensor:
        """:meth:`_candidate_losses` from the looked-up vectors on, the parameter-free parts as autograd
        Functions with hand-derived backwards (:mod:`recbole_iacn.model.iacn_fused`): routing (with
        stop-gradient: its weights and the aggregation ``y = a ĉ``, then ``squash(M y)`` with the module
        ``M``), and label-aware attention + softmax cross-entropy. M, the interest MLP and the profile
        embeddings stay modules between them. The interests go to the attention unmasked: it gives the
        unused ones weight 0 and gradient 0, which is what multiplying them by the mask does."""
        s = self.schema
        lengths = rows[s.history_length_field]
        behaviour_mask = length_mask(lengths, behaviours.shape[1])
        interest_mask = lengths.unsqueeze(-1) > self.interest_thresholds  # [B', K], as interest_counts
        routing = self.routing
        routing.check_length(behaviours.shape[1])
        if routing.stop_gradient:  # the normalisation s·c/‖c‖ runs inside the Function
            aggregated = routing_aggregate(behaviours, behaviour_mask, interest_mask, routing.initial_logits,
                                           routing.iterations, routing.bilinear.weight, routing.scale)
            # M·Σ_i a_ij ĉ_i = Σ_i a_ij M ĉ_i: the bilinear map is linear without bias
            capsules = fused_squash(routing.bilinear(aggregated))
        else:
            capsules = fused_routing(routing.bilinear(routing.normalise(behaviours, fused=True)), behaviour_mask,
                                     interest_mask, routing.initial_logits, routing.iterations, False)
        profile = None
        if self.profile_fields:
            profile = torch.cat(self.profile_embedding([rows[f] for f in self.profile_fields]), -1)
        interests = self.interest_mlp(capsules, profile)
        return fused_attention_softmax(interests, interest_mask, candidates, excluded, self.attention.power,
                                       not sampled)


def _excluded_candidates(candidate_ids, targets, sampled: bool, keep):
    """The softmax columns that are no negatives ``[B', 1 + N]`` (``[B', B']`` in batch): a sampled
    negative that happens to be the target; in batch, another row with the same item or (with ``keep``)
    a row that does not count."""
    if sampled:
        excluded = candidate_ids == targets.unsqueeze(-1)
        excluded[:, 0] = False  # column 0 is the positive
        return excluded
    excluded = targets.unsqueeze(0) == targets.unsqueeze(1)  # the same item in another row
    if keep is not None:
        excluded = excluded | ~keep.unsqueeze(0)  # rows that do not count are no negatives
    return excluded.fill_diagonal_(False)


def _select_rows(interaction, keep, fields):
    rows = keep.nonzero().squeeze(1)  # one nonzero for all fields
    return {f: interaction[f].index_select(0, rows) for f in fields}


class ConcatItemEmbedding(nn.Module):
    """The host's item lookup with IaCN attached: ``E_orig[i] ⊕ E_aux[i]`` (E_aux read via δ)."""

    def __init__(self, original: nn.Module, iacn: IaCN):
        super().__init__()
        self.original = original
        self.iacn = iacn
        self.output_dim = original.output_dim + iacn.output_dim

    def forward(self, ids):
        return torch.cat([self.original(ids), self.iacn.host_view(ids)], dim=-1)
