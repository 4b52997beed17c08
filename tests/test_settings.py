"""recbole_iacn.settings: one declaration per setting, used by validation, the command line and --help."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import yaml

from recbole_iacn import settings
from recbole_iacn.errors import ConfigError

PROPERTIES = Path(__file__).resolve().parents[1] / "properties"


def test_every_model_setting_in_the_yaml_files_is_declared():
    """A model setting gets its default in properties/model/*.yaml and its declaration in settings.py."""
    for path in (PROPERTIES / "model").glob("*.yaml"):
        for key in yaml.safe_load(path.read_text(encoding="utf-8")):
            assert settings.get(key) is not None, f"{key} ({path.name}) has no declaration in settings.py"


@pytest.mark.parametrize("key, value", [("iacn_lambda", math.inf), ("iacn_delta", math.nan), ("learning_rate", -1),
                                        ("train_batch_size", 0), ("epochs", 0), ("gru_type", "LSTM")])
def test_check_refuses_out_of_range_and_non_finite_values(key, value):
    with pytest.raises(ConfigError, match=f"{key}=.* is not valid: {key} expects"):
        settings.check(key, value)


def test_check_accepts_declared_values_and_folds_case():
    assert settings.check("gru_type", "augru") == "augru"
    assert settings.check("item_embedding_size", None) is None
    assert settings.check("iacn_mlp_hidden_size", []) == []
    assert settings.check("eval_step", "ten") == "ten"  # undeclared, no default: RecBole decides


def test_unknown_keys_get_a_did_you_mean_warning():
    known = settings.known_keys()
    assert {"iacn_delta", "epochs", "gpu_id", "aux_classifier"} <= known
    [line] = settings.unknown_key_warnings(["iacn_detla", "epochs"], known)
    assert "did you mean 'iacn_delta'" in line


@pytest.mark.parametrize("model, key, value, group, readers", [
    # our host's width control is not this
    ("DIN_IaCN", "iacn_fields", "plain", "RecBole's context-aware models", ("DeepFM_IaCN", "recbole.WideDeep_IaCN")),
    ("DIN", "iacn_lambda", 0.3, "IaCN (X_IaCN models)", ("DIN_IaCN", "DeepFM_IaCN")),  # DIN_IaCN was meant
    ("DeepFM_IaCN", "gru_hidden_size", 8, "DIEN", ("DIEN", "DIEN_IaCN")),
])
def test_a_setting_of_other_models_only_is_said_to_have_no_effect(model, key, value, group, readers, capsys):
    """Declared settings that this model does not read were accepted in silence: --iacn_fields=plain on DIN_IaCN
    trained IaCN, not a width control. Now a warning says so, on the command line and in the Python API."""
    from recbole_iacn import cli
    from recbole_iacn.quick_start import check_settings

    [line] = check_settings(model, "ml-100k", None, {key: value})
    assert line == f"config_dict: {key} is a setting of {settings.GROUPS[settings.SETTINGS[key].group]}, which " \
                   "this model does not read: it has no effect here."
    assert group in line
    assert cli.build_overrides({key: str(value)}, model, "ml-100k") == {key: value}
    assert capsys.readouterr().err == f"warning: --{line.split(': ', 1)[1]}\n"
    for reader in readers:
        assert check_settings(reader, "ml-100k", None, {key: value}) == []


def test_help_lists_a_models_settings_with_their_yaml_defaults(capsys):
    from recbole_iacn import cli

    assert cli.main(["--model=DIEN", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--aux_classifier" in out and "default 'mlp'" in out and "--iacn_delta" not in out


def test_loss_parts_are_named():
    from recbole_iacn.registry import MODELS

    assert MODELS["DIN"].load().loss_names == ("main",)
    dien_iacn = MODELS["DIEN_IaCN"].load()
    model = dien_iacn.__new__(dien_iacn)
    model.aux_loss_weight = 1.0
    assert model.loss_names == ("main", "dien_aux", "iacn")


def test_recbole_trainer_builds_its_grad_scaler_without_a_future_warning():
    from recbole_iacn import compat

    compat.apply()
    from recbole.trainer import trainer

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        trainer.amp.GradScaler(enabled=False)
