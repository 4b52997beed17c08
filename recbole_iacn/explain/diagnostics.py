"""Does the capsule network route by content? Diagnostics of a model's routing and of ``E_aux``.

Each figure is computed from the model's own modules; none needs labels except where it says so:

* **moved share**: of the behaviours of users with ``K_u ≥ 2`` (the only ones with a choice), the share
  whose final top interest differs from the one their start logits favour. The start logits are a fixed
  table per (position, interest): a routing decided by them groups behaviours by position, whatever
  they are. A fresh model at the old defaults moved 0 %.
* **behaviour norm** ``‖x̂_i‖``: the scale of what the refinement ``b_ij += u_jᵀ x̂_i`` adds; with
  ``‖u_j‖ < 1`` it can overturn the start logits only where ``‖x̂_i‖`` is comparable to their spread.
* **E_aux neighbour agreement** (needs item categories): the share of items whose nearest other item in
  ``E_aux`` (cosine) has the same category, against the chance that a random other item has it.
* **interest purity** (needs categories): the share of an interest's behaviours that carry its label,
  the majority category of the behaviours routed to it.
"""

from __future__ import annotations

from collections import Counter
from typing import List, Optional, Sequence

import torch

#: Items whose nearest neighbour is looked up (a seeded sample of larger catalogues) and rows compared at once.
NEIGHBOUR_SAMPLE = 2000
NEIGHBOUR_BATCH = 512


def top_interests(weights: torch.Tensor) -> torch.Tensor:
    """``[B, L, K]`` routing weights (0 on unused interests) → each behaviour's top interest ``[B, L]``."""
    return weights.argmax(-1)


def moved(final_weights: torch.Tensor, start_weights: torch.Tensor, behaviour_mask: torch.Tensor,
          interest_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which behaviours the refinement moved: final and start weights ``[B, L, K]``, masks ``[B, L]`` and
    ``[B, K]`` → ``(moved [B, L], counted [B, L])``, both bool; counted: real behaviours of users with
    ``K_u ≥ 2``."""
    counted = behaviour_mask & (interest_mask.sum(-1, keepdim=True) > 1)
    changed = top_interests(final_weights) != top_interests(start_weights)
    return changed & counted, counted


def share(part: torch.Tensor, whole: torch.Tensor) -> Optional[float]:
    """``part.sum() / whole.sum()`` as a float; None when ``whole`` is empty."""
    total = int(whole.sum())
    return float(part.sum()) / total if total else None


@torch.no_grad()
def routing_figures(iacn, interaction) -> dict:
    """The moved share and ``‖x̂‖`` over a batch: ``{"moved_share", "behaviours_with_a_choice",
    "behaviour_norm_mean", "behaviour_norm_std", "per_user": [{"moved_share", "behaviours_with_a_choice"}]}``.
    """
    from recbole_iacn.model.layers import length_mask

    s = iacn.schema
    history, lengths = interaction[s.history_item_field], interaction[s.history_length_field]
    behaviour_mask = length_mask(lengths, history.shape[1])
    formed = iacn.form_interests(interaction)
    routing = iacn.routing
    start = routing.start_weights(history.shape[1], formed.mask)
    was_moved, counted = moved(formed.routing_weights, start, behaviour_mask, formed.mask)
    norms = routing.behaviour_vectors(iacn.aux_item_embedding(history), behaviour_mask).norm(dim=-1)[behaviour_mask]
    return {
        "moved_share": share(was_moved, counted),
        "behaviours_with_a_choice": int(counted.sum()),
        "behaviour_norm_mean": float(norms.mean()) if norms.numel() else None,
        "behaviour_norm_std": float(norms.std()) if norms.numel() > 1 else None,
        "per_user": [{"moved_share": share(m, c), "behaviours_with_a_choice": int(c.sum())}
                     for m, c in zip(was_moved, counted)],
    }


@torch.no_grad()
def neighbour_agreement(weight: torch.Tensor, categories: torch.Tensor, sample: int = NEIGHBOUR_SAMPLE,
                        seed: int = 0) -> dict:
    """How often an item's nearest other item in ``weight`` ``[N, h]`` (cosine; row 0 is padding and
    never counted) shares its category (``categories [N]``, 0 = none): ``{"agreement", "chance", "items"}``.

    Catalogues over ``sample`` items are measured on a seeded sample of that many query items (each
    against the whole catalogue). Chance: the probability that a uniformly drawn other item with a
    category shares the query's, ``Σ_c n_c (n_c − 1) / (N (N − 1))``.
    """
    ids = torch.nonzero(categories > 0).squeeze(1)
    ids = ids[ids > 0]
    n = len(ids)
    if n < 2:
        return {"agreement": None, "chance": None, "items": n}
    vectors = torch.nn.functional.normalize(weight[ids].float(), dim=-1)
    cats = categories[ids].to(vectors.device)
    queries = torch.arange(n, device=vectors.device)
    if n > sample:
        generator = torch.Generator().manual_seed(seed)
        queries = torch.randperm(n, generator=generator)[:sample].to(vectors.device)
    agree = 0
    for start in range(0, len(queries), NEIGHBOUR_BATCH):
        rows = queries[start:start + NEIGHBOUR_BATCH]
        similarity = vectors[rows] @ vectors.t()  # [b, n]
        similarity[torch.arange(len(rows)), rows] = float("-inf")  # not the item itself
        agree += int((cats[similarity.argmax(-1)] == cats[rows]).sum())
    counts = torch.bincount(cats).double()
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    return {"agreement": agree / len(queries), "chance": chance, "items": len(queries)}


def interest_purities(assigned: Sequence[int], categories: Sequence, num_interests: int) -> List[Optional[float]]:
    """Each interest's purity: the share of its behaviours whose category is its majority category
    (None for an interest without behaviours or whose behaviours have no category)."""
    purities = []
    for k in range(num_interests):
        members = [c for a, c in zip(assigned, categories) if a == k and c is not None]
        purities.append(Counter(members).most_common(1)[0][1] / len(members) if members else None)
    return purities
