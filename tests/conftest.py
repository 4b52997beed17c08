"""Shared fixtures: the embedded ml-100k as a CTR dataset, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ML1M_SAMPLE = SHARED_DATA / "ml-1m-sample"

#: The tiny SYNTHETIC dataset of the study and multi-process tests, the model they train, and its settings
#: (2 epochs on ~2,400 samples, embedding size 4).
SYN_DATASET = "syn"
SYN_MODEL = "DIN_IaCN"
SYN_TINY = {
    "epochs": 2,
    "embedding_size": 4,
    "iacn_embedding_size": 4,
    "MAX_ITEM_LIST_LENGTH": 10,
    "train_batch_size": 256,
    "eval_batch_size": 1024,
    "state": "WARNING",
    "show_progress": False,
}

#: Small settings so that every test trains in seconds on 2 CPU cores.
FAST = {
    "state": "WARNING",
    "show_progress": False,
    "epochs": 1,
    "embedding_size": 8,
    "iacn_embedding_size": 8,
    "MAX_ITEM_LIST_LENGTH": 10,
    "train_batch_size": 2048,
    "reproducibility": True,
}
#: FAST for a host without IaCN (which would warn that the IaCN settings have no effect on it)
FAST_HOST = {k: v for k, v in FAST.items() if not k.startswith("iacn_")}


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in the test process, as in a terminal. A shell without job control starts
    a background job with SIGINT ignored, and Python then keeps it ignored: the tests that send themselves a
    Ctrl-C (and the children they start, which inherit the disposition) would wait for nothing."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    """A data_path holding the dense CTR view of RecBole's bundled ml-100k (as the run path builds it)."""
    from recbole_iacn.data import build_from_atomic, default_ml100k_source

    root = tmp_path_factory.mktemp("data")
    source_dir, source_name = default_ml100k_source()
    build_from_atomic(source_dir, source_name, root / "ml-100k", "ml-100k", protocol="dense")
    return str(root)


@pytest.fixture(scope="session")
def syn_root(tmp_path_factory) -> str:
    """A data_path holding the tiny SYNTHETIC CTR dataset ``syn`` (no download, ~2,400 training samples)."""
    from recbole_iacn.data import build_synthetic

    root = tmp_path_factory.mktemp("syn-data")
    build_synthetic(root / SYN_DATASET, name=SYN_DATASET, scale=0.002, max_history=10)
    return str(root)


@pytest.fixture(scope="session")
def ml100k(data_root, tmp_path_factory):
    """The loaded ml-100k CTR dataset and its dataloaders (shared by the model tests)."""
    from recbole_iacn.pipeline import prepare

    checkpoints = tmp_path_factory.mktemp("saved")
    return prepare("DIN", "ml-100k", config_dict={**FAST, "data_path": data_root, "checkpoint_dir": str(checkpoints)})


def model_config(model: str, data_root: str, **overrides):
    """A full config for ``model`` on the ml-100k fixture."""
    from recbole_iacn.pipeline import make_config

    config, _, model_class = make_config(model, "ml-100k", config_dict={**FAST, "data_path": data_root, **overrides})
    return config, model_class


def sample_batch(prepared, size: int = 256, offset: int = 0):
    """``size`` real training samples (RecBole Interaction, joined with user/item features)."""
    import torch

    dataset = prepared.train_data._dataset
    return dataset[torch.arange(offset, offset + size)]


def configure_field_names(tmp_path, monkeypatch, **names):
    """Point RECBOLE_IACN_PROPERTIES at a copy of ``properties/`` whose overall.yaml names the fields ``names``
    (e.g. ``USER_ID_FIELD="uid"``); returns the copy's folder."""
    import re
    import shutil

    from recbole_iacn.properties import properties_dir

    props = tmp_path / "properties"
    shutil.copytree(properties_dir(), props)
    overall = props / "overall.yaml"
    text = overall.read_text(encoding="utf-8")
    for key, name in names.items():
        text, found = re.subn(rf"^{key}:[ \t]*[^ \t#\n]+", f"{key}: {name}", text, flags=re.MULTILINE)
        assert found == 1, f"{key} is not set in overall.yaml"
    overall.write_text(text, encoding="utf-8")
    monkeypatch.setenv("RECBOLE_IACN_PROPERTIES", str(props))
    return props


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """RecBole writes log/ and log_tensorboard/ into the working directory: keep them out of the repo."""
    monkeypatch.chdir(tmp_path)
    yield


def pytest_configure(config):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
