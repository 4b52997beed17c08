"""The tensor data loader (``data_loader: tensor``) against RecBole's loaders on the same ml-100k splits."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from recbole.data.dataloader import NegSampleEvalDataLoader, TrainDataLoader
from recbole.data.interaction import Interaction

from recbole_iacn.data.loader import SplitColumns, TensorEvalLoader, TensorTrainLoader, storage_device
from recbole_iacn.errors import ConfigError
from recbole_iacn.pipeline import prepare
from recbole_iacn.trainer import trainer_class
from tests.conftest import FAST, model_config

ROW = "row_index"


def with_row_index(split):
    """``split`` with a column holding each row's position, so batches can be matched row by row."""
    inter = split.inter_feat
    return split.copy(Interaction({**inter.interaction, ROW: torch.arange(len(inter))}))


def concat(batches) -> dict:
    fields = batches[0].interaction.keys()
    return {k: torch.cat([b[k] for b in batches]) for k in fields}


def by_row(columns: dict) -> dict:
    order = torch.argsort(columns[ROW])
    return {k: v[order] for k, v in columns.items()}


@pytest.fixture(scope="module")
def widedeep_recbole(data_root, tmp_path_factory):
    """WideDeep on ml-100k through RecBole's loaders (``data_loader: recbole``), 2 epochs."""
    settings = {**FAST, "epochs": 2, "data_path": data_root, "data_loader": "recbole",
                "checkpoint_dir": str(tmp_path_factory.mktemp("saved"))}
    return prepare("WideDeep", "ml-100k", config_dict=settings)


@pytest.fixture(scope="module")
def train_split(ml100k):
    return with_row_index(ml100k.train_data._dataset)


def test_the_tensor_loader_is_the_default(ml100k):
    assert ml100k.config["data_loader"] == "tensor"
    assert isinstance(ml100k.train_data, TensorTrainLoader)
    assert isinstance(ml100k.valid_data, TensorEvalLoader) and isinstance(ml100k.test_data, TensorEvalLoader)


def test_an_epoch_visits_every_training_row_once(ml100k, train_split):
    loader = TensorTrainLoader(ml100k.config, train_split, shuffle=True)
    batches = list(loader)
    rows = torch.cat([b[ROW] for b in batches])
    size = ml100k.config["train_batch_size"]
    assert len(batches) == len(loader) == -(-len(train_split) // size)
    assert all(len(b) == size for b in batches[:-1]) and 0 < len(batches[-1]) <= size
    assert torch.equal(torch.sort(rows).values, torch.arange(len(train_split)))
    assert not torch.equal(rows, torch.arange(len(train_split)))  # shuffled


def test_the_same_seed_gives_the_same_batches_and_each_epoch_a_new_order(ml100k, train_split):
    first, second = (TensorTrainLoader(ml100k.config, train_split, shuffle=True) for _ in range(2))
    epoch_1 = [b[ROW] for b in first]
    assert all(torch.equal(a, b[ROW]) for a, b in zip(epoch_1, second))
    epoch_2 = [b[ROW] for b in first]
    assert not torch.equal(torch.cat(epoch_1), torch.cat(epoch_2))


def test_batches_hold_the_fields_and_values_of_recboles_loader(ml100k, train_split):
    ours = by_row(concat(list(TensorTrainLoader(ml100k.config, train_split, shuffle=True))))
    theirs = by_row(concat(list(TrainDataLoader(ml100k.config, train_split, None, shuffle=True))))
    assert sorted(ours) == sorted(theirs)
    assert {"item_id_list", "item_length", "cate_id", "age", "gender", "occupation", "zip_code"} <= set(ours)
    for field in theirs:
        assert ours[field].dtype == theirs[field].dtype, field
        assert torch.equal(ours[field], theirs[field]), field


def test_evaluation_batches_are_recboles_in_the_same_order(ml100k):
    split = ml100k.valid_data._dataset
    ours = list(TensorEvalLoader(ml100k.config, split))
    theirs = list(NegSampleEvalDataLoader(ml100k.config, split, None, shuffle=False))
    assert len(ours) == len(theirs)
    for (a, *rest_a), (b, *rest_b) in zip(ours, theirs):
        assert rest_a == rest_b == [None, None, None]
        assert sorted(a.interaction) == sorted(b.interaction)
        assert all(torch.equal(a[k], b[k]) for k in b.interaction)


@pytest.mark.parametrize("model", ["DIN_IaCN"])
def test_evaluation_gives_the_same_auc_and_logloss_through_either_loader(model, ml100k, data_root):
    config, model_class = model_config(model, data_root)
    torch.manual_seed(0)
    net = model_class(config, ml100k.train_data._dataset)
    trainer = trainer_class(config, plugin=True)(config, net)
    split = ml100k.valid_data._dataset
    ours = trainer.evaluate(TensorEvalLoader(config, split), load_best_model=False)
    theirs = trainer.evaluate(NegSampleEvalDataLoader(config, split, None, shuffle=False), load_best_model=False)
    assert set(ours) == {"auc", "logloss"}
    assert ours == theirs


def test_two_epochs_through_either_loader_reach_the_same_auc_within_noise(widedeep_recbole):
    """WideDeep (the fastest host to train), 2 epochs on the same splits: seeds spread its test AUC by
    ~0.01 at this point, and the two loaders shuffle differently."""
    from recbole_iacn.quick_start import run

    config = widedeep_recbole.config
    splits = [loader._dataset for loader in (widedeep_recbole.train_data, widedeep_recbole.valid_data, widedeep_recbole.test_data)]
    tensor = dataclasses.replace(
        widedeep_recbole,
        train_data=TensorTrainLoader(config, splits[0], shuffle=True),
        valid_data=TensorEvalLoader(config, splits[1]),
        test_data=TensorEvalLoader(config, splits[2]),
    )
    auc = {name: run("WideDeep", "ml-100k", prepared=prepared, saved=False)["test_result"]["auc"]
           for name, prepared in (("tensor", tensor), ("recbole", widedeep_recbole))}
    assert auc["tensor"] > 0.65 and auc["recbole"] > 0.65, auc
    assert abs(auc["tensor"] - auc["recbole"]) < 0.02, auc


# ------------------------------------------------------------------------------ settings and placement
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data_loader": "pandas"}, "data_loader expects one of tensor, recbole"),
        ({"data_device_memory_fraction": 1.5}, r"data_device_memory_fraction expects a number in \[0, 1\]"),
        ({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}, "train_neg_sample_args"),
    ],
)
def test_bad_loader_settings_are_config_errors(overrides, message, data_root):
    with pytest.raises(ConfigError, match=message):
        model_config("DIN", data_root, **overrides)


def test_recbole_loaders_stay_available(widedeep_recbole):
    assert isinstance(widedeep_recbole.train_data, TrainDataLoader)
    assert isinstance(widedeep_recbole.valid_data, NegSampleEvalDataLoader)


def test_the_loader_choice_is_made_in_one_place(data_root, monkeypatch):
    """pipeline.choose_loader: the data_loader setting in one process; RecBole's loaders for RecBole's models and in
    a rank of a multi-process run (single_spec false) whatever data_loader says, and the rank's config records it."""
    from recbole_iacn.pipeline import choose_loader

    config, _ = model_config("DIN", data_root)
    assert config["data_loader"] == "tensor" and choose_loader(config, plugin=True) == "tensor"
    assert choose_loader(config, plugin=False) == "recbole"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a rank's config sets it (from gpu_id): restored after the test
    rank, _ = model_config("DIN", data_root, local_rank=0, nproc=2, world_size=2, use_gpu=False)
    assert rank["single_spec"] is False and rank["data_loader"] == "recbole"
    assert choose_loader(rank, plugin=True) == "recbole"


def test_columns_stay_on_the_host_when_they_do_not_fit_the_accelerator(monkeypatch, caplog):
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * gib, 80 * gib))
    cuda = torch.device("cuda")
    assert storage_device(1 * gib, cuda, 0.5) == cuda
    with caplog.at_level(logging.WARNING):
        assert storage_device(3 * gib, cuda, 0.5) == torch.device("cpu")
    assert "stays in pinned host memory" in caplog.text
    assert storage_device(3 * gib, torch.device("cpu"), 0.0) == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fraction", [0.5, 0.0])  # on the device; in pinned host memory
def test_cuda_batches_equal_cpu_batches(ml100k, train_split, fraction):
    cpu = SplitColumns(train_split, "cpu")
    cuda = SplitColumns(train_split, "cuda", fraction)
    assert cuda.home.type == ("cuda" if fraction else "cpu")
    assert fraction or all(c.is_pinned() for c in cuda.columns.values())
    index = torch.randperm(len(cpu))[:1000]
    ours = cuda.rows(index.to(cuda.home))
    expected = cpu.rows(index)
    assert all(ours[k].device.type == "cuda" and torch.equal(ours[k].cpu(), expected[k]) for k in expected.interaction)
    span = cuda.span(10, 2000)
    assert all(torch.equal(span[k].cpu(), cpu.span(10, 2000)[k]) for k in expected.interaction)
