"""Every model: shapes, learning, probabilities, masks, determinism, save → load, bad settings."""

from __future__ import annotations

import pytest
import torch

from recbole_iacn.errors import ConfigError
from recbole_iacn.registry import host_model_names
from tests.conftest import model_config, sample_batch

MODELS = host_model_names()  # (RecBole's models with IaCN: tests/test_recbole_fields.py)


def build(name, ml100k, data_root, **overrides):
    config, model_class = model_config(name, data_root, **overrides)
    torch.manual_seed(0)
    return model_class(config, ml100k.train_data._dataset), config


@pytest.fixture(scope="module", params=MODELS)
def trained(request, ml100k, data_root):
    """A model after a few optimizer steps on 512 real ml-100k samples, with its loss curve."""
    model, config = build(request.param, ml100k, data_root)
    batch = sample_batch(ml100k, 512)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    model.train()
    for _ in range(15):
        torch.manual_seed(1)  # the same sampled negatives at every step, so losses are comparable
        loss = model.calculate_loss(batch)
        loss = sum(loss) if isinstance(loss, tuple) else loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return request.param, model, config, losses


def test_training_lowers_the_loss(trained):
    name, _, _, losses = trained
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] * 0.9, f"{name}: {losses}"


def test_predictions_are_probabilities_of_the_right_shape(trained, ml100k):
    name, model, _, _ = trained
    batch = sample_batch(ml100k, 100, offset=2000)
    with torch.no_grad():
        logits = model.forward(batch)
        probabilities = model.predict(batch)
    assert logits.shape == (100,) and probabilities.shape == (100,)
    assert torch.all((probabilities >= 0) & (probabilities <= 1))
    assert torch.allclose(probabilities, torch.sigmoid(logits))


def test_eval_mode_is_deterministic(trained, ml100k):
    _, model, _, _ = trained
    batch = sample_batch(ml100k, 64, offset=4000)
    with torch.no_grad():
        assert torch.equal(model.predict(batch), model.predict(batch))


def test_padded_positions_do_not_change_the_output(trained, ml100k):
    name, model, _, _ = trained
    batch = sample_batch(ml100k, 256, offset=100)
    history = batch["item_id_list"]
    lengths = batch["item_length"]
    rows = torch.nonzero(lengths < history.shape[1]).squeeze(-1)
    assert len(rows) > 0, "the sample needs rows with padding"
    with torch.no_grad():
        before = model.predict(batch)
        changed = sample_batch(ml100k, 256, offset=100)
        for r in rows.tolist():
            pad = slice(int(lengths[r]), history.shape[1])
            changed["item_id_list"][r, pad] = torch.randint(1, ml100k.dataset.item_num, (history.shape[1] - int(lengths[r]),))
            changed["cate_id_list"][r, pad] = torch.randint(1, ml100k.dataset.num("cate_id"), (history.shape[1] - int(lengths[r]),))
        after = model.predict(changed)
    assert torch.allclose(before, after, rtol=0, atol=1e-6), (name, (before - after).abs().max())


def test_checkpoint_round_trip_gives_identical_predictions(trained, ml100k, tmp_path):
    from recbole_iacn.quick_start import load_model
    from recbole_iacn.trainer import trainer_class

    name, model, config, _ = trained
    trainer = trainer_class(config, plugin=True)(config, model)
    path = tmp_path / f"{name}.pth"
    trainer._save_checkpoint(0, verbose=False, saved_model_file=str(path))
    restored = load_model(path)
    batch = sample_batch(ml100k, 128, offset=3000)
    with torch.no_grad():
        assert torch.equal(restored.model.predict(batch), model.predict(batch))
    assert type(restored.model).__name__ == name
    # loading never unpickles objects
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "recbole-iacn/1" and isinstance(raw["config"], dict)


def test_restored_model_predicts_from_raw_tokens(trained, ml100k, tmp_path):
    from recbole_iacn.quick_start import load_model
    from recbole_iacn.trainer import trainer_class

    name, model, config, _ = trained
    trainer = trainer_class(config, plugin=True)(config, model)
    path = tmp_path / "m.pth"
    trainer._save_checkpoint(0, verbose=False, saved_model_file=str(path))
    restored = load_model(path)
    dataset = ml100k.dataset
    batch = sample_batch(ml100k, 8, offset=50)
    records = []
    for i in range(8):
        record = {}
        for field in ("user_id", "item_id", "age", "gender", "occupation", "zip_code"):
            record[field] = dataset.id2token(field, batch[field][i].item())
        history = batch["item_id_list"][i]
        record["item_id_list"] = " ".join(dataset.id2token("item_id", history[history > 0]).tolist())
        categories = batch["cate_id_list"][i]
        record["cate_id_list"] = " ".join(dataset.id2token("cate_id", categories[categories > 0]).tolist())
        records.append(record)
    with torch.no_grad():
        assert torch.allclose(restored.predict(records), model.predict(batch), atol=1e-6)


@pytest.mark.parametrize(
    "name, key, value, message",
    [
        ("DIN_IaCN", "iacn_delta", 1.5, "iacn_delta"),
        ("DIN_IaCN", "iacn_delta", -0.1, "[0, 1]"),
        ("DIEN_IaCN", "iacn_lambda", -1.0, "iacn_lambda"),
        ("WideDeep_IaCN", "iacn_max_interests", 0, "iacn_max_interests"),
        ("DAIN_IaCN", "iacn_routing_iterations", 0, "iacn_routing_iterations"),
        ("DAIN_IaCN", "iacn_routing_stop_gradient", "yes", "iacn_routing_stop_gradient"),
        ("DIN_IaCN", "iacn_attention_power", 1.5, "iacn_attention_power"),
        ("DIN_IaCN", "iacn_negative_sampler", "popular", "iacn_negative_sampler"),
        ("DIEN_IaCN", "iacn_select_rows", "auto", "iacn_select_rows"),
        ("DIN", "embedding_size", 0, "embedding_size"),
        ("DIN", "mlp_hidden_size", [200, -1], "mlp_hidden_size"),
        ("DIN", "dropout_prob", 1.0, "dropout_prob"),
        ("DIN", "dnn_activation", "swish", "dnn_activation"),
        ("DIEN", "gru_type", "LSTM", "gru_type"),
        ("DAIN", "loss_type", "hinge", "loss_type"),
        ("WideDeep", "embedding_init", "kaiming", "embedding_init"),
        ("DIN_IaCN", "embedding_init_std", 0, "embedding_init_std"),
        ("DIN_IaCN", "embedding_init_std", "small", "embedding_init_std"),
    ],
)
def test_invalid_hyperparameters_are_rejected_clearly(name, key, value, message, data_root):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model_config(name, data_root, **{key: value})


@pytest.mark.parametrize("name", ["DIN_IaCN", "DIEN_IaCN"])
def test_embedding_init_normal_gives_every_table_the_same_scale(name, ml100k, data_root):
    """``embedding_init: normal``: item, category, side-field and E_aux tables all ~N(0, std²), padding
    rows zero; the default Xavier-normal per table scales each table by its own row count."""
    std = 0.02
    model, _ = build(name, ml100k, data_root, embedding_init="normal", embedding_init_std=std)
    embedder = model.embedder
    tables = {
        "E_orig": embedder.item_embedding.original.table,
        "category": embedder.category_embedding,
        "user fields": embedder.user_fields.tokens.table,
        "E_aux": model.iacn.aux_item_embedding,
    }
    for label, table in tables.items():
        rows = table.weight.detach()
        if table.padding_idx is not None:
            assert torch.all(rows[table.padding_idx] == 0), label
            rows = torch.cat([rows[: table.padding_idx], rows[table.padding_idx + 1 :]])
        assert abs(rows.std().item() - std) < 0.25 * std, (label, rows.std().item())
    default, _ = build(name, ml100k, data_root)
    items, categories = default.embedder.item_embedding.original.table, default.embedder.category_embedding
    ratio = categories.weight[1:].std() / items.weight[1:].std()
    d = default.embedding_size
    expected = ((items.num_embeddings + d) / (categories.num_embeddings + d)) ** 0.5  # Xavier: sqrt(2/(n+d))
    assert abs(ratio.item() / expected - 1) < 0.25


@pytest.mark.parametrize("gru_type", ["AUGRU", "AGRU", "AIGRU", "GRU"])
def test_dien_gru_types_train(gru_type, ml100k, data_root):
    model, _ = build("DIEN", ml100k, data_root, gru_type=gru_type)
    batch = sample_batch(ml100k, 64)
    main, aux = model.calculate_loss(batch)
    (main + aux).backward()
    assert torch.isfinite(main) and torch.isfinite(aux)


def test_attentional_gru_padding_never_updates_state():
    from recbole_iacn.model.dien import AttentionalGRU

    torch.manual_seed(0)
    gru = AttentionalGRU(4, 5)
    inputs = torch.randn(4, 6, 4)
    attention = torch.rand(4, 6)
    lengths = torch.tensor([3, 6, 0, 1])  # unsorted, with an empty history
    attention[torch.arange(6) >= lengths.unsqueeze(-1)] = 0  # masked attention is zero on padding
    full = gru(inputs, attention, lengths)
    # the same rows alone, truncated to their length, give the same final state
    assert torch.all(full[2] == 0)
    for row, n in enumerate(lengths.tolist()):
        if n == 0:
            continue
        alone = gru(inputs[row : row + 1, :n], attention[row : row + 1, :n], lengths[row : row + 1])
        assert torch.allclose(full[row], alone[0], atol=1e-6)


def test_attentional_gru_matches_step_by_step_definition():
    """AUGRU: h_t = (1 − a_t·u_t)·h_{t−1} + a_t·u_t·h̃_t with GRU gates, written out naively."""
    from recbole_iacn.model.dien import AttentionalGRU

    torch.manual_seed(0)
    gru = AttentionalGRU(3, 4)
    x, a = torch.randn(2, 5, 3), torch.rand(2, 5)
    w_ih, b_ih = gru.input_projection.weight, gru.input_projection.bias
    w_hh, b_hh = gru.hidden_projection.weight, gru.hidden_projection.bias
    h = torch.zeros(2, 4)
    for t in range(5):
        gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = torch.sigmoid(gi[:, :4] + gh[:, :4])
        u = torch.sigmoid(gi[:, 4:8] + gh[:, 4:8])
        candidate = torch.tanh(gi[:, 8:] + r * gh[:, 8:])
        u = a[:, t : t + 1] * u
        h = (1 - u) * h + u * candidate
    assert torch.allclose(gru(x, a, torch.tensor([5, 5])), h, atol=1e-6)


def test_local_activation_unit_equals_concatenation_form():
    from recbole_iacn.model.layers import LocalActivationUnit

    torch.manual_seed(0)
    unit = LocalActivationUnit(6, 6, (8, 4), "sigmoid", softmax=True)
    q, k = torch.randn(3, 6), torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    qe = q.unsqueeze(1).expand_as(k)
    hidden = torch.sigmoid(unit.first(torch.cat([qe, k, qe - k, qe * k], -1)))
    raw = unit.score(unit.rest(hidden)).squeeze(-1).masked_fill(~mask, -1e30)
    expected = torch.softmax(raw, -1) * mask
    assert torch.allclose(unit.scores(q, k, mask), expected, atol=1e-6)


@pytest.mark.parametrize("fused, learner", [(True, "adam"), (True, "adamw"), (False, "adam"), (True, "sgd")])
def test_trainer_builds_fused_adam_when_configured(fused, learner, data_root, ml100k):
    from recbole_iacn.trainer import trainer_class

    config, model_class = model_config("DAIN", data_root, fused_optimizer=fused, learner=learner, weight_decay=0.01)
    model = model_class(config, ml100k.train_data._dataset)
    optimizer = trainer_class(config, plugin=True)(config, model).optimizer
    expected = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[learner]
    assert type(optimizer) is expected
    assert bool(optimizer.defaults.get("fused")) is (fused and learner != "sgd")
    assert optimizer.defaults["lr"] == config["learning_rate"] and optimizer.defaults["weight_decay"] == 0.01


def test_fused_adam_steps_like_recboles_adam(data_root, ml100k):
    from recbole_iacn.trainer import trainer_class

    batch = sample_batch(ml100k, 256)
    updated = []
    for fused in (True, False):
        config, model_class = model_config("DIN_IaCN", data_root, fused_optimizer=fused)
        torch.manual_seed(0)
        model = model_class(config, ml100k.train_data._dataset)
        trainer = trainer_class(config, plugin=True)(config, model)
        for _ in range(3):
            trainer.optimizer.zero_grad()
            sum(model.calculate_loss(batch)).backward()
            trainer.optimizer.step()
        updated.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    # Adam divides by sqrt(v) + eps: where v is tiny, the fused kernel's rounding moves a parameter
    # by up to a few % of one step's size (1.2e-5 seen on AMD EPYC at lr 1e-3); typically far less
    lr = config["learning_rate"]
    difference = (updated[0] - updated[1]).abs()
    assert difference.max() < 0.05 * lr
    assert difference.mean() < 1e-4 * lr


def test_float_field_vectors_start_defined_and_follow_embedding_init(data_root):
    """A float feature's learned vector: zero in a bare FeatureEmbedder (a host that never resets), drawn
    with std ``embedding_init_std`` by ``CTRModel.reset_parameters``."""
    from recbole_iacn.model.embedding import FeatureEmbedder, ItemEmbedding
    from recbole_iacn.model.schema import FeatureSchema, FieldInfo

    fields = {
        "user_id": FieldInfo("user_id", "token", "inter", 5, 1),
        "item_id": FieldInfo("item_id", "token", "inter", 7, 1),
        "label": FieldInfo("label", "float", "inter", 0, 1),
        "item_id_list": FieldInfo("item_id_list", "token_seq", "inter", 7, 4),
        "item_length": FieldInfo("item_length", "token", "inter", 0, 1),
        "price": FieldInfo("price", "float", "item", 0, 1),
    }
    schema = FeatureSchema("user_id", "item_id", "label", "item_id_list", "item_length", None, None, fields)
    bare = FeatureEmbedder(schema, 64, ItemEmbedding(7, 64))
    assert torch.equal(bare.item_fields.floats["price"], torch.zeros(64))
    config, model_class = model_config("DAIN", data_root, embedding_init="normal", embedding_init_std=0.5)
    torch.manual_seed(0)
    model = model_class(config, schema)
    vector = model.embedder.item_fields.floats["price"].detach()
    assert 0.35 < vector.std().item() < 0.65


# ------------------------------------------------------------------------------ activations and padding
def _loss_and_gradients(model, batch):
    model.train()
    model.zero_grad()
    torch.manual_seed(7)  # the same sampled negatives (DIEN, IaCN) on both sides
    loss = model.calculate_loss(batch)
    loss = sum(loss) if isinstance(loss, tuple) else loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _with_padding_changed(ml100k, batch_size, offset):
    batch = sample_batch(ml100k, batch_size, offset=offset)
    history, lengths = batch["item_id_list"], batch["item_length"]
    generator = torch.Generator().manual_seed(3)
    for r in torch.nonzero(lengths < history.shape[1]).squeeze(-1).tolist():
        free = history.shape[1] - int(lengths[r])
        batch["item_id_list"][r, int(lengths[r]):] = torch.randint(1, ml100k.dataset.item_num, (free,), generator=generator)
        batch["cate_id_list"][r, int(lengths[r]):] = torch.randint(1, ml100k.dataset.num("cate_id"), (free,), generator=generator)
    return batch


@pytest.mark.parametrize("name", ["DIN", "DIEN", "DIN_IaCN"])
@pytest.mark.parametrize("activation_name", ["relu", "prelu", "dice", "sigmoid", "tanh", "none"])
def test_padded_positions_change_neither_training_loss_nor_gradients(name, activation_name, ml100k, data_root):
    """Whatever ids sit in padded history slots, the training loss and every gradient are the same, for
    every attention activation (Dice's batch statistics included) and with batch norm in the DNN."""
    model, _ = build(name, ml100k, data_root, attention_activation=activation_name, dnn_activation="dice",
                     dnn_batch_norm=True)
    clean = sample_batch(ml100k, 256, offset=100)
    assert bool((clean["item_length"] < clean["item_id_list"].shape[1]).any()), "the sample needs padded rows"
    loss, grads = _loss_and_gradients(model, clean)
    loss_changed, grads_changed = _loss_and_gradients(model, _with_padding_changed(ml100k, 256, 100))
    assert torch.allclose(loss, loss_changed, rtol=0, atol=1e-6), (loss, loss_changed)
    assert grads.keys() == grads_changed.keys()
    for key in grads:
        assert torch.allclose(grads[key], grads_changed[key], rtol=1e-5, atol=1e-7), key


def test_prelu_learns_one_slope_per_hidden_unit_of_any_shape():
    from recbole_iacn.model.layers import PReLU, activation

    layer = activation("prelu", 4)
    assert isinstance(layer, PReLU) and layer.weight.shape == (4,)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    x = torch.tensor([-1.0, -2.0, 3.0, -4.0]).expand(2, 5, 4)  # [B, L, H]: L (5) differs from H (4)
    expected = torch.tensor([-0.1, -0.4, 3.0, -1.6]).expand(2, 5, 4)
    assert torch.allclose(layer(x), expected)
    assert torch.allclose(layer(x[0, 0]), expected[0, 0])  # [H]


def test_dice_statistics_come_from_real_behaviours_only():
    """The activation unit's Dice normalises with the moments of the valid behaviours: the scores equal
    those computed on the valid rows alone."""
    from recbole_iacn.model.layers import LocalActivationUnit

    torch.manual_seed(0)
    unit = LocalActivationUnit(6, 6, (8, 4), "dice", softmax=False).train()
    assert unit.uses_batch_statistics
    q, k = torch.randn(3, 6), torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    scores = unit.scores(q, k, mask)
    qe = q.unsqueeze(1).expand_as(k)[mask]
    hidden = unit.first(torch.cat([qe, k[mask], qe - k[mask], qe * k[mask]], -1))  # [9, 8]
    dice = unit.first_activation
    p = torch.sigmoid((hidden - hidden.mean(0)) / torch.sqrt(hidden.var(0, unbiased=False) + dice.norm.eps))
    expected = torch.zeros(3, 5)
    expected[mask] = unit.score(unit.rest(p * hidden + (1 - p) * dice.alpha * hidden)).squeeze(-1)
    assert torch.allclose(scores, expected, atol=1e-5)
    assert torch.all(scores[~mask] == 0)


def test_item_embedding_size_widens_e_orig_only(ml100k, data_root):
    """The width control: DIN with E_orig of d + d_aux has DIN_IaCN's item-vector width and host layers."""
    with_iacn, config = build("DIN_IaCN", ml100k, data_root)
    width = config["embedding_size"] + config["iacn_embedding_size"]
    wide, _ = build("DIN", ml100k, data_root, item_embedding_size=width)
    assert wide.embedder.item_embedding.table.weight.shape[1] == width
    assert wide.embedder.sequence_dim == with_iacn.embedder.sequence_dim
    host_shapes = lambda m: {n: p.shape for n, p in m.named_parameters() if not n.startswith(("embedder", "iacn"))}
    assert host_shapes(wide) == host_shapes(with_iacn)
    dien_wide, _ = build("DIEN", ml100k, data_root, item_embedding_size=width)
    dien_iacn, _ = build("DIEN_IaCN", ml100k, data_root)
    assert host_shapes(dien_wide) == host_shapes(dien_iacn)
    with pytest.raises(ConfigError, match="item_embedding_size"):
        model_config("DIN", data_root, item_embedding_size=0)


def test_dien_inner_product_auxiliary_classifier_is_the_papers(ml100k, data_root):
    """``aux_classifier: inner_product`` scores a (state, behaviour) pair as ``h_tᵀ e`` (DIEN paper eq. 2)."""
    model, config = build("DIEN", ml100k, data_root, aux_classifier="inner_product")
    assert model.embedder.sequence_dim == 16  # the default state is as wide as item ⊕ category
    assert model.aux_net is None and model.aux_output is None
    states, behaviours = torch.randn(2, 3, 16), torch.randn(2, 3, 16)
    assert torch.allclose(model.aux_logits(states, behaviours), (states * behaviours).sum(-1))
    loss = model.calculate_loss(sample_batch(ml100k, 64))
    assert len(loss) == 2 and torch.isfinite(loss[1]) and loss[1] > 0
    with pytest.raises(ConfigError, match="gru_hidden_size=24"):  # IaCN widens the behaviours, not the state
        build("DIEN_IaCN", ml100k, data_root, aux_classifier="inner_product")
    widened, _ = build("DIEN_IaCN", ml100k, data_root, aux_classifier="inner_product", gru_hidden_size=24)
    assert widened.aux_net is None
    with pytest.raises(ConfigError, match="aux_classifier"):
        model_config("DIEN", data_root, aux_classifier="dot")


def test_history_pooling_and_host_user_features(ml100k, data_root):
    """``history_pooling: sum`` adds the real behaviours (the DIEN authors' ``item_his_eb_sum``);
    ``host_user_features: false`` leaves the user id and profile out of the host (as RecBole's DIN)."""
    from recbole_iacn.model.embedding import CTRFeatures

    history = torch.arange(12.0).view(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    features = CTRFeatures(None, history, mask, None, None, None, history_pooling="sum")
    assert torch.equal(features.history_pooled(), history[0, :2].sum(0, keepdim=True))
    features.history_pooling = "mean"
    assert torch.equal(features.history_pooled(), history[0, :2].mean(0, keepdim=True))
    plain, _ = build("DIN", ml100k, data_root)
    no_user, _ = build("DIN", ml100k, data_root, host_user_features=False, history_pooling="sum")
    assert plain.embedder.user_fields.output_dim > 0 and no_user.embedder.user_fields.output_dim == 0
    batch = sample_batch(ml100k, 32)
    assert no_user.predict(batch).shape == (32,)
    changed = sample_batch(ml100k, 32)
    changed["user_id"] = torch.randint(1, ml100k.dataset.user_num, (32,))
    with torch.no_grad():
        assert torch.equal(no_user.eval().predict(batch), no_user.predict(changed))  # the user id is not read
    with pytest.raises(ConfigError, match="history_pooling"):
        model_config("DIN", data_root, history_pooling="max")
