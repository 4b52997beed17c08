"""``iacn_fused_loss``: the IaCN loss's routing and attention + softmax as autograd Functions with hand-derived
backwards (recbole_iacn/model/iacn_fused.py). gradcheck on each Function, masked positions included, and
the fused loss against today's: the value and every parameter gradient, in float64, under the same seed."""

from __future__ import annotations

import math

import pytest
import torch

from recbole_iacn import settings
from recbole_iacn.errors import ConfigError
from recbole_iacn.model import iacn_fused
from recbole_iacn.model.iacn import IaCN, interest_counts, squash
from recbole_iacn.model.iacn_fused import (
    FusedAttentionSoftmax,
    Squash,
    fused_attention_softmax,
    fused_routing,
    fused_squash,
    routing_aggregate,
)
from recbole_iacn.model.schema import TOKEN, TOKEN_SEQ, FeatureSchema, FieldInfo

F64 = torch.float64
LENGTH, K_MAX, DIM, ITEMS = 9, 4, 6, 40
#: history lengths of the rows: an empty history (K_u = 0), one behaviour, and K_u = 1 … 4 with padding
LENGTHS = [0, 1, 2, 3, 5, 9, 4, 7]


def _masks(lengths=LENGTHS, length=LENGTH, k_max=K_MAX):
    lengths = torch.tensor(lengths)
    behaviour_mask = torch.arange(length) < lengths.unsqueeze(-1)
    interest_mask = torch.arange(k_max) < interest_counts(lengths, k_max).unsqueeze(-1)
    return behaviour_mask, interest_mask


def _initial_logits(seed=1):
    return torch.randn(LENGTH, K_MAX, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _inputs(shape, seed, scale=1.0):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * scale).requires_grad_()


# --------------------------------------------------------------------------- gradcheck of each Function
def test_squash_function_matches_squash_and_passes_gradcheck():
    s = _inputs((5, 4, DIM), 0) * torch.logspace(-3, 2, 5, dtype=F64).view(5, 1, 1)
    s = s.detach()
    s[1, 2] = 0.0  # a zero capsule (an unused interest): value 0, gradient f(0)·g = 0
    s.requires_grad_()
    assert torch.equal(fused_squash(s), squash(s))
    assert torch.autograd.gradcheck(Squash.apply, (s,))
    upstream = torch.randn(5, 4, DIM, dtype=F64)
    (got,) = torch.autograd.grad(fused_squash(s), s, upstream)
    (want,) = torch.autograd.grad(squash(s), s, upstream)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-15)
    assert torch.all(got[1, 2] == 0)


@pytest.mark.parametrize("stop_gradient, iterations", [(False, 1), (False, 2), (False, 3), (True, 1)])
def test_fused_routing_passes_gradcheck_with_padding_unused_interests_and_empty_rows(stop_gradient, iterations):
    """Exact gradient without stop-gradient (through every iteration), and with it when there is no
    refinement (one iteration: the weights are softmax(b⁰), constants). With refinement, the stop-gradient
    backward is by design not the forward's derivative: test_fused_routing_equals_the_routing_module."""
    behaviour_mask, interest_mask = _masks()
    x = _inputs((len(LENGTHS), LENGTH, DIM), 2, scale=2.0)
    logits = _initial_logits()

    def function(x):
        return fused_routing(x, behaviour_mask, interest_mask, logits, iterations, stop_gradient)

    assert torch.autograd.gradcheck(function, (x,))
    upstream = torch.randn(len(LENGTHS), K_MAX, DIM, dtype=F64)
    capsules = function(x)
    assert torch.all(capsules[~interest_mask] == 0)  # unused interests: zero capsules
    (grad,) = torch.autograd.grad(capsules, x, upstream)
    assert torch.all(grad[~behaviour_mask] == 0)  # padded slots
    assert torch.all(grad[0] == 0)  # the empty history


#: The routing's forms: MIND's and the package's default (behaviours as s·c/‖c‖, start logits N(0, 0.1²)).
ROUTING_FORMS = {
    "mind": {"iacn_routing_scale": 0.0, "iacn_routing_logit_std": 1.0, "iacn_routing_iterations": 3},
    "content": {"iacn_routing_scale": 5.0, "iacn_routing_logit_std": 0.1, "iacn_routing_iterations": 5},
}


def _routing_module(stop_gradient, form="mind"):
    from recbole_iacn.model.iacn import BehaviourToInterestRouting

    torch.manual_seed(0)
    f = ROUTING_FORMS[form]
    routing = BehaviourToInterestRouting(DIM, K_MAX, f["iacn_routing_iterations"], LENGTH, seed=1,
                                         stop_gradient=stop_gradient, scale=f["iacn_routing_scale"],
                                         logit_std=f["iacn_routing_logit_std"]).double()
    with torch.no_grad():
        routing.bilinear.weight.mul_(3.0)  # capsule norms around 1: squash far from linear
    return routing


@pytest.mark.parametrize("form", ROUTING_FORMS)
@pytest.mark.parametrize("stop_gradient", [True, False])
def test_fused_routing_equals_the_routing_module(stop_gradient, form):
    """Capsules and ∂/∂behaviours, ∂/∂M of FusedRouting(M c) equal BehaviourToInterestRouting's, and with
    stop-gradient so do RoutingAggregate's (which normalises ``c`` itself) followed by M and Squash."""
    routing = _routing_module(stop_gradient, form)
    behaviour_mask, interest_mask = _masks()
    behaviours = _inputs((len(LENGTHS), LENGTH, DIM), 3)
    upstream = torch.randn(len(LENGTHS), K_MAX, DIM, dtype=F64)
    counts = interest_counts(torch.tensor(LENGTHS), K_MAX)
    want, want_mask, _ = routing(behaviours, behaviour_mask, counts)
    assert torch.equal(want_mask, interest_mask)
    wanted = torch.autograd.grad(want, (behaviours, routing.bilinear.weight), upstream)
    candidates = [fused_routing(routing.bilinear(routing.normalise(behaviours)), behaviour_mask, interest_mask,
                                routing.initial_logits, routing.iterations, stop_gradient)]
    if stop_gradient:
        aggregated = routing_aggregate(behaviours, behaviour_mask, interest_mask, routing.initial_logits,
                                       routing.iterations, routing.bilinear.weight, routing.scale)
        candidates.append(fused_squash(routing.bilinear(aggregated)))
    for got in candidates:
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
        for g, w in zip(torch.autograd.grad(got, (behaviours, routing.bilinear.weight), upstream), wanted):
            assert torch.allclose(g, w, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("form", ROUTING_FORMS)
def test_routing_aggregate_gradient_is_that_of_the_last_aggregation_with_its_weights_constant(form):
    """RoutingAggregate is y = a ĉ with today's final routing weights a (ĉ = s·c/‖c‖, or c at scale 0), and
    its gradient that of y with a held constant (the stop-gradient rule), through the normalisation; with one
    iteration (no refinement) gradcheck holds exactly. A zero behaviour (E_aux's padding row) maps to 0 with
    a finite gradient."""
    routing = _routing_module(True, form)
    behaviour_mask, interest_mask = _masks()
    behaviours = _inputs((len(LENGTHS), LENGTH, DIM), 4, scale=2.0)
    with torch.no_grad():
        behaviours[1, 0] = 0.0  # a real slot holding the zero vector
    counts = interest_counts(torch.tensor(LENGTHS), K_MAX)
    _, _, weights = routing(behaviours, behaviour_mask, counts)  # a [B, L, K], 0 on padding and unused
    reference = torch.bmm(weights.detach().transpose(1, 2),
                          routing.normalise(behaviours) * behaviour_mask.unsqueeze(-1))

    def function(c, iterations=routing.iterations):
        return routing_aggregate(c, behaviour_mask, interest_mask, routing.initial_logits, iterations,
                                 routing.bilinear.weight, routing.scale)

    got = function(behaviours)
    assert torch.allclose(got, reference, rtol=1e-12, atol=1e-14)
    upstream = torch.randn(len(LENGTHS), K_MAX, DIM, dtype=F64)
    (grad,) = torch.autograd.grad(got, behaviours, upstream)
    (want,) = torch.autograd.grad(reference, behaviours, upstream)
    assert torch.allclose(grad, want, rtol=1e-12, atol=1e-14)
    assert torch.all(grad[~behaviour_mask] == 0) and torch.all(grad[0] == 0)
    assert torch.isfinite(grad[1, 0]).all()
    nonzero = behaviours.detach().clone()
    nonzero[1, 0] = 1.0  # gradcheck away from the kink of ‖c‖ at 0
    assert torch.autograd.gradcheck(lambda c: function(c, 1), (nonzero.requires_grad_(),))
    assert routing.bilinear.weight.grad is None  # M reaches the loss through the module, not through here


def _attention_inputs(sampled: bool, rows: int = 8, negatives: int = 5, seed: int = 6):
    _, interest_mask = _masks(LENGTHS[:rows])
    interests = _inputs((rows, K_MAX, DIM), seed)  # unused rows hold values: they must not matter
    candidates = _inputs((rows, 1 + negatives if sampled else 1, DIM), seed + 1)
    generator = torch.Generator().manual_seed(seed + 2)
    if sampled:
        excluded = torch.rand(rows, 1 + negatives, generator=generator) < 0.25
        excluded[:, 0] = False
    else:
        excluded = torch.rand(rows, rows, generator=generator) < 0.25
        excluded.fill_diagonal_(False)
    return interests, interest_mask, candidates, excluded


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("power", [0, 1, 2, 3])
def test_fused_attention_softmax_passes_gradcheck(sampled, power):
    interests, interest_mask, candidates, excluded = _attention_inputs(sampled)
    assert not interest_mask[0].any() and excluded.any()  # a row without interests; excluded negatives

    def function(i, c):
        return fused_attention_softmax(i, interest_mask, c, excluded, power, not sampled)

    assert torch.autograd.gradcheck(function, (interests, candidates))
    grad_interests, _ = torch.autograd.grad(function(interests, candidates).sum(), (interests, candidates))
    assert torch.all(grad_interests[~interest_mask] == 0)  # unused interests: gradient 0


def _attention_reference(interests, interest_mask, candidates, excluded, power, sampled):
    """Today's maths (IaCN._candidate_losses after the interest MLP), op by op."""
    from recbole_iacn.model.iacn import LabelAwareAttention, batched_dot

    interests = interests * interest_mask.unsqueeze(-1)
    target = candidates[:, 0]
    user = LabelAwareAttention(power)(interests, interest_mask, target)
    if sampled:
        logits, column = batched_dot(candidates, user), torch.zeros(len(target), dtype=torch.long)
    else:
        logits, column = user @ target.t(), torch.arange(len(target))
    return torch.nn.functional.cross_entropy(logits.masked_fill(excluded, -math.inf), column, reduction="none")


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("power", [0, 2])
def test_fused_attention_softmax_equals_the_plain_ops(sampled, power):
    inputs = _attention_inputs(sampled)
    got = fused_attention_softmax(*inputs, power, not sampled)
    want = _attention_reference(*inputs, power, sampled)
    assert torch.allclose(got, want, rtol=1e-12)
    upstream = torch.rand(len(got), dtype=F64)
    for g, w in zip(torch.autograd.grad(got, (inputs[0], inputs[2]), upstream),
                    torch.autograd.grad(want, (inputs[0], inputs[2]), upstream)):
        assert torch.allclose(g, w, rtol=1e-10, atol=1e-14)


def test_a_wrong_backward_fails_these_checks(monkeypatch):
    """The checks can fail: a squash backward without its radial term, and an attention backward without
    the gradient through the attention weights, are caught by gradcheck and by the comparison."""
    s = _inputs((3, 4, DIM), 7)
    monkeypatch.setattr(iacn_fused, "_squash_backward", lambda s, norm, factor, grad: factor * grad)
    assert not torch.autograd.gradcheck(Squash.apply, (s,), raise_exception=False)
    monkeypatch.undo()
    assert torch.autograd.gradcheck(Squash.apply, (s,))

    interests, interest_mask, candidates, excluded = _attention_inputs(True)
    backward = FusedAttentionSoftmax.backward

    def without_attention_term(ctx, grad):
        power = ctx.power
        ctx.power = 0  # drop g_z: the gradient through the attention weights
        try:
            return backward(ctx, grad)
        finally:
            ctx.power = power

    monkeypatch.setattr(FusedAttentionSoftmax, "backward", staticmethod(without_attention_term))
    function = lambda i, c: fused_attention_softmax(i, interest_mask, c, excluded, 2, False)  # noqa: E731
    assert not torch.autograd.gradcheck(function, (interests, candidates), raise_exception=False)
    got = torch.autograd.grad(function(interests, candidates).sum(), interests)[0]
    want = torch.autograd.grad(_attention_reference(interests, interest_mask, candidates, excluded, 2, True).sum(),
                               interests)[0]
    assert not torch.allclose(got, want, rtol=1e-6)


def test_interest_thresholds_give_the_interest_counts_mask():
    """The fused path's interest mask, ``n > thresholds[j]`` (0, 2, 4, 8, …), is interest_counts'."""
    lengths = torch.arange(0, 3000)
    for k_max in (1, 2, 3, 4, 5, 12, 70):
        thresholds = torch.tensor([0] + [2 ** min(j, 62) for j in range(1, k_max)])
        want = torch.arange(k_max) < interest_counts(lengths, k_max).unsqueeze(-1)
        assert torch.equal(lengths.unsqueeze(-1) > thresholds, want), k_max


# --------------------------------------------------------------------------- the loss, fused against today's
def _schema(length=LENGTH):
    fields = {
        "user_id": FieldInfo("user_id", TOKEN, "user", 30, 1),
        "age": FieldInfo("age", TOKEN, "user", 7, 1),
        "gender": FieldInfo("gender", TOKEN, "user", 3, 1),
        "item_id": FieldInfo("item_id", TOKEN, "item", ITEMS, 1),
        "item_id_list": FieldInfo("item_id_list", TOKEN_SEQ, "inter", ITEMS, length),
        "item_length": FieldInfo("item_length", TOKEN, "inter", 0, 1),
        "label": FieldInfo("label", "float", "inter", 0, 1),
    }
    return FeatureSchema(user_field="user_id", item_field="item_id", label_field="label",
                         history_item_field="item_id_list", history_length_field="item_length",
                         history_category_field=None, item_category_field=None, fields=fields)


def _config(**overrides):
    config = settings.defaults(["model/IaCN.yaml"])
    config.update(seed=3, iacn_embedding_size=DIM, iacn_mlp_hidden_size=[7], iacn_profile_embedding_size=3,
                  embedding_init="normal", embedding_init_std=0.5, **overrides)
    return config


def _model(**overrides) -> IaCN:
    torch.manual_seed(0)
    model = IaCN(_config(**overrides), _schema()).double()
    assert [f for f in model.profile_fields] == ["age", "gender"]
    return model


def _batch(rows=48, seed=9, padding=None):
    """Rows with labels 0/1, every history length 0 … L, padded slots holding random ids (or ``padding``)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.arange(rows) % (LENGTH + 1)
    history = torch.randint(1, ITEMS, (rows, LENGTH), generator=g)
    pad = ~(torch.arange(LENGTH) < lengths.unsqueeze(-1))
    fill = torch.randint(1, ITEMS, (int(pad.sum()),), generator=torch.Generator().manual_seed(seed + 1))
    history[pad] = fill if padding is None else padding
    return {
        "item_id": torch.randint(1, ITEMS, (rows,), generator=g),
        "item_id_list": history,
        "item_length": lengths,
        "label": (torch.rand(rows, generator=g) < 0.7).to(F64),
        "age": torch.randint(1, 7, (rows,), generator=g),
        "gender": torch.randint(1, 3, (rows,), generator=g),
        "user_id": torch.randint(1, 30, (rows,), generator=g),
    }


def _loss_and_grads(model, batch, fused, seed=4):
    model.fused_loss = fused
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the sampled negatives
    loss = model.loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(today, fused):
    (value, grads), (fused_value, fused_grads) = today, fused
    torch.testing.assert_close(fused_value, value, rtol=1e-9, atol=1e-12)
    assert fused_grads.keys() == grads.keys()
    for name, grad in grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-7, atol=1e-9 * float(grad.abs().max()),
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("form", ROUTING_FORMS)
@pytest.mark.parametrize("select_rows", [True, False])
@pytest.mark.parametrize("power", [1, 2, 3])
@pytest.mark.parametrize("stop_gradient", [True, False])
@pytest.mark.parametrize("sampler", ["uniform", "in_batch"])
def test_fused_loss_equals_todays_value_and_every_gradient(sampler, stop_gradient, power, select_rows, form):
    model = _model(iacn_negative_sampler=sampler, iacn_routing_stop_gradient=stop_gradient,
                   iacn_attention_power=power, iacn_select_rows=select_rows, **ROUTING_FORMS[form])
    names = {n for n, _ in model.named_parameters()}
    batch = _batch()
    today = _loss_and_grads(model, batch, fused=False)
    fused = _loss_and_grads(model, batch, fused=True)
    assert today[1].keys() == names  # E_aux, M, the MLP, the profile embeddings: every parameter
    _assert_same(today, fused)
    if sampler == "uniform":  # the seed fixes the negatives: another seed gives another loss
        assert not torch.equal(_loss_and_grads(model, batch, fused=True, seed=5)[0], fused[0])


def test_fused_loss_with_accidental_hits_and_power_zero():
    """Sampled negatives equal to the target (dropped), and p = 0 (the mean of the interests)."""
    model = _model(iacn_attention_power=0, iacn_num_negatives=30)  # 30 of 39 items: many hits
    batch = _batch()
    today, fused = _loss_and_grads(model, batch, False), _loss_and_grads(model, batch, True)
    _assert_same(today, fused)


def test_fused_loss_ignores_what_padded_slots_hold():
    model = _model(iacn_negative_sampler="in_batch", iacn_select_rows=False)
    results = [_loss_and_grads(model, _batch(padding=padding), fused=True) for padding in (None, 0, 7)]
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0])
        for name, grad in results[0][1].items():
            assert torch.equal(other[1][name], grad), name


def test_fused_loss_without_usable_rows_is_zero_with_zero_gradients():
    model = _model(iacn_select_rows=False)
    batch = _batch()
    batch["label"][:] = 0
    value, grads = _loss_and_grads(model, batch, fused=True)
    assert value.item() == 0.0 and all(torch.all(g == 0) for g in grads.values())


def test_fused_loss_in_float32_is_close_to_todays():
    model = _model().float()
    batch = _batch()
    batch["label"] = batch["label"].float()
    (value, grads), (fused_value, fused_grads) = (_loss_and_grads(model, batch, f) for f in (False, True))
    torch.testing.assert_close(fused_value, value, rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()))


def test_fused_loss_under_mixed_precision_runs_its_functions_in_float32():
    """``enable_amp``: under autocast the Functions get float32 inputs (their backwards combine saved tensors
    of one dtype) and the loss and gradients stay close to those without autocast."""
    model = _model().float()
    batch = _batch()
    batch["label"] = batch["label"].float()
    value, grads = _loss_and_grads(model, batch, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp_value, amp_grads = _loss_and_grads(model, batch, True)
    assert amp_value.dtype == torch.float32
    torch.testing.assert_close(amp_value, value, rtol=0.05, atol=0.01)
    assert amp_grads.keys() == grads.keys()
    for name, grad in grads.items():
        assert amp_grads[name].dtype == torch.float32 and torch.isfinite(amp_grads[name]).all(), name
        assert torch.nn.functional.cosine_similarity(amp_grads[name].flatten(), grad.flatten(), dim=0) > 0.95, name


def test_fused_loss_refuses_histories_longer_than_the_routing_was_built_for():
    model = IaCN(_config(iacn_fused_loss=True), _schema(length=4)).double()
    with pytest.raises(ValueError, match="exceed the 4 the routing was built for"):
        model.loss(_batch())


# --------------------------------------------------------------------------- the setting
def test_the_setting_is_declared_once_and_defaults_to_the_fused_loss():
    setting = settings.get("iacn_fused_loss")
    assert setting is not None and setting.kind == "bool" and setting.group == "IaCN"
    assert settings.defaults(["model/IaCN.yaml"])["iacn_fused_loss"] is True
    assert IaCN(_config(), _schema()).fused_loss is True
    assert IaCN(_config(iacn_fused_loss=False), _schema()).fused_loss is False
    with pytest.raises(ConfigError, match="iacn_fused_loss expects true or false"):
        IaCN(_config(iacn_fused_loss="yes"), _schema())
    # a config without the key (a checkpoint written before the setting existed) reads as false
    from recbole_iacn.quick_start import _PlainConfig

    old = _PlainConfig({k: v for k, v in _config().items() if k != "iacn_fused_loss"})
    assert IaCN(old, _schema()).fused_loss is False
    assert "interest_thresholds" not in IaCN(old, _schema()).state_dict()  # checkpoints are unchanged


def test_a_model_trained_with_the_fused_loss_gives_todays_gradients(ml100k, data_root):
    """Through a host (DIN_IaCN on ml-100k, δ mixing included): calculate_loss and its gradients."""
    from tests.conftest import model_config, sample_batch

    config, model_class = model_config("DIN_IaCN", data_root)
    torch.manual_seed(0)
    model = model_class(config, ml100k.train_data._dataset).double().eval()  # eval: no dropout/batch statistics
    assert model.iacn.fused_loss is True  # the default
    batch = sample_batch(ml100k, 128)
    for key, value in batch.interaction.items():
        if value.is_floating_point():
            batch.interaction[key] = value.double()
    results = []
    for fused in (False, True):
        model.iacn.fused_loss = fused
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        losses = model.calculate_loss(batch)
        sum(losses).backward()
        results.append(([float(x.detach()) for x in losses],
                        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (losses, grads), (fused_losses, fused_grads) = results
    assert fused_losses == pytest.approx(losses, rel=1e-9)
    assert fused_grads.keys() == grads.keys() and any(n.startswith("iacn.routing") for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-7, atol=1e-9 * max(float(grad.abs().max()), 1e-30))


def test_scaled_normalise_passes_gradcheck_and_equals_normalize():
    """The routing's input ``s·c/‖c‖`` as a Function: the values of ``s·normalize(c)``, gradcheck, and a zero
    row (the padding row of E_aux) maps to 0 with a finite gradient."""
    from recbole_iacn.model.iacn_fused import scaled_normalise

    c = _inputs((4, 5, DIM), 11)
    with torch.no_grad():
        c[0, 1] = 0.0
    want = 5.0 * torch.nn.functional.normalize(c, dim=-1)
    got = scaled_normalise(c, 5.0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    upstream = torch.randn(4, 5, DIM, dtype=F64)
    upstream[0, 1] = 0.0  # padded slots get no gradient from the routing
    (g_want,) = torch.autograd.grad(want, c, upstream)
    (g_got,) = torch.autograd.grad(scaled_normalise(c, 5.0), c, upstream)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-12)
    assert torch.all(g_got[0, 1] == 0)
    nonzero = _inputs((3, 4, DIM), 12)
    assert torch.autograd.gradcheck(lambda x: scaled_normalise(x, 3.0), (nonzero,))
