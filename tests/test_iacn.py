"""The IaCN component's mathematics: squash, dynamic K, routing masks, attention, loss, δ mixing."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_iacn.model.iacn import (
    BehaviourToInterestRouting,
    InterestMLP,
    LabelAwareAttention,
    batched_dot,
    interest_counts,
    scale_gradient,
    squash,
)
from tests.conftest import model_config, sample_batch


def test_squash_norm_and_direction():
    s = torch.randn(64, 7, dtype=torch.float64) * torch.logspace(-3, 3, 64, dtype=torch.float64).unsqueeze(-1)
    v = squash(s)
    norm = s.norm(dim=-1)
    assert torch.allclose(v.norm(dim=-1), norm**2 / (1 + norm**2), rtol=1e-6)
    cosine = torch.nn.functional.cosine_similarity(v, s, dim=-1)
    assert torch.allclose(cosine, torch.ones_like(cosine))
    assert torch.equal(squash(torch.zeros(3, 5)), torch.zeros(3, 5))


@pytest.mark.parametrize(
    "k_max, expected",
    [
        (4, [0, 1, 1, 2, 2, 3, 3, 4, 4]),
        (10, [0, 1, 1, 2, 2, 3, 3, 5, 6]),
        (1, [0, 1, 1, 1, 1, 1, 1, 1, 1]),
    ],
)
def test_dynamic_interest_count(k_max, expected):
    lengths = torch.tensor([0, 1, 2, 3, 4, 5, 8, 20, 50])
    by_formula = [0 if n == 0 else max(1, min(k_max, math.ceil(math.log2(n)))) for n in lengths.tolist()]
    assert by_formula == expected
    assert interest_counts(lengths, k_max).tolist() == expected


#: The routing's forms: MIND's (behaviours as they are, start logits N(0, 1)) and the package's default
#: (behaviours as s·c/‖c‖, start logits N(0, 0.1²)), as (scale, start-logit std).
FORMS = {"mind": (0.0, 1.0), "content": (5.0, 0.1)}


def _routing(dim=6, k_max=4, iterations=3, length=9, seed=7, stop_gradient=True, form="mind"):
    torch.manual_seed(0)
    scale, logit_std = FORMS[form]
    return BehaviourToInterestRouting(dim, k_max, iterations, length, seed, stop_gradient, scale, logit_std)


@pytest.mark.parametrize("form", FORMS)
def test_routing_masks_padding_and_unused_capsules(form):
    routing = _routing(form=form)
    lengths = torch.tensor([0, 1, 3, 5, 9])
    mask = torch.arange(9) < lengths.unsqueeze(-1)
    behaviours = torch.randn(5, 9, 6)
    counts = interest_counts(lengths, 4)
    capsules, interest_mask, weights = routing(behaviours, mask, counts)
    assert capsules.shape == (5, 4, 6) and weights.shape == (5, 9, 4)
    assert torch.equal(interest_mask, torch.arange(4) < counts.unsqueeze(-1))
    # padded behaviours and unused capsules get exactly zero routing weight
    assert torch.all(weights[~mask] == 0)
    assert torch.all(weights.permute(0, 2, 1)[~interest_mask] == 0)
    # real behaviours distribute their whole weight over the user's K_u interests
    assert torch.allclose(weights.sum(-1)[mask], torch.ones(int(mask.sum())))
    assert torch.all(capsules[~interest_mask] == 0)
    assert torch.all(capsules[0] == 0)  # an empty history has no interests
    # changing a padded behaviour changes nothing
    changed = behaviours.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 6) * 100
    again, _, _ = routing(changed, mask, counts)
    assert torch.equal(again, capsules)


def _routing_inputs(dtype=torch.float32):
    torch.manual_seed(3)
    lengths = torch.tensor([1, 4, 9, 6])
    mask = torch.arange(9) < lengths.unsqueeze(-1)
    return torch.randn(4, 9, 6, dtype=dtype, requires_grad=True), mask, interest_counts(lengths, 4)


@pytest.mark.parametrize("form", FORMS)
def test_routing_stop_gradient_changes_gradients_not_values(form):
    """Stop-gradient refinement (MIND/ComiRec code): same capsules; the gradient is that of the last
    iteration with its routing weights held constant."""
    behaviours, mask, counts = _routing_inputs()
    upstream = torch.randn(4, 4, 6)
    stopped, full = _routing(stop_gradient=True, form=form), _routing(stop_gradient=False, form=form)
    capsules, _, weights = stopped(behaviours, mask, counts)
    again, _, _ = full(behaviours, mask, counts)
    assert torch.allclose(capsules, again, atol=1e-6)
    (grad_stopped,) = torch.autograd.grad(capsules, behaviours, upstream)
    (grad_full,) = torch.autograd.grad(again, behaviours, upstream)
    # reference: squash(Σ_i a_ij M c_i) with the final a_ij as constants
    x_hat = stopped.bilinear(stopped.normalise(behaviours))
    interest_mask = torch.arange(4) < counts.unsqueeze(-1)
    reference = squash(torch.bmm(weights.detach().transpose(1, 2), x_hat)) * interest_mask.unsqueeze(-1)
    (grad_reference,) = torch.autograd.grad(reference, behaviours, upstream)
    assert torch.allclose(grad_stopped, grad_reference, atol=1e-6)
    assert not torch.allclose(grad_full, grad_stopped, atol=1e-4)  # the full gradient flows through b_ij


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("stop_gradient", [True, False])
def test_routing_gradient_passes_gradcheck(stop_gradient, form):
    behaviours, mask, counts = _routing_inputs(torch.float64)
    routing = _routing(stop_gradient=stop_gradient, form=form).double()
    if stop_gradient:  # the analytic gradient is the one of the last iteration: check that function
        with torch.no_grad():
            _, _, weights = routing(behaviours, mask, counts)

        def function(x):
            return squash(torch.bmm(weights.transpose(1, 2), routing.bilinear(routing.normalise(x))))

    else:

        def function(x):
            return routing(x, mask, counts)[0]

    assert torch.autograd.gradcheck(function, (behaviours,))
    if stop_gradient:
        upstream = torch.randn(4, 4, 6, dtype=torch.float64)
        interest_mask = (torch.arange(4) < counts.unsqueeze(-1)).unsqueeze(-1)
        (got,) = torch.autograd.grad(routing(behaviours, mask, counts)[0], behaviours, upstream)
        (want,) = torch.autograd.grad(function(behaviours) * interest_mask, behaviours, upstream)
        assert torch.allclose(got, want)


def test_interest_mlp_equals_the_concatenation_form():
    torch.manual_seed(0)
    mlp = InterestMLP(6, 5, [7])
    reference = torch.nn.Sequential(torch.nn.Linear(11, 7), torch.nn.ReLU(), torch.nn.Linear(7, 6), torch.nn.ReLU())
    with torch.no_grad():
        reference[0].weight.copy_(torch.cat([mlp.capsule_layer.weight, mlp.profile_layer.weight], 1))
        reference[0].bias.copy_(mlp.capsule_layer.bias)
        reference[2].load_state_dict(mlp.rest[0].state_dict())
    capsules, profile = torch.randn(3, 4, 6), torch.randn(3, 5)
    expected = reference(torch.cat([capsules, profile.unsqueeze(1).expand(-1, 4, -1)], -1))
    assert torch.allclose(mlp(capsules, profile), expected, atol=1e-6)
    no_profile = InterestMLP(6, 0, [])
    assert no_profile.profile_layer is None and no_profile(capsules).shape == (3, 4, 6)


def test_batched_dot_is_a_per_sample_matrix_vector_product():
    vectors, query = torch.randn(5, 3, 4), torch.randn(5, 4)
    assert torch.allclose(batched_dot(vectors, query), torch.einsum("bnh,bh->bn", vectors, query), atol=1e-6)


def test_routing_initial_logits_are_fixed_and_not_learned():
    a, b = _routing(seed=3), _routing(seed=3)
    assert torch.equal(a.initial_logits, b.initial_logits)
    assert "initial_logits" not in dict(a.named_parameters())


def test_label_aware_attention_power_zero_is_mean_of_valid_interests():
    interests = torch.randn(4, 3, 5)
    mask = torch.tensor([[True, True, True], [True, False, False], [True, True, False], [True, True, True]])
    target = torch.randn(4, 5)
    out = LabelAwareAttention(0)(interests, mask, target)
    expected = (interests * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(out, expected, atol=1e-6)


def test_label_aware_attention_large_power_approaches_best_interest():
    torch.manual_seed(1)
    interests = torch.rand(8, 4, 6) + 0.1  # positive, so every dot product with the target is positive
    target = torch.rand(8, 6) + 0.1
    mask = torch.ones(8, 4, dtype=torch.bool)
    mask[:, 3] = False  # the fourth interest is unused: it must never be chosen
    interests[:, 3] *= 10
    scores = torch.einsum("bkh,bh->bk", interests, target).masked_fill(~mask, -1)
    best = interests[torch.arange(8), scores.argmax(-1)]
    out = LabelAwareAttention(60)(interests, mask, target)
    assert torch.allclose(out, best, atol=1e-3)
    soft = LabelAwareAttention(2)(interests, mask, target)
    assert (out - best).norm() < (soft - best).norm()


def test_scale_gradient_is_identity_forward_and_scales_backward():
    x = torch.randn(5, requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((5,), 0.25))


# --------------------------------------------------------------------------- the loss and δ mixing
@pytest.fixture(scope="module")
def iacn_model(ml100k, data_root):
    config, model_class = model_config("DIN_IaCN", data_root)
    torch.manual_seed(0)
    return model_class(config, ml100k.train_data._dataset), config


def _loss(model, batch, seed=11):
    torch.manual_seed(seed)  # the sampled negatives
    return model.iacn.loss(batch)


def test_aux_loss_ignores_label_zero_rows_and_empty_histories(iacn_model, ml100k):
    model, _ = iacn_model
    batch = sample_batch(ml100k, 64)
    labels = batch["label"]
    assert labels.min() == 0 and labels.max() == 1
    base = _loss(model, batch)
    assert torch.isfinite(base)
    # scramble everything the loss may read on label-0 rows: it must not change
    scrambled = sample_batch(ml100k, 64)
    negative = labels < 0.5
    scrambled["item_id"][negative] = torch.randint(1, 50, (int(negative.sum()),))
    scrambled["item_id_list"][negative] = torch.randint(1, 50, scrambled["item_id_list"][negative].shape)
    assert torch.equal(_loss(model, scrambled), base)
    # an empty history excludes a positive row too
    emptied = sample_batch(ml100k, 64)
    first_positive = int(torch.nonzero(labels > 0.5)[0])
    emptied["item_id_list"][first_positive] = 0
    emptied["item_length"][first_positive] = 0
    rows = (labels > 0.5) & (torch.arange(64) != first_positive)
    fields = ("label", "item_id", "item_id_list", "item_length", "age", "gender", "occupation", "zip_code")
    subset = {k: emptied[k][rows] for k in fields}
    assert torch.allclose(_loss(model, emptied), _loss(model, subset))


def test_aux_loss_is_finite_zero_without_usable_rows(iacn_model, ml100k):
    model, _ = iacn_model
    batch = sample_batch(ml100k, 32)
    batch["label"][:] = 0
    loss = model.iacn.loss(batch)
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph
    model.zero_grad()
    batch = sample_batch(ml100k, 32)
    batch["item_id_list"][:] = 0
    batch["item_length"][:] = 0
    assert model.iacn.loss(batch).item() == 0.0


@pytest.mark.parametrize("sampler", ["uniform", "in_batch"])
def test_aux_loss_is_the_sampled_softmax_written_out(iacn_model, ml100k, monkeypatch, sampler):
    """L_IaCN against a row-by-row computation: -log softmax over [i_u·c_t, i_u·c_n for each negative n],
    a negative equal to the target (an accidental hit) left out; in-batch: the other rows' items, the
    rows with the same item left out."""
    model, _ = iacn_model
    iacn = model.iacn
    batch = sample_batch(ml100k, 96)
    keep = (batch["label"] > 0.5) & (batch["item_length"] > 0)
    fields = ("label", "item_id", "item_id_list", "item_length", "age", "gender", "occupation", "zip_code")
    rows = {k: batch[k][keep] for k in fields}
    targets = rows["item_id"]
    count = len(targets)
    negatives = torch.randint(1, 60, (count, iacn.num_negatives), generator=torch.Generator().manual_seed(5))
    negatives[::3, 2] = targets[::3]  # accidental hits in every third row
    monkeypatch.setattr(torch, "randint", lambda *args, **kwargs: negatives.clone())
    monkeypatch.setattr(iacn, "negative_sampler", sampler)
    with torch.no_grad():
        loss = iacn.loss(batch).double()
        table = iacn.aux_item_embedding.weight.double()
        interests, interest_mask = iacn.interests(rows)
        users = iacn.attention(interests, interest_mask, iacn.aux_item_embedding(targets)).double()
        expected = []
        for b in range(count):
            if sampler == "uniform":
                others = [n for n in negatives[b].tolist() if n != targets[b]]
            else:
                others = [int(t) for t in targets if t != targets[b]]
            logits = torch.stack([users[b] @ table[int(i)] for i in [int(targets[b]), *others]])
            expected.append(-torch.log_softmax(logits, 0)[0])
    assert count > 20 and (negatives == targets.unsqueeze(-1)).any()
    assert torch.allclose(loss, torch.stack(expected).mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sampler", ["uniform", "in_batch"])
def test_aux_loss_masked_rows_equal_selected_rows(iacn_model, ml100k, monkeypatch, sampler):
    """``select_rows=False`` (every row computed, the ones that do not count weighted 0) gives the value
    and every gradient of ``select_rows=True`` (rows gathered first), with the same negatives per row."""
    model, _ = iacn_model
    iacn = model.iacn
    batch = sample_batch(ml100k, 80)
    batch["item_id_list"][5] = 0
    batch["item_length"][5] = 0  # an empty history
    keep = (batch["label"] > 0.5) & (batch["item_length"] > 0)
    drawn = torch.randint(1, iacn.schema.num_items, (80, iacn.num_negatives), generator=torch.Generator().manual_seed(2))
    drawn[keep.nonzero().squeeze(1)[:4], 0] = batch["item_id"][keep][:4]  # accidental hits
    monkeypatch.setattr(torch, "randint", lambda low, high, size, **kw: (drawn if size[0] == 80 else drawn[keep]).clone())
    monkeypatch.setattr(iacn, "negative_sampler", sampler)
    results = []
    for select_rows in (True, False):
        model.zero_grad()
        loss = iacn.loss(batch, select_rows=select_rows)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in iacn.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (selected, selected_grads), (masked, masked_grads) = results
    assert torch.allclose(selected, masked, rtol=1e-5)
    assert selected_grads.keys() == masked_grads.keys() and len(selected_grads) >= 4
    for name in selected_grads:
        assert torch.allclose(selected_grads[name], masked_grads[name], rtol=1e-4, atol=1e-7), name
    # no usable row: 0, with finite (zero) gradients
    batch["label"][:] = 0
    model.zero_grad()
    empty = iacn.loss(batch, select_rows=False)
    empty.backward()
    assert empty.item() == 0.0
    assert all(torch.all(p.grad == 0) for p in iacn.parameters() if p.grad is not None)


def _gradients(model, batch, delta, main_weight, aux_weight):
    """Gradients of main_weight·L_main + aux_weight·λ·L_IaCN with δ set as given."""
    model.zero_grad()
    model.iacn.delta = delta
    main = model.loss_fct(model.forward(batch), batch["label"])
    aux = model.iacn.weight * _loss(model, batch)
    (main_weight * main + aux_weight * aux).backward()
    named = dict(model.named_parameters())
    names = ["iacn.aux_item_embedding.weight", "embedder.item_embedding.original.table.weight", "iacn.routing.bilinear.weight"]
    return [named[n].grad.clone() for n in names]


@pytest.mark.parametrize("delta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_delta_gradient_mixing(iacn_model, ml100k, delta, lam):
    """g(E_aux) = (1 − δ)·∂(λL_aux)/∂E_aux + δ·∂L_main/∂E_aux; E_orig gets ∂L_main only; M gets ∂(λL_aux)."""
    model, _ = iacn_model
    model.train()
    model.iacn.weight = lam
    batch = sample_batch(ml100k, 128, offset=512)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # BatchNorm statistics move each pass

    def grads(*args):
        model.load_state_dict(state)
        return _gradients(model, batch, *args)

    e_aux, e_orig, bilinear = grads(delta, 1.0, 1.0)  # what training does
    # each term alone, unscaled: δ = 1 lets the main gradient through untouched, δ = 0 the auxiliary one
    main_aux, main_orig, main_bilinear = grads(1.0, 1.0, 0.0)
    aux_aux, aux_orig, aux_bilinear = grads(0.0, 0.0, 1.0)
    assert torch.allclose(e_aux, (1 - delta) * aux_aux + delta * main_aux, atol=1e-7, rtol=1e-5)
    assert torch.allclose(e_orig, main_orig, atol=1e-8)
    assert torch.all(aux_orig == 0)
    assert torch.allclose(bilinear, aux_bilinear, atol=1e-8)
    assert torch.all(main_bilinear == 0)
    if lam > 0:
        assert aux_aux.abs().sum() > 0
    assert main_aux.abs().sum() > 0
    model.iacn.delta, model.iacn.weight = 0.3, 1.0
    model.load_state_dict(state)


def test_relationship_score_is_best_interest_dot_product(iacn_model, ml100k):
    model, _ = iacn_model
    model.eval()
    batch = sample_batch(ml100k, 16)
    with torch.no_grad():
        interests, mask = model.iacn.interests(batch)
        items = model.iacn.aux_item_embedding(batch["item_id"])
        expected = torch.einsum("bkh,bh->bk", interests, items).masked_fill(~mask, -math.inf).max(-1).values
        assert torch.allclose(model.iacn.relationship_score(batch), expected)
        first, _ = model.iacn.interests(batch)
        second, _ = model.iacn.interests(batch)
    assert torch.equal(first, second)  # routing is deterministic


def test_lambda_zero_computes_no_auxiliary_loss(iacn_model, ml100k):
    """λ = 0: the auxiliary term is 0 and moves nothing; E_aux still learns from the host (via δ)."""
    model, _ = iacn_model
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batch = sample_batch(ml100k, 128, offset=256)
    model.zero_grad()
    model.iacn.weight = 0.0
    try:
        losses = model.calculate_loss(batch)
        assert float(losses[-1]) == 0.0
        sum(losses).backward()
        assert model.iacn.routing.bilinear.weight.grad is None
        assert model.iacn.aux_item_embedding.weight.grad.abs().sum() > 0
    finally:
        model.iacn.weight = 1.0
        model.zero_grad()
        model.load_state_dict(state)
