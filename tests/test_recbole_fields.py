"""IaCN on RecBole's context-aware models through two extra item fields (``<Name>_IaCN``,
recbole_iacn/model/fields.py): every attachable model, on a tiny generated CTR dataset (40 users, 60 items).

For each model of ``registry.attached_names()``: one training step, the δ/λ gradient identity on E_aux,
invariance to what sits in padded behaviour positions, a safe checkpoint round trip and ``predict()``; then the
width control and the model itself (``iacn_fields``), the declared exceptions and restrictions, a model attached
from outside, the command line and a δ × λ study through ``--tune``.
"""

from __future__ import annotations

import codecs
import csv
import fcntl
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_iacn import registry
from recbole_iacn.errors import AttachmentError, ConfigError

DATASET = "tiny"
REPO = Path(__file__).resolve().parents[1]
ATTACHED = registry.attached_names()
#: RecBole 1.2.1's context-aware models with IaCN attached: all 18 but the declared exceptions
EXPECTED = ["FM_IaCN", "FwFM_IaCN", "FNN_IaCN", "DeepFM_IaCN", "NFM_IaCN", "AFM_IaCN", "PNN_IaCN", "DCN_IaCN",
            "DCNV2_IaCN", "xDeepFM_IaCN", "AutoInt_IaCN", "FiGNN_IaCN", "recbole.WideDeep_IaCN", "DSSM_IaCN",
            "KD_DAGFM_IaCN", "EulerNet_IaCN"]
TINY = {
    "state": "WARNING",
    "show_progress": False,
    "epochs": 1,
    "embedding_size": 4,
    "MAX_ITEM_LIST_LENGTH": 8,
    "train_batch_size": 128,
    "eval_batch_size": 256,
    "iacn_mlp_hidden_size": [8],
    "iacn_num_negatives": 4,
    "reproducibility": True,
}


def write_tiny(root: Path, name: str = DATASET, seed: int = 0, users: int = 40, items: int = 60, categories: int = 5,
               rows=(400, 60, 60), max_len: int = 8) -> str:
    """A tiny CTR dataset (prepared files, as ``python -m recbole_iacn.data`` writes them): users with four
    profile fields, items with a category, behaviour lists of 0 to max_len + 2 items (so some rows are padded,
    some truncated, some empty), labels mostly 'the candidate's category is among the behaviours''."""
    rng = random.Random(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    category = {i: f"c{rng.randrange(categories)}" for i in range(1, items + 1)}
    lines = ["item_id:token\tcate_id:token"] + [f"i{i}\t{category[i]}" for i in range(1, items + 1)]
    (folder / f"{name}.item").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"] + [
        f"u{u}\t{rng.randrange(5)}\t{rng.choice('MF')}\to{rng.randrange(6)}\tz{rng.randrange(10)}"
        for u in range(1, users + 1)]
    (folder / f"{name}.user").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split, count in zip(("train", "valid", "test"), rows):
        lines = ["label:float\tuser_id:token\titem_id:token\titem_id_list:token_seq\tcate_id_list:token_seq"]
        for _ in range(count):
            history = [rng.randrange(1, items + 1) for _ in range(rng.randrange(0, max_len + 3))]
            item = rng.randrange(1, items + 1)
            label = int(category[item] in {category[h] for h in history}) if rng.random() < 0.8 else rng.randrange(2)
            lines.append(f"{label}\tu{rng.randrange(1, users + 1)}\ti{item}\t{' '.join(f'i{h}' for h in history)}\t"
                         f"{' '.join(category[h] for h in history)}")
        (folder / f"{name}.{split}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(root)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> str:
    return write_tiny(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="module")
def tiny(tiny_root, tmp_path_factory):
    """The tiny dataset loaded once (the data does not depend on the model)."""
    from recbole_iacn.pipeline import prepare

    saved = tmp_path_factory.mktemp("saved")
    return prepare("DeepFM_IaCN", DATASET, config_dict={**TINY, "data_path": tiny_root, "checkpoint_dir": str(saved)})


_CONFIGS: dict = {}


def build(name, tiny, tiny_root, seed=0, **overrides):
    """``name`` built on the tiny dataset, with its config (configs cached: building one reads every YAML)."""
    from recbole_iacn.pipeline import make_config

    key = (name, tuple(sorted((k, repr(v)) for k, v in overrides.items())))
    if key not in _CONFIGS:
        _CONFIGS[key] = make_config(name, DATASET, config_dict={**TINY, "data_path": tiny_root,
                                                                "checkpoint_dir": str(Path(tiny_root) / "saved"),
                                                                **overrides})
    config, _, model_class = _CONFIGS[key]
    torch.manual_seed(seed)
    return model_class(config, tiny.train_data._dataset), config


def batch_of(tiny, size=96, offset=0):
    dataset = tiny.train_data._dataset
    return dataset[torch.arange(offset, offset + size)]


def total(loss):
    return sum(loss) if isinstance(loss, tuple) else loss


def with_padding_changed(tiny, size=96, offset=0):
    """The same rows, with random real ids in every padded behaviour position."""
    batch = batch_of(tiny, size, offset)
    history, lengths = batch["item_id_list"], batch["item_length"]
    generator = torch.Generator().manual_seed(3)
    items, categories = tiny.dataset.item_num, tiny.dataset.num("cate_id")
    for row in torch.nonzero(lengths < history.shape[1]).squeeze(-1).tolist():
        free = history.shape[1] - int(lengths[row])
        batch["item_id_list"][row, int(lengths[row]):] = torch.randint(1, items, (free,), generator=generator)
        batch["cate_id_list"][row, int(lengths[row]):] = torch.randint(1, categories, (free,), generator=generator)
    return batch


def loss_and_gradients(model, batch):
    model.train()
    model.zero_grad()
    torch.manual_seed(7)  # the same dropout masks and sampled negatives on both sides
    loss = total(model.calculate_loss(batch))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------------------ the registry
def test_every_context_aware_model_but_the_declared_exceptions_is_attached():
    assert ATTACHED == EXPECTED
    assert set(registry.RECBOLE_EXCEPTIONS) == {"LR", "FFM"}
    named = {n[len("recbole."):] if n.startswith("recbole.") else n for n in ATTACHED}
    assert {n[: -len("_IaCN")] for n in named} | set(registry.RECBOLE_EXCEPTIONS) == set(registry.RECBOLE_CONTEXT_MODELS)
    spec = registry.get_spec("DeepFM_IaCN")
    assert spec.kind == "recbole" and spec.host == "DeepFM" and spec.label == "DeepFM + IaCN"
    assert spec.config_files[-2:] == (registry.IACN_CONFIG, registry.FIELDS_CONFIG)
    assert spec.config_files[0].endswith("/recbole/properties/model/DeepFM.yaml")
    # our WideDeep shadows RecBole's: RecBole's with IaCN is recbole.WideDeep_IaCN
    assert registry.get_spec("WideDeep_IaCN").kind == "host"
    assert registry.get_spec("recbole.WideDeep_IaCN").host == "recbole.WideDeep"
    assert registry.get_spec("recbole.DeepFM_IaCN") is spec  # recbole.<Name>_IaCN reaches the same model
    assert registry.host_model_names() == ["DIN", "DIN_IaCN", "DIEN", "DIEN_IaCN", "WideDeep", "WideDeep_IaCN",
                                           "DAIN", "DAIN_IaCN"]


def test_help_lists_the_attached_models(capsys):
    from recbole_iacn import cli

    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ATTACHED)
    assert cli.main(["--model=DCN_IaCN", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--iacn_fields" in out and "--iacn_delta" in out and "cross_layer_num" in out


@pytest.mark.parametrize("name", ["FFM_IaCN", "LR_IaCN", "recbole.FFM_IaCN"])
def test_a_declared_exception_is_a_clear_error_naming_its_reason(name, capsys):
    from recbole_iacn import cli

    with pytest.raises(AttachmentError, match="cannot be built: (FFM embeds each field once per other field|LR "
                                              "reads every field through one first-order weight)"):
        registry.resolve(name)
    assert cli.main([f"--model={name}", f"--dataset={DATASET}"]) == 2
    assert "cannot be built" in capsys.readouterr().err


def test_classes_that_cannot_take_iacn_are_refused_when_derived():
    from recbole.utils import get_model

    from recbole_iacn.model.fields import with_iacn_fields

    class MyFFM(get_model("FFM")):
        pass

    with pytest.raises(AttachmentError, match="field-aware"):
        with_iacn_fields(MyFFM)  # a subclass of an exception too
    with pytest.raises(AttachmentError, match="not a RecBole context-aware model"):
        with_iacn_fields(get_model("BPR"))
    with pytest.raises(AttachmentError, match="already carries IaCN"):
        with_iacn_fields(registry.resolve("DeepFM_IaCN")[1])


# ------------------------------------------------------------------------------ every attached model
@pytest.mark.parametrize("name", ATTACHED)
def test_one_training_step(name, tiny, tiny_root):
    """The extra fields are counted among the model's fields; one Adam step moves E_aux and the model."""
    model, config = build(name, tiny, tiny_root)
    with_fields = [f for f in ("item_id_iacn", "item_id_list_iacn")
                   if f in model.token_field_names or f in model.token_seq_field_names]
    assert "item_id_iacn" in with_fields  # (DSSM reads no interaction field: not the behaviours' one)
    assert model.loss_names == ("main", "iacn")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = model.calculate_loss(batch_of(tiny, 128))
    assert isinstance(losses, tuple) and len(losses) == 2 and all(torch.isfinite(x) for x in losses)
    optimizer.zero_grad()
    total(losses).backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert "iacn.aux_item_embedding.weight" in moved and "iacn.routing.bilinear.weight" in moved
    assert any(not n.startswith("iacn.") for n in moved)


@pytest.mark.parametrize("delta, lam", [(0.3, 1.0), (0.0, 0.5), (1.0, 0.5), (0.3, 0.0)])
@pytest.mark.parametrize("name", ATTACHED)
def test_delta_lambda_gradient_identity_on_e_aux(name, delta, lam, tiny, tiny_root):
    """g(E_aux) = (1 − δ)·∂(λL_IaCN)/∂E_aux + δ·∂L_main/∂E_aux; every parameter of RecBole's model gets
    ∂L_main only, every other parameter of the capsule network ∂(λL_IaCN) only (tests/test_iacn.py's identity
    for our hosts, on the RecBole models)."""
    model, _ = build(name, tiny, tiny_root)
    model.iacn.weight = lam
    batch = batch_of(tiny, 96, offset=100)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def gradients(d, main_weight, aux_weight):
        model.load_state_dict(state)
        model.train()
        model.zero_grad()
        model.iacn.delta = d
        torch.manual_seed(11)  # dropout masks and sampled negatives alike in every pass
        main, aux = model.calculate_loss(batch)
        (main_weight * main + aux_weight * aux).backward()
        return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}

    trained = gradients(delta, 1.0, 1.0)  # what training does
    main_only = gradients(1.0, 1.0, 0.0)  # δ = 1 lets the main gradient through untouched
    aux_only = gradients(0.0, 0.0, 1.0)  # δ = 0 the auxiliary one
    table = "iacn.aux_item_embedding.weight"
    assert torch.allclose(trained[table], (1 - delta) * aux_only[table] + delta * main_only[table], atol=1e-7, rtol=1e-5)
    assert main_only[table].abs().sum() > 0
    if lam > 0:
        assert aux_only[table].abs().sum() > 0
    for n in trained:
        if n == table:
            continue
        if n.startswith("iacn."):  # the capsule network: the auxiliary loss only
            assert torch.allclose(trained[n], aux_only[n], atol=1e-7, rtol=1e-5), n
            assert torch.all(main_only[n] == 0), n
        else:  # RecBole's model: its own loss only
            assert torch.allclose(trained[n], main_only[n], atol=1e-7, rtol=1e-5), n
            assert torch.all(aux_only[n] == 0), n


@pytest.mark.parametrize("name", ATTACHED)
def test_padded_positions_change_nothing(name, tiny, tiny_root):
    """Whatever ids sit past a row's item_length, predictions, the training loss and every gradient are the
    same (RecBole masks token_seq fields by id 0 only; the attachment zeroes the padded positions)."""
    model, _ = build(name, tiny, tiny_root)
    clean = batch_of(tiny, 96)
    assert bool((clean["item_length"] < clean["item_id_list"].shape[1]).any())
    changed = with_padding_changed(tiny, 96)
    assert not torch.equal(clean["item_id_list"], changed["item_id_list"])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.predict(clean), model.predict(changed), rtol=0, atol=1e-6)
    loss, grads = loss_and_gradients(model, clean)
    model.load_state_dict(state)
    loss_changed, grads_changed = loss_and_gradients(model, changed)
    assert torch.allclose(loss, loss_changed, rtol=0, atol=1e-6)
    assert grads.keys() == grads_changed.keys()
    for key in grads:
        assert torch.allclose(grads[key], grads_changed[key], rtol=1e-5, atol=1e-7), key


@pytest.mark.parametrize("name", ATTACHED)
def test_safe_checkpoint_round_trip_and_predict(name, tiny, tiny_root, tmp_path):
    """predict() gives one probability per sample, deterministic in eval mode; a checkpoint (weights-only,
    the config and the schema as plain data) restores a model that predicts the same, from tensors and from
    raw tokens."""
    from recbole_iacn.quick_start import load_model
    from recbole_iacn.trainer import trainer_class

    model, config = build(name, tiny, tiny_root)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(2):  # trained a little: restored weights must differ from fresh ones
        optimizer.zero_grad()
        total(model.calculate_loss(batch_of(tiny, 128))).backward()
        optimizer.step()
    model.eval()
    batch = batch_of(tiny, 64, offset=200)
    with torch.no_grad():
        scores = model.predict(batch)
        assert scores.shape == (64,) and torch.all((scores >= 0) & (scores <= 1))
        assert torch.equal(scores, model.predict(batch))
    trainer = trainer_class(config, plugin=True)(config, model)
    path = tmp_path / "model.pth"
    trainer._save_checkpoint(0, verbose=False, saved_model_file=str(path))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "recbole-iacn/1" and raw["model"] == name and isinstance(raw["schema"], dict)
    torch.manual_seed(12345)  # a restore draws nothing that the checkpoint does not overwrite
    restored = load_model(path)
    assert type(restored.model).__name__ == name
    with torch.no_grad():
        assert torch.equal(restored.model.predict(batch), scores)
    dataset = tiny.dataset
    records = []
    for i in range(8):
        record = {f: dataset.id2token(f, batch[f][i].item()) for f in ("user_id", "item_id", "age", "gender",
                                                                      "occupation", "zip_code")}
        for field, vocab in (("item_id_list", "item_id"), ("cate_id_list", "cate_id")):
            ids = batch[field][i][: int(batch["item_length"][i])].tolist()
            record[field] = " ".join(str(dataset.id2token(vocab, x)) for x in ids)
        records.append(record)
    assert torch.allclose(restored.predict(records), scores[:8], atol=1e-6)


# ------------------------------------------------------------------------------ the width control and the model itself
@pytest.mark.parametrize("name", ["DeepFM_IaCN", "DSSM_IaCN", "recbole.WideDeep_IaCN"])
def test_width_control_has_the_same_fields_from_a_plain_table(name, tiny, tiny_root):
    """iacn_fields: plain feeds the same extra fields from a plain item table (same shape, same
    initialisation, no δ, no auxiliary loss); none is RecBole's model itself on the CTR view."""
    with_iacn, _ = build(name, tiny, tiny_root)
    control, _ = build(name, tiny, tiny_root, iacn_fields="plain")
    itself, _ = build(name, tiny, tiny_root, iacn_fields="none")
    assert control.iacn is None and control.loss_names == ("main",)
    assert control.num_feature_field == with_iacn.num_feature_field == itself.num_feature_field + len(
        with_iacn._iacn_lookups)
    recbole_shapes = {n: p.shape for n, p in with_iacn.named_parameters() if not n.startswith("iacn.")}
    control_shapes = {n: p.shape for n, p in control.named_parameters() if n != "iacn_item_table.weight"}
    assert recbole_shapes == control_shapes
    assert control.iacn_item_table.weight.shape == with_iacn.iacn.aux_item_embedding.weight.shape
    # the same seed draws the same RecBole weights for both, and the table from the same distribution
    for n, p in control.named_parameters():
        if n in recbole_shapes:
            assert torch.equal(p, dict(with_iacn.named_parameters())[n]), n
    assert not any("iacn" in n for n, _ in itself.named_parameters())
    batch = batch_of(tiny, 64)
    control.train()
    loss = control.calculate_loss(batch)
    assert torch.is_tensor(loss) and loss.dim() == 0
    loss.backward()
    assert control.iacn_item_table.weight.grad.abs().sum() > 0
    with torch.no_grad():
        itself.eval()
        assert itself.predict(batch).shape == (64,)


def test_iacn_embedding_size_must_match_the_fields(tiny, tiny_root):
    with pytest.raises(ConfigError, match="embeds every field as one embedding_size vector"):
        build("DeepFM_IaCN", tiny, tiny_root, iacn_embedding_size=6)
    model, _ = build("DeepFM_IaCN", tiny, tiny_root, iacn_embedding_size=4)
    assert model.iacn.aux_item_embedding.weight.shape[1] == 4


@pytest.mark.parametrize("key, value, message", [("teacher", "__import__('os').getcwd", "eval"),
                                                 ("phase", "distillation", "warm_up")])
def test_kd_dagfm_settings_that_would_run_code_or_read_files_are_refused(key, value, message, tiny, tiny_root):
    with pytest.raises(AttachmentError, match=message):
        build("KD_DAGFM_IaCN", tiny, tiny_root, **{key: value})


def test_fwfm_untrained_field_weights_are_kept_in_the_state_dict(tiny, tiny_root):
    model, _ = build("FwFM_IaCN", tiny, tiny_root)
    assert "weight" in dict(model.named_buffers()) and "weight" in model.state_dict()


# ------------------------------------------------------------------------------ attached from outside
def test_a_model_not_named_here_is_attached_trained_and_restored(tiny_root, tmp_path, monkeypatch, capsys):
    """A ContextRecommender of one's own takes IaCN through register_recbole, with no code for it: trained by
    the command line, restored by load_model."""
    import recbole_iacn.model.fields as fields
    from recbole.model.abstract_recommender import ContextRecommender
    from recbole.model.layers import MLPLayers
    from torch import nn

    from recbole_iacn import cli
    from recbole_iacn.quick_start import load_model

    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    monkeypatch.setattr(registry, "_ATTACHED", list(registry._ATTACHED))
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)

    class MeanField(ContextRecommender):
        """The mean of the field embeddings, then an MLP."""

        def __init__(self, config, dataset):
            super().__init__(config, dataset)
            self.mlp = MLPLayers([self.embedding_size * self.num_feature_field, 8, 1])
            self.loss = nn.BCEWithLogitsLoss()

        def forward(self, interaction):
            x = self.concat_embed_input_fields(interaction)
            return self.mlp(x.flatten(1)).squeeze(-1)

        def calculate_loss(self, interaction):
            return self.loss(self.forward(interaction), interaction[self.LABEL])

        def predict(self, interaction):
            return torch.sigmoid(self.forward(interaction))

    spec = registry.register_recbole(MeanField)
    assert spec.name == "MeanField_IaCN" and registry.attached_names()[-1] == "MeanField_IaCN"
    args = [f"--{k}={v}" for k, v in {**TINY, "checkpoint_dir": str(tmp_path / "saved")}.items()]
    assert cli.main(["--model=MeanField_IaCN", f"--dataset={DATASET}", f"--data_path={tiny_root}", *args]) == 0
    out = capsys.readouterr().out
    assert "test result: auc :" in out
    checkpoint = out.split("checkpoint: ")[1].split()[0]
    restored = load_model(checkpoint)
    assert type(restored.model).__name__ == "MeanField_IaCN" and restored.model.num_feature_field == 11
    fields._DERIVED.pop(MeanField, None)


def test_a_model_that_never_reads_the_fields_is_a_clear_error(tiny, tiny_root, monkeypatch):
    """A model that counts the extra fields but never embeds them (here FM reduced to its first-order part, as
    LR is) fails at its first step, naming why, instead of training without E_aux."""
    from recbole.utils import get_model

    import recbole_iacn.model.fields as fields

    class FirstOrderOnly(get_model("FM")):
        def forward(self, interaction):
            return self.first_order_linear(interaction).squeeze(-1)

    _, config = build("FM_IaCN", tiny, tiny_root)
    model = fields.with_iacn_fields(FirstOrderOnly)(config, tiny.train_data._dataset)
    with pytest.raises(AttachmentError, match="never read their embeddings"):
        model.calculate_loss(batch_of(tiny, 32))
    fields._DERIVED.pop(FirstOrderOnly, None)


# ------------------------------------------------------------------------------ the command line and a study
def test_the_command_line_trains_the_model_the_control_and_itself(tiny_root, tmp_path, capsys):
    from recbole_iacn import cli

    args = [f"--{k}={v}" for k, v in {**TINY, "checkpoint_dir": str(tmp_path / "saved")}.items()]
    for mode in ("iacn", "plain", "none"):
        assert cli.main(["--model=DCN_IaCN", f"--dataset={DATASET}", f"--data_path={tiny_root}",
                         f"--iacn_fields={mode}", *args]) == 0, capsys.readouterr().err
        assert "test result: auc :" in capsys.readouterr().out


def test_a_delta_lambda_study_runs_through_tune(tiny_root, tmp_path, capsys):
    """--tune over a RecBole model with IaCN attached: a δ × λ grid (2 × 1, the cost of tests/test_tune.py's
    study), one epoch per trial; the best trial's checkpoint restores."""
    ray = pytest.importorskip("ray")
    import pandas as pd

    from recbole_iacn import cli
    from recbole_iacn.quick_start import load_model

    space = tmp_path / "space.yaml"
    space.write_text("search: grid\nscheduler: fifo\nmax_concurrent_trials: 2\nresources_per_trial: {cpu: 1, gpu: 0}\n"
                     "params:\n  iacn_delta: {grid_search: [0.1, 0.9]}\n  iacn_lambda: {grid_search: [0.5]}\n",
                     encoding="utf-8")
    # a Ray of this test's own (address "local"), even where another process runs a cluster on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        status = cli.main(["--model=FM_IaCN", f"--dataset={DATASET}", f"--data_path={tiny_root}", f"--tune={space}",
                           "--tune_storage=results", "--tune_name=fm", "--tune_verbose=0",
                           *[f"--{k}={v}" for k, v in TINY.items()]])
    finally:
        ray.shutdown()
    out, err = capsys.readouterr()
    assert status == 0, err
    table = pd.read_csv(tmp_path / "results" / "fm" / "results.csv")
    assert len(table) == 2 and set(table["status"]) == {"finished"}
    assert sorted(zip(table["iacn_delta"], table["iacn_lambda"])) == [(0.1, 0.5), (0.9, 0.5)]
    assert table["test_auc"].between(0, 1).all()
    best = table.loc[table["valid_auc"].idxmax()]
    restored = load_model(best["checkpoint"])
    assert type(restored.model).__name__ == "FM_IaCN" and restored.model.iacn.delta == best["iacn_delta"]


# ------------------------------------------------------------------------------ the screen (benchmarks/recbole_screen.py)
def test_screen_plans_extends_and_corrects_for_the_number_of_models():
    """recbole_screen.py's planning and seed extension, and the Holm correction of benchmarks/stats.py, by their
    docstring examples (pytest's doctest runner, in a process of its own: no test imports benchmarks/)."""
    examples = ["benchmarks/recbole_screen.py::benchmarks.recbole_screen.plan",
                "benchmarks/recbole_screen.py::benchmarks.recbole_screen.to_extend",
                "benchmarks/recbole_screen.py::benchmarks.recbole_screen.at_cap",
                "benchmarks/stats.py::benchmarks.stats.holm"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--doctest-modules",
                           *examples], cwd=REPO, capture_output=True, text=True, timeout=600)
    outcomes = dict((m.group(2), m.group(1)) for m in re.finditer(r"^(PASSED|FAILED|ERROR) (\S+)", done.stdout, re.M))
    assert outcomes == {e: "PASSED" for e in examples}, done.stdout[-4000:] + done.stderr[-2000:]


def test_screen_appends_each_run_and_resumes(tiny_root, tmp_path):
    """One model × 3 variants × 1 seed on the tiny dataset, as a command; run again, nothing is trained twice."""
    out = tmp_path / "screen"
    command = [sys.executable, str(REPO / "benchmarks" / "recbole_screen.py"), "--dataset", DATASET, "--data_path",
               str(tiny_root), "--models", "FM_IaCN", "--seeds", "1", "--extend-to", "1", "--epochs", "1",
               "--stopping-step", "1", "--out", str(out), "--config_dict", "embedding_size=4", "MAX_ITEM_LIST_LENGTH=8",
               "train_batch_size=128", "iacn_mlp_hidden_size=[8]"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def rows():
        with open(out / "runs.csv", encoding="utf-8", newline="") as f:
            return list(csv.DictReader(line for line in f if not line.startswith("#")))

    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert [(r["variant"], r["error"]) for r in rows()] == [("itself", ""), ("wide", ""), ("iacn", "")]
    assert all(0 <= float(r["test_auc"]) <= 1 for r in rows()) and [r["iacn_fields"] for r in rows()] == [
        "none", "plain", "iacn"]
    assert "IaCN helps beyond width" in (out / "screen.md").read_text(encoding="utf-8")
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "3 of 3 runs already in" in again.stdout, again.stderr[-3000:]
    assert len(rows()) == 3
    assert sorted(p.name for p in out.iterdir()) == [".lock", "runs.csv", "screen.md"]  # no partial file left
    with open(out / ".lock", "w", encoding="utf-8") as lock:  # a screen is writing to the folder: a second stops
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1 and f"Another benchmark is writing to {out}" in refused.stderr
    assert len(rows()) == 3 and "Traceback" not in refused.stderr

    runs = out / "runs.csv"
    written = runs.read_bytes()
    runs.write_bytes(codecs.BOM_UTF8 + written)  # saved by a spreadsheet: the same rows, nothing trained again
    bom = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert bom.returncode == 0 and "3 of 3 runs already in" in bom.stdout, bom.stderr[-3000:]
    lines = written.splitlines(keepends=True)
    last = len(lines)  # the iacn row, the file's last line
    damaged = {"a seed that is not a number": (lines[-1].replace(b",iacn,2020,", b",iacn,20x0,"),
                                               "seed '20x0' is not a whole number"),
               "a row cut short": (lines[-1][:30] + b"\n", "cells where the header has"),
               "bytes that are not UTF-8": (b"\xff\xfe" + lines[-1], "not UTF-8 text")}
    for case, (row, reason) in damaged.items():
        assert row != lines[-1], case
        runs.write_bytes(b"".join(lines[:-1]) + row)
        bad = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert bad.returncode == 2 and f"{runs}:{last}: malformed line: " in bad.stderr, (case, bad.stderr[-3000:])
        assert reason in bad.stderr and "Traceback" not in bad.stderr, (case, bad.stderr[-3000:])
        assert runs.read_bytes() == b"".join(lines[:-1]) + row, case  # left as it was, nothing trained or appended
    for option, value, reason in (("--epochs", "0", "0 is below 1"), ("--seeds", "two", "'two' is not a whole number"),
                                  ("--alpha", "1.5", "1.5 is not between 0 and 1")):
        usage = subprocess.run([*command, option, value], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=600)
        assert usage.returncode == 2 and f"argument {option}: {reason}" in usage.stderr, usage.stderr[-3000:]


def test_a_host_cannot_take_the_name_of_an_attached_models_variant(monkeypatch):
    from recbole_iacn.errors import RegistrationError

    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    with pytest.raises(RegistrationError, match="'DeepFM_IaCN' is taken"):
        registry.register("my_models:DeepFM", config_files=["model/DIN.yaml"])
    assert registry.get_spec("DeepFM_IaCN").kind == "recbole"
