"""Feature embedding shared by every host model.

The item-id lookup is a separate module, :class:`ItemEmbedding`, handed to :class:`FeatureEmbedder`
by the host's ``build_item_embedding`` hook. It is the one narrow interface an auxiliary component
such as IaCN attaches to: it may return a wider vector (``E_orig ⊕ E_aux``) and the host's layers size
themselves from ``output_dim``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from recbole_iacn.model.layers import length_mask
from recbole_iacn.model.schema import FLOAT, FLOAT_SEQ, TOKEN, TOKEN_SEQ, FeatureSchema


class _IndexAddLookup(torch.autograd.Function):
    """Rows ``weight[ids]``; backward is one ``index_add_`` into a zero table, ``padding_idx`` row zeroed."""

    @staticmethod
    def forward(ctx, weight, ids, padding_idx):
        flat = ids.reshape(-1)
        ctx.save_for_backward(flat)
        ctx.table_shape = weight.shape
        ctx.padding_idx = padding_idx
        return weight.index_select(0, flat).view(*ids.shape, weight.shape[1])

    @staticmethod
    def backward(ctx, grad):
        (flat,) = ctx.saved_tensors
        # a contiguous source: index_add_ is slower on the strided views that cat/split backward pass
        rows = grad.reshape(-1, ctx.table_shape[1]).contiguous()
        grad_weight = grad.new_zeros(ctx.table_shape).index_add_(0, flat, rows)
        if ctx.padding_idx is not None:
            grad_weight[ctx.padding_idx] = 0
        return grad_weight, None, None


class Embedding(nn.Embedding):
    """``nn.Embedding`` (same parameters, state dict and gradient) with a faster CPU backward.

    On CPU, ``embedding_dense_backward`` sorts the ids and is slower than a plain ``index_add_`` of the
    output gradient into a zero table (measured by ``benchmarks/kernels.py``; the numbers are in
    ``benchmarks/results/*/kernels``): every model here does several lookups per step, so the CPU path
    uses the latter. Elsewhere ``F.embedding`` stays (on CUDA ``index_add_`` accumulates with
    atomics, whose order varies from run to run).
    """

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.weight.device.type != "cpu" or self.max_norm is not None or self.sparse or self.scale_grad_by_freq:
            return super().forward(ids)
        return _IndexAddLookup.apply(self.weight, ids, self.padding_idx)


#: ``embedding_init`` values: every id table drawn from N(0, embedding_init_std²), or Xavier-normal per
#: table (RecBole's ``xavier_normal_initialization``; its scale then depends on each table's row count).
from recbole_iacn.settings import EMBEDDING_INITS  # noqa: E402


def init_embedding_(weight: torch.Tensor, method: str, std: float, padding_idx: Optional[int] = None) -> None:
    """Initialise an embedding table in place; the padding row, if any, is zeroed.

    ``normal`` gives every table the same scale whatever its size. Xavier-normal per table gives a
    20-row category table a std of sqrt(2 / 38) = 0.23 beside 0.034 for the 1,683-row ml-100k item
    table; RecBole's DIN holds items and categories in one table, at one scale. Configured like
    RecBole's DIN, ours trains to a lower AUC for that reason alone (``benchmarks/din_vs_recbole.py``).
    """
    if method == "normal":
        nn.init.normal_(weight, mean=0.0, std=std)
    elif method == "xavier_normal":
        nn.init.xavier_normal_(weight)
    else:
        raise ValueError(f"unknown embedding_init {method!r}; use one of {', '.join(EMBEDDING_INITS)}")
    if padding_idx is not None:
        with torch.no_grad():
            weight[padding_idx].zero_()


class ItemEmbedding(nn.Module):
    """The host's own item-id embedding table ``E_orig``: ids ``[...]`` → vectors ``[..., dim]``."""

    def __init__(self, num_items: int, dim: int):
        super().__init__()
        self.table = Embedding(num_items, dim, padding_idx=0)
        self.output_dim = dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)


@dataclass
class CTRFeatures:
    """Embedded features of a batch (B samples, L behaviour steps, D = item ⊕ category size)."""

    target: torch.Tensor  # [B, D]      candidate item ⊕ its category
    history: Optional[torch.Tensor]  # [B, L, D]  behaviours, oldest first
    history_mask: Optional[torch.Tensor]  # [B, L] True on real behaviours
    user: torch.Tensor  # [B, Du]     user id and profile fields
    item_extra: torch.Tensor  # [B, Di] other item fields
    context: torch.Tensor  # [B, Dc]    other interaction fields

    history_pooling: str = "mean"  # how history_pooled() pools: "mean" or "sum" over real behaviours

    def history_mean(self) -> torch.Tensor:
        """The mean of the real behaviours ``[B, D]`` (zero for an empty history), whatever
        ``history_pooling`` says."""
        from recbole_iacn.model.layers import masked_mean

        return masked_mean(self.history, self.history_mask)

    def history_pooled(self) -> torch.Tensor:
        """The behaviours pooled over the real steps ``[B, D]``, as ``history_pooling`` says: their sum (the
        DIEN authors' code, ``item_his_eb_sum``; the package default, ``properties/overall.yaml``) or their
        mean (this dataclass's own default, when no configuration gives one); zero for an empty history."""
        from recbole_iacn.model.layers import masked_mean

        if self.history_pooling == "sum":
            return (self.history * self.history_mask.unsqueeze(-1).to(self.history.dtype)).sum(1)
        return masked_mean(self.history, self.history_mask)


class OffsetEmbedding(nn.Module):
    """Several id fields in one table (each field's ids shifted by an offset), looked up at once.

    One lookup, and one embedding backward, for all fields instead of one per field (as RecBole's
    context-aware models do with ``token_embedding_table``). ``forward`` takes one id tensor per field,
    of any shapes ``[B, ...]``, and returns the vectors ``[B, ..., dim]`` of each.
    """

    def __init__(self, vocab_sizes, dim: int):
        super().__init__()
        offsets = [0]
        for size in vocab_sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.offsets = offsets
        self.table = Embedding(max(sum(vocab_sizes), 1), dim)

    def forward(self, columns):
        batch = columns[0].shape[0]
        flat = [(ids + offset).reshape(batch, -1) for ids, offset in zip(columns, self.offsets)]
        vectors = self.table(torch.cat(flat, dim=1))  # [B, total, dim]
        parts = vectors.split([f.shape[1] for f in flat], dim=1)
        return [part.reshape(*ids.shape, -1) for part, ids in zip(parts, columns)]


class FieldEmbedding(nn.Module):
    """Embeds the token, token-sequence (mean-pooled) and float fields of one group, concatenated."""

    def __init__(self, schema: FeatureSchema, names, dim: int):
        super().__init__()
        self.token_names = [n for n in names if schema.fields[n].type == TOKEN]
        self.sequence_names = [n for n in names if schema.fields[n].type == TOKEN_SEQ]
        self.float_names = [n for n in names if schema.fields[n].type in (FLOAT, FLOAT_SEQ)]
        self.types = {n: schema.fields[n].type for n in names}
        sizes = [schema.num(n) for n in self.token_names + self.sequence_names]
        self.tokens = OffsetEmbedding(sizes, dim) if sizes else None
        # one learned vector per float field, scaled by the value; CTRModel.reset_parameters draws it
        # with the id tables (zero until then: a host that never resets still starts from defined values)
        self.floats = nn.ParameterDict({n: nn.Parameter(torch.zeros(dim)) for n in self.float_names})
        self.output_dim = dim * (len(sizes) + len(self.float_names))

    def forward(self, interaction, batch_size: int, device) -> torch.Tensor:
        parts = []
        if self.tokens is not None:
            names = self.token_names + self.sequence_names
            vectors = self.tokens([interaction[n] for n in names])
            for name, vector in zip(names, vectors):
                if self.types[name] == TOKEN:
                    parts.append(vector)  # [B, d]
                else:  # mean over the non-[PAD] tokens
                    mask = (interaction[name] > 0).unsqueeze(-1).to(vector.dtype)
                    parts.append((vector * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        for name in self.float_names:
            value = interaction[name].float()
            if self.types[name] == FLOAT_SEQ:  # mean of the values
                value = value.mean(-1)
            parts.append(value.unsqueeze(-1) * self.floats[name])
        if not parts:
            return torch.zeros(batch_size, 0, device=device)
        return torch.cat(parts, dim=-1)


class FeatureEmbedder(nn.Module):
    """Turns an interaction batch into :class:`CTRFeatures`."""

    def __init__(self, schema: FeatureSchema, dim: int, item_embedding: nn.Module, user_features: bool = True,
                 history_pooling: str = "mean"):
        super().__init__()
        self.schema = schema
        self.item_embedding = item_embedding
        self.history_pooling = history_pooling
        # categories are used when both the candidate's and the behaviours' are present
        self.category_embedding = (
            Embedding(schema.num(schema.item_category_field), dim, padding_idx=0)
            if schema.item_category_field and schema.history_category_field
            else None
        )
        # user_features=False: the host reads no user id or profile field (RecBole's DIN reads none either)
        self.user_fields = FieldEmbedding(schema, schema.feature_fields("user") if user_features else [], dim)
        self.item_fields = FieldEmbedding(schema, schema.feature_fields("item"), dim)
        self.context_fields = FieldEmbedding(schema, schema.feature_fields("inter"), dim)
        category_dim = dim if self.category_embedding is not None else 0
        self.sequence_dim = item_embedding.output_dim + category_dim
        # the host's own item ⊕ category size, without what an attached component adds to the item
        self.host_sequence_dim = dim + category_dim

    def embed_items(self, items: torch.Tensor, categories: Optional[torch.Tensor]) -> torch.Tensor:
        """Item ⊕ category vectors for ids of any shape ``[...]`` → ``[..., D]``."""
        vectors = self.item_embedding(items)
        if self.category_embedding is None:
            return vectors
        return torch.cat([vectors, self.category_embedding(categories)], dim=-1)

    def forward(self, interaction, with_history: bool = True) -> CTRFeatures:
        s = self.schema
        items = interaction[s.item_field]  # [B]
        batch_size, device = items.shape[0], items.device
        categories = interaction[s.item_category_field] if self.category_embedding is not None else None
        history = mask = None
        if with_history:
            history_items = interaction[s.history_item_field]  # [B, L]
            mask = length_mask(interaction[s.history_length_field], history_items.shape[1])
            # one lookup for candidate and behaviours together
            all_items = torch.cat([items.unsqueeze(1), history_items], dim=1)  # [B, 1 + L]
            all_categories = None
            if categories is not None:
                all_categories = torch.cat(
                    [categories.unsqueeze(1), interaction[s.history_category_field]], dim=1
                )
            vectors = self.embed_items(all_items, all_categories)  # [B, 1 + L, D]
            target, history = vectors[:, 0], vectors[:, 1:]
        else:
            target = self.embed_items(items, categories)
        return CTRFeatures(
            target=target,
            history=history,
            history_mask=mask,
            user=self.user_fields(interaction, batch_size, device),
            item_extra=self.item_fields(interaction, batch_size, device),
            context=self.context_fields(interaction, batch_size, device),
            history_pooling=self.history_pooling,
        )

    @property
    def side_dim(self) -> int:
        """Size of user ⊕ item extras ⊕ context."""
        return self.user_fields.output_dim + self.item_fields.output_dim + self.context_fields.output_dim
