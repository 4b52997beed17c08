"""What each user's interest capsules mean, and the capsule network as a candidate generator.

Every number comes from the model's own modules (:meth:`IaCN.form_interests`, the label-aware
attention, ``E_aux``, the host's ``predict``); nothing here re-implements the model:

* routing weights ``a_ik`` ``[L, K]``: how much behaviour ``i`` went into interest ``k``;
* behaviour scores ``c_iᵀ i_u^k``: each behaviour's relationship score against each interest;
* ``R_score(c_t) = max_k c_tᵀ i_u^k`` over the user's ``K_u`` interests, ``c_t = E_aux[t]``;
* for a candidate, the label-aware attention weights over the interests and the host's predicted
  click probability.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from recbole_iacn.errors import CheckpointError, ConfigError, UnknownIdError
from recbole_iacn.explain.diagnostics import interest_purities, neighbour_agreement, routing_figures
from recbole_iacn.explain.histories import UserHistory

#: Catalogue items scored at once (rows of ``E_aux``) and users ranked at once.
ITEM_BATCH = 4096
USER_BATCH = 256
PAD = "[PAD]"


@dataclass
class Encoded:
    """A batch of users as the model reads them."""

    interaction: object  # RecBole Interaction of ids
    histories: List[UserHistory]  # the behaviours actually used (the most recent L), per user
    dropped: List[int]  # older behaviours beyond the model's length L, per user
    known_users: List[bool]


class InterestExplainer:
    """Explains the interests of a trained ``X_IaCN`` model restored by ``load_model``."""

    def __init__(self, loaded):
        from recbole_iacn.model.iacn import IaCN

        self.loaded = loaded
        self.model = loaded.model
        self.iacn = getattr(self.model, "iacn", None)
        if not isinstance(self.iacn, IaCN):
            raise CheckpointError(
                f"The checkpoint holds {loaded.config['model']!r}, which has no IaCN component: only X_IaCN "
                "models (DIN_IaCN, DIEN_IaCN, WideDeep_IaCN, DAIN_IaCN) form interests to explain."
            )
        s = self.schema = loaded.schema
        self.item_tokens: List[str] = list(s.vocab[s.item_field])
        self.item_index = {t: i for i, t in enumerate(self.item_tokens)}
        self.user_index = {t: i for i, t in enumerate(s.vocab.get(s.user_field, []))}
        categories = s.vocab.get(s.item_category_field) if s.item_category_field else None
        self.category_tokens: Optional[List[str]] = list(categories) if categories and s.item_categories else None
        self.item_categories = torch.tensor(s.item_categories, dtype=torch.long) if self.category_tokens else None
        self.device = next(self.model.parameters()).device

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu") -> "InterestExplainer":
        from recbole_iacn.quick_start import load_model

        return cls(load_model(path, device=device))

    # ------------------------------------------------------------------ vocabulary
    @property
    def history_length(self) -> int:
        """L: the most recent behaviours the model reads."""
        return self.schema.history_length

    def category(self, item_id: int) -> Optional[str]:
        if self.category_tokens is None:
            return None
        return self.category_tokens[int(self.item_categories[item_id])]

    def item_id(self, token: str, what: str = "item") -> int:
        item = self.item_index.get(str(token), 0)
        if item == 0:
            examples = ", ".join(self.item_tokens[1:6])
            raise UnknownIdError(
                f"Unknown {what} {token!r}: the checkpoint's catalogue of {len(self.item_tokens) - 1} items "
                f"does not hold it. Give a raw item id as in the dataset's files (e.g. {examples})."
            )
        return item

    def profile_fields(self) -> List[str]:
        """User-side token fields the model reads (the user id excluded)."""
        return [f for f in self.schema.feature_fields("user") if f != self.schema.user_field]

    # ------------------------------------------------------------------ encoding
    def encode(self, histories: Sequence[UserHistory], candidate: Optional[str] = None) -> Encoded:
        """Histories (+ an optional candidate item for every user) → the model's input.

        Unknown behaviour items are an error; the history is cut to the most recent L behaviours,
        as in training. Fields the source does not give (profile, item or context features) are
        [PAD], as for any id the model has not seen.
        """
        s = self.schema
        candidate_id = self.item_id(candidate, "candidate item") if candidate is not None else None
        records, used, dropped, known = [], [], [], []
        for h in histories:
            ids = [self.item_id(t, f"item in the history of user {h.user}") for t in h.items]
            kept = h.items[-self.history_length:] if self.history_length else []
            dropped.append(len(ids) - len(kept))
            used.append(UserHistory(h.user, list(kept), dict(h.profile), h.source))
            known.append(str(h.user) in self.user_index)
            record = {name: PAD for name in self.loaded.required_fields()}
            record.update(h.profile)
            record[s.user_field] = str(h.user)
            record[s.item_field] = candidate if candidate is not None else PAD
            record[s.history_item_field] = list(kept)
            if s.history_category_field:
                record[s.history_category_field] = [self.category(self.item_index[t]) or PAD for t in kept]
            if s.item_category_field and s.item_category_field in record:
                del record[s.item_category_field]  # looked up from the candidate by encode
            records.append(record)
        interaction = self.loaded.encode(records).to(self.device)
        if candidate_id is None:
            interaction[s.item_field].zero_()
        return Encoded(interaction, used, dropped, known)

    # ------------------------------------------------------------------ scores
    @torch.no_grad()
    def catalogue_scores(self, interaction, item_batch: int = ITEM_BATCH) -> torch.Tensor:
        """``R_score`` of every catalogue item for every row: ``[B, N]`` (``N`` = items incl. [PAD],
        whose column is ``-inf``), computed ``item_batch`` items at a time."""
        formed = self.iacn.form_interests(interaction)
        return self._max_over_interests(formed, item_batch)

    def _max_over_interests(self, formed, item_batch: int) -> torch.Tensor:
        n_items = self.schema.num_items
        scores = torch.empty(formed.vectors.shape[0], n_items, device=formed.vectors.device)
        invalid = ~formed.mask.unsqueeze(-1)  # [B, K, 1]
        for start in range(0, n_items, item_batch):
            items = torch.arange(start, min(start + item_batch, n_items), device=formed.vectors.device)
            per_interest = self.iacn.interest_item_scores(formed.vectors, items)  # [B, K, n]
            scores[:, start:start + len(items)] = per_interest.masked_fill(invalid, float("-inf")).max(1).values
        scores[:, 0] = float("-inf")
        return scores

    # ------------------------------------------------------------------ explanation
    @torch.no_grad()
    def explain(self, histories: Sequence[UserHistory], candidate: Optional[str] = None, top: int = 10) -> List[dict]:
        """One JSON-ready record per user (see ``explain/README`` in the package docs)."""
        if top < 1:
            raise ConfigError(f"top must be a positive integer, got {top!r}.")
        encoded = self.encode(histories, candidate)
        x = encoded.interaction
        formed = self.iacn.form_interests(x)
        routing = routing_figures(self.iacn, x)
        emb = self.iacn.aux_item_embedding
        history = x[self.schema.history_item_field]  # [B, L]
        behaviour_scores = torch.matmul(emb(history), formed.vectors.transpose(1, 2))  # [B, L, K]: c_iᵀ i_u^k
        all_items = torch.arange(self.schema.num_items, device=self.device)
        item_scores = self.iacn.interest_item_scores(formed.vectors, all_items)  # [B, K, N]
        item_scores[..., 0] = float("-inf")
        centroids = self._category_centroids()
        category_scores = None
        if centroids is not None:  # [B, K, C]; [PAD] and categories without items are never "nearest"
            category_scores = torch.matmul(formed.vectors, centroids.t())
            category_scores[..., ~self._categories_with_items()] = float("-inf")
        if candidate is not None:
            target = emb(x[self.schema.item_field])  # [B, h]
            attention = self.iacn.attention.weights(formed.vectors, formed.mask, target)  # [B, K]
            r_score = self.iacn.relationship_score(x)  # [B]
            per_interest = (formed.vectors * target.unsqueeze(1)).sum(-1)  # [B, K]
            probability = self.model.predict(x)  # [B]
        records = []
        for b, h in enumerate(encoded.histories):
            n, k_u = len(h.items), int(formed.mask[b].sum())
            ids = history[b, :n].tolist()
            behaviours = [{"position": i, "item": h.items[i], "category": self.category(ids[i])} for i in range(n)]
            weights = formed.routing_weights[b, :n, :k_u]  # [n, K_u]
            assigned = weights.argmax(-1).tolist() if n else []
            purities = interest_purities(assigned, [b["category"] for b in behaviours], k_u)
            interests = []
            for k in range(k_u):
                members = [i for i in range(n) if assigned[i] == k]
                order = sorted(range(n), key=lambda i: -float(weights[i, k]))
                best = torch.topk(item_scores[b, k], min(top, self.schema.num_items - 1))
                interest = {
                    "interest": k,
                    "label": _majority([behaviours[i]["category"] for i in members]),
                    "purity": None if purities[k] is None else round(purities[k], 6),
                    "behaviours_assigned": members,
                    "routing_weights": [round(float(v), 6) for v in weights[:, k]],
                    "behaviour_scores": [round(float(v), 6) for v in behaviour_scores[b, :n, k]],
                    "top_behaviours": [
                        {**behaviours[i], "routing_weight": round(float(weights[i, k]), 6)} for i in order[:top]
                    ],
                    "top_items": [
                        {"item": self.item_tokens[i], "category": self.category(i), "score": round(float(v), 6)}
                        for v, i in zip(best.values.tolist(), best.indices.tolist())
                    ],
                }
                if category_scores is not None:
                    cat = torch.topk(category_scores[b, k], min(top, category_scores.shape[-1]))
                    interest["top_categories"] = [
                        {"category": self.category_tokens[c], "score": round(float(v), 6)}
                        for v, c in zip(cat.values.tolist(), cat.indices.tolist()) if v > float("-inf")
                    ]
                interests.append(interest)
            record = {
                "user": h.user,
                "known_user": encoded.known_users[b],
                "history_source": h.source,
                "profile": h.profile,
                "num_behaviours": n,
                "behaviours_beyond_length": encoded.dropped[b],
                "num_interests": k_u,
                "routing": {
                    "moved_share": _rounded(routing["per_user"][b]["moved_share"]),
                    "behaviours_with_a_choice": routing["per_user"][b]["behaviours_with_a_choice"],
                },
                "behaviours": behaviours,
                "interests": interests,
            }
            if candidate is not None:
                record["candidate"] = {
                    "item": candidate,
                    "category": self.category(self.item_index[candidate]),
                    "attention_weights": [round(float(v), 6) for v in attention[b, :k_u]],
                    "interest_scores": [round(float(v), 6) for v in per_interest[b, :k_u]],
                    "r_score": _finite(r_score[b]),
                    "best_interest": int(per_interest[b, :k_u].argmax()) if k_u else None,
                    "click_probability": round(float(probability[b]), 6),
                }
            records.append(record)
        return records

    def diagnostics(self, records: Sequence[dict]) -> dict:
        """Whether the routing follows content (:mod:`recbole_iacn.explain.diagnostics`), over the explained
        users and the whole catalogue: the moved share and ``‖x̂‖`` of the users' behaviours, the mean
        interest purity, and ``E_aux``'s nearest-neighbour category agreement against chance."""
        with_choice = sum(r["routing"]["behaviours_with_a_choice"] for r in records)
        moved_count = sum((r["routing"]["moved_share"] or 0.0) * r["routing"]["behaviours_with_a_choice"]
                          for r in records)
        purities = [i["purity"] for r in records for i in r["interests"] if i["purity"] is not None]
        histories = [UserHistory(r["user"], [b["item"] for b in r["behaviours"]], dict(r["profile"]))
                     for r in records]
        norms = routing_figures(self.iacn, self.encode(histories).interaction) if histories else {}
        result = {
            "moved_share": _rounded(moved_count / with_choice) if with_choice else None,
            "behaviours_with_a_choice": with_choice,
            "behaviour_norm_mean": _rounded(norms.get("behaviour_norm_mean")),
            "routing_scale": self.iacn.routing.scale,
            "routing_iterations": self.iacn.routing.iterations,
            "interest_purity_mean": _rounded(sum(purities) / len(purities)) if purities else None,
        }
        if self.item_categories is not None:
            agreement = neighbour_agreement(self.iacn.aux_item_embedding.weight, self.item_categories)
            result["e_aux_neighbour_category_agreement"] = _rounded(agreement["agreement"])
            result["e_aux_neighbour_category_chance"] = _rounded(agreement["chance"])
            result["e_aux_neighbour_items"] = agreement["items"]
        return result

    def _categories_with_items(self) -> torch.Tensor:
        """``[C]`` True for the categories of some catalogue item ([PAD] excluded)."""
        present = torch.zeros(len(self.category_tokens), dtype=torch.bool)
        present[self.item_categories[1:]] = True
        present[0] = False
        return present.to(self.device)

    def _category_centroids(self) -> Optional[torch.Tensor]:
        """Mean ``E_aux`` row of each category's items: ``[C, h]`` (zero for a category without items)."""
        if self.category_tokens is None:
            return None
        weight = self.iacn.aux_item_embedding.weight[1:]
        cats = self.item_categories[1:].to(weight.device)
        sums = torch.zeros(len(self.category_tokens), weight.shape[1], device=weight.device).index_add_(0, cats, weight)
        counts = torch.bincount(cats, minlength=len(self.category_tokens)).clamp(min=1).unsqueeze(-1)
        return sums / counts

    # ------------------------------------------------------------------ retrieval
    @torch.no_grad()
    def retrieve(self, histories: Sequence[UserHistory], top: int = 50, exclude_history: bool = True,
                 user_batch: int = USER_BATCH, item_batch: int = ITEM_BATCH) -> List[dict]:
        """Rank the whole catalogue for each user by ``max_k R_score`` (MIND-style candidate
        generation): the ``top`` items, the user's own behaviours left out unless ``exclude_history``
        is False. Ties keep the lower item id first."""
        if top < 1:
            raise ConfigError(f"top must be a positive integer, got {top!r}.")
        records = []
        for start in range(0, len(histories), user_batch):
            chunk = list(histories[start:start + user_batch])
            encoded = self.encode(chunk)
            formed = self.iacn.form_interests(encoded.interaction)
            scores = self._max_over_interests(formed, item_batch)
            if exclude_history:
                for b, h in enumerate(chunk):
                    seen = torch.tensor([self.item_index[t] for t in h.items], dtype=torch.long, device=scores.device)
                    scores[b, seen] = float("-inf")
            ranked = rank_items(scores, min(top, self.schema.num_items - 1))
            for b, h in enumerate(encoded.histories):
                items = ranked[b].tolist()
                vectors = formed.vectors[b:b + 1]
                per_interest = self.iacn.interest_item_scores(vectors, ranked[b])[0]  # [K, top]
                per_interest = per_interest.masked_fill(~formed.mask[b].unsqueeze(-1), float("-inf"))
                best_interest = per_interest.argmax(0).tolist()
                records.append({
                    "user": h.user,
                    "history_source": h.source,
                    "num_interests": int(formed.mask[b].sum()),
                    "items": [
                        {"rank": r + 1, "item": self.item_tokens[i], "category": self.category(i),
                         "score": round(float(scores[b, i]), 6), "interest": best_interest[r]}
                        for r, i in enumerate(items) if scores[b, i] > float("-inf")
                    ],
                })
        return records


def rank_items(scores: torch.Tensor, top: int) -> torch.Tensor:
    """The ``top`` columns of each row by descending score, ties broken by the lower column: ``[B, top]``.

    A stable sort on the negated scores, so that the order is the one a full sort gives.
    """
    order = torch.sort(-scores, dim=-1, stable=True).indices
    return order[:, :top]


def _rounded(value) -> Optional[float]:
    return None if value is None else round(float(value), 6)


def _finite(value) -> Optional[float]:
    """A float for JSON; None for ±inf (a user without interests has no R_score)."""
    value = float(value)
    return round(value, 6) if abs(value) != float("inf") else None


def _majority(values) -> Optional[str]:
    """The most frequent value (first seen wins a tie); None when empty."""
    counts = Counter(v for v in values if v is not None)
    return max(counts, key=counts.get) if counts else None


# ---------------------------------------------------------------------------- interest recovery
def interest_purity(assignments: Sequence[Sequence[int]], categories: Sequence[Sequence]) -> tuple[float, set]:
    """Purity of one user's interests and the set of their labels.

    ``assignments[i]`` is the interest behaviour ``i`` is assigned to, ``categories[i]`` its category.
    Each interest is labelled by the majority category of its behaviours; purity is the share of
    behaviours whose category is their interest's label (clustering purity).
    """
    groups: Dict[int, list] = {}
    for k, c in zip(assignments, categories):
        groups.setdefault(int(k), []).append(c)
    agree, labels = 0, set()
    for members in groups.values():
        label, count = Counter(members).most_common(1)[0]
        agree += count
        labels.add(label)
    return (agree / len(assignments) if assignments else float("nan")), labels


def recovery(weights: torch.Tensor, lengths: torch.Tensor, num_interests: torch.Tensor, categories: torch.Tensor,
             planted: Sequence[Sequence]) -> dict:
    """Mean purity and coverage of interests formed by ``weights`` ``[B, L, K]`` (each behaviour is
    assigned to its highest-weight interest among the user's first ``num_interests[b]``).

    ``categories`` ``[B, L]`` are the behaviours' categories and ``planted[b]`` the user's planted
    categories. Coverage: the share of the planted categories present in the behaviours the model read
    that label some interest.
    """
    purities, coverages = [], []
    for b in range(weights.shape[0]):
        n, k = int(lengths[b]), int(num_interests[b])
        if n == 0 or k == 0:
            continue
        assigned = weights[b, :n, :k].argmax(-1).tolist()
        cats = categories[b, :n].tolist()
        purity, labels = interest_purity(assigned, cats)
        present = set(cats) & set(planted[b])
        purities.append(purity)
        if present:
            coverages.append(len(labels & present) / len(present))
    mean = lambda v: float(sum(v) / len(v)) if v else float("nan")  # noqa: E731
    return {"purity": mean(purities), "coverage": mean(coverages), "users": len(purities)}
