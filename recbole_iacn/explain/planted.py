"""Do a trained model's interests recover planted ones? Purity and coverage on SYNTHETIC data whose users
were drawn from known categories (:func:`recbole_iacn.data.synthetic.build_planted`).

For every test user (their test sample: the behaviours before their last one) each behaviour is assigned
to one of the user's K_u interests, and each interest is labelled by the majority category of its
behaviours (:func:`recbole_iacn.explain.core.recovery`): purity is the share of a user's behaviours whose
category is their interest's label, coverage the share of the user's planted categories present in what
the model read that label some interest. Two assignments: ``routing`` (the largest final routing weight)
and ``score`` (the largest ``c_iᵀ i_u^k``). Baselines on the same users: the same model untrained, random
routing weights, and the trained model's position-only routing (its start logits' softmax).
"""

from __future__ import annotations

import torch

from recbole_iacn.data.synthetic import read_planted
from recbole_iacn.explain.core import recovery
from recbole_iacn.explain.diagnostics import neighbour_agreement, routing_figures


def positive_test_rows(prepared):
    """The positive test samples (one per user) of a prepared run, joined with the user features."""
    dataset = prepared.test_data._dataset
    rows = dataset[torch.arange(len(dataset))]
    return rows[rows[dataset.label_field] > 0.5]


def planted_recovery(loaded, rows, planted_file, seed: int = 0) -> dict:
    """Purity and coverage of ``loaded``'s interests on ``rows`` for each assignment and baseline:
    ``{"trained routing": {...}, "trained score": ..., "untrained routing": ..., "untrained score": ...,
    "position routing": ..., "random routing": ...}``, each ``{"purity", "coverage", "users"}``; the routing
    rows also carry the content diagnostics (:mod:`recbole_iacn.explain.diagnostics`)."""
    s = loaded.schema
    category_ids = {t: i for i, t in enumerate(s.vocab[s.item_category_field])}
    user_tokens = s.vocab[s.user_field]
    planted_tokens = read_planted(planted_file)
    planted = [[category_ids[c] for c in planted_tokens[user_tokens[u]] if c in category_ids]
               for u in rows[s.user_field].tolist()]
    history, lengths = rows[s.history_item_field], rows[s.history_length_field]
    categories = torch.tensor(s.item_categories, dtype=torch.long)[history]
    torch.manual_seed(seed)
    untrained = type(loaded.model)(loaded.config, s).eval()
    results = {}
    with torch.no_grad():
        for name, model in (("trained", loaded.model), ("untrained", untrained)):
            formed = model.iacn.form_interests(rows)
            counts = formed.mask.sum(-1)
            figures = routing_figures(model.iacn, rows)
            neighbours = neighbour_agreement(model.iacn.aux_item_embedding.weight, torch.tensor(s.item_categories))
            content = {"moved_share": figures["moved_share"], "x_hat_norm": figures["behaviour_norm_mean"],
                       "neighbour_agreement": neighbours["agreement"], "neighbour_chance": neighbours["chance"]}
            results[f"{name} routing"] = {**recovery(formed.routing_weights, lengths, counts, categories, planted),
                                          **content}
            scores = torch.matmul(model.iacn.aux_item_embedding(history), formed.vectors.transpose(1, 2))  # [B, L, K]
            results[f"{name} score"] = recovery(scores, lengths, counts, categories, planted)
        start = loaded.model.iacn.routing.start_weights(history.shape[1], formed.mask)
        results["position routing"] = recovery(start.expand(len(history), -1, -1), lengths, counts, categories, planted)
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn(formed.routing_weights.shape, generator=generator)
        random_weights = torch.softmax(logits.masked_fill(~formed.mask.unsqueeze(1), float("-inf")), -1)
        results["random routing"] = recovery(random_weights, lengths, formed.mask.sum(-1), categories, planted)
    return results
