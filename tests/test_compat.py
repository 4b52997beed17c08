"""Each compatibility fix of recbole_iacn/compat.py, shown against the problem it fixes."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_iacn import checkpoint, compat
from recbole_iacn.errors import CheckpointError, CompatibilityError


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- numpy 2
def test_recbole_config_breaks_on_numpy_2_without_the_fix():
    result = run_python("from recbole.config import Config; Config.compatibility_settings(None)")
    assert result.returncode != 0 and "float_" in result.stderr


def test_numpy_aliases_are_added_only_where_missing(monkeypatch):
    monkeypatch.delattr(np, "float", raising=False)
    monkeypatch.delattr(np, "float_", raising=False)
    kept = np.bool
    added = compat.install_numpy_aliases()
    assert "float" in added and np.float is np.float64 and np.float_ is np.float64
    assert np.bool is kept  # existing attributes are never replaced
    assert compat.install_numpy_aliases() == []


def test_recbole_metrics_that_use_np_float_work():
    compat.apply()
    from recbole.evaluator.metrics import NDCG  # uses np.float inside

    metric = NDCG({"metric_decimal_place": 4, "topk": [2]})
    pos_index = np.array([[True, False], [False, True]])
    result = metric.metric_info(pos_index, np.array([1, 1]))
    assert np.allclose(result[:, 0], [1.0, 0.0])


# --------------------------------------------------------------------------- pandas copy-on-write
class _FakeDataset:
    def __init__(self):
        from recbole.utils import FeatureType

        import logging

        self.logger = logging.getLogger("fake")
        self.feat_name_list = ["inter_feat"]
        self.inter_feat = pd.DataFrame({"user_id": [1.0, np.nan, 3.0], "rating": [1.0, np.nan, 3.0]})
        self.field2type = {"user_id": FeatureType.TOKEN, "rating": FeatureType.FLOAT}


def test_recbole_fill_nan_silently_does_nothing_under_copy_on_write():
    compat.apply()
    with pd.option_context("mode.copy_on_write", True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        broken = _FakeDataset()
        compat.recbole_fill_nan(broken)
        assert broken.inter_feat["user_id"].isna().any()  # the bug: nothing was filled
        fixed = _FakeDataset()
        compat._fill_nan_copy_on_write_safe(fixed)
    assert fixed.inter_feat["user_id"].tolist() == [1.0, 0.0, 3.0]
    assert fixed.inter_feat["rating"].tolist() == [1.0, 2.0, 3.0]


def test_fill_nan_is_patched_into_recbole():
    from recbole.data.dataset import Dataset

    compat.apply()
    assert Dataset._fill_nan is compat._fill_nan_copy_on_write_safe


def test_pandas_3_is_rejected_with_a_clear_message():
    with pytest.raises(CompatibilityError, match=r"pandas 3\.0\.0.*pandas>=2\.2,<3"):
        compat.check_pandas("3.0.0")
    compat.check_pandas("2.3.3")


# --------------------------------------------------------------------------- torch >= 2.6
class NotPlainData:  # what RecBole's checkpoints hold: its Config object
    pass


def test_pickled_checkpoints_are_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "recbole.pth"
    torch.save({"config": NotPlainData(), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a safe recbole-iacn checkpoint"):
        checkpoint.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load_checkpoint(tmp_path / "missing.pth")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="recbole-iacn/1"):
        checkpoint.load_checkpoint(tmp_path / "other.pth")


def test_config_is_stored_as_plain_data():
    from enum import Enum

    class Kind(Enum):
        A = 1

    plain = checkpoint.to_plain({"kind": Kind.A, "device": torch.device("cpu"), "n": np.int64(3), "xs": (1, 2.5)})
    assert plain == {"kind": "A", "device": "cpu", "n": 3, "xs": [1, 2.5]}


# --------------------------------------------------------------------------- Ray
def test_recbole_quick_start_imports_ray_but_this_package_does_not():
    code = (
        "import sys, recbole_iacn, recbole_iacn.quick_start, recbole_iacn.cli, recbole_iacn.config, "
        "recbole_iacn.model.variants, recbole_iacn.data.dataset, recbole_iacn.trainer; "
        "print('ray' in sys.modules, 'recbole.quick_start' in sys.modules)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
    shows_problem = run_python("import sys, recbole.quick_start; print('ray' in sys.modules)")
    assert shows_problem.stdout.strip() in ("True", "") or shows_problem.returncode != 0


# --------------------------------------------------------------------------- SINE's anomaly mode
ANOMALY_STATE = "import torch; print(torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())"


@pytest.mark.parametrize("before, fixed, expected", [
    ("", False, "True True"),  # RecBole alone: importing its DIN turns anomaly mode on (the problem)
    ("", True, "False True"),  # after compat.apply(), off as it was (check_nan: torch's default)
    ("import torch; torch.set_anomaly_enabled(True, False); ", True, "True False"),  # a user's own choice is kept
    ("import recbole.model.sequential_recommender; ", True, "True True"),  # imported first: kept, with a warning
])
def test_recbole_sequential_models_leave_anomaly_mode_as_it_was(before, fixed, expected):
    apply = "import recbole_iacn.compat as c; c.apply(); " if fixed else ""
    result = run_python(f"{before}{apply}from recbole.utils import get_model; get_model('DIN'); {ANOMALY_STATE}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == expected.split()
    warned = "RecBole's sequential models were imported before recbole_iacn" in result.stderr
    assert warned == before.startswith("import recbole")


def test_ray_is_current_not_recboles_pin():
    try:
        version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ray is not installed")
    major, minor = (int(p) for p in version.split(".")[:2])
    assert (major, minor) > (2, 6), f"ray {version} is RecBole's stale pin"
    import ray.tune

    assert hasattr(ray.tune, "Tuner") and hasattr(ray.tune, "report")


def test_recbole_runtime_requirements_are_installed():
    versions = compat.check_recbole_runtime()
    assert versions["recbole"] == "1.2.1"
    assert int(versions["numpy"].split(".")[0]) >= 2


# --------------------------------------------------------------------------- dispatch by class
def test_plugin_din_does_not_get_recboles_sequential_din_settings(data_root):
    from tests.conftest import model_config

    config, model_class = model_config("DIN", data_root)
    assert model_class.__module__ == "recbole_iacn.model.din"
    assert config["eval_args"]["mode"] == {"valid": "labeled", "test": "labeled"}  # RecBole's DIN quick-start file says uni100
    assert config["metrics"] == ["AUC", "LogLoss"]
    assert config["mlp_hidden_size"] == [200, 80]  # ours, not RecBole's DIN.yaml [256, 256, 256]
    assert config["data_path"].endswith("ml-100k")  # not RecBole's bundled raw folder


def test_recbole_models_resolve_through_the_same_registry():
    from recbole_iacn.registry import resolve

    spec, cls = resolve("recbole.DIN")
    assert spec is None and cls.__module__.startswith("recbole.model")
    spec, cls = resolve("BPR")
    assert spec is None and cls.__name__ == "BPR"
    spec, cls = resolve("DIEN_IaCN")
    assert spec.host == "DIEN" and cls.__name__ == "DIEN_IaCN"
