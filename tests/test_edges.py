"""Issue 31: nothing silently wrong at the edges (the Python API, predict(), checkpoints, paths, Ctrl-C).

Each test reproduces one case of the issue, numbered as there; ``benchmarks/fault_injection.py`` holds the
randomised kills.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_iacn.errors import CheckpointError, ConfigError, DataFormatError, DatasetNotFoundError
from tests.conftest import FAST
from tests.test_dataset import write_dataset

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ case 1: the Python API
def test_the_python_api_warns_about_misspelled_settings(tmp_path):
    """Case 1: run(config_dict={"iacn_detla": 0.9}) trained silently with the default δ."""
    from recbole_iacn.errors import UnknownSettingWarning
    from recbole_iacn.quick_start import run

    with pytest.warns(UnknownSettingWarning, match=r"iacn_detla is not a known setting \(did you mean 'iacn_delta'\?\)"):
        with pytest.raises(DatasetNotFoundError):  # the warning comes before the data is looked for
            run("DIN_IaCN", "absent", config_dict={"iacn_detla": 0.9, "data_path": str(tmp_path), "download": False})


@pytest.mark.parametrize("key, value, message", [
    ("eval_step", "ten", "eval_step expects an integer"),
    ("epochs", 0, "epochs expects an integer >= 1"),
    ("learning_rate", float("nan"), "learning_rate expects a number > 0"),
])
def test_the_python_api_type_checks_settings_as_the_command_line_does(tmp_path, key, value, message):
    from recbole_iacn.quick_start import run

    with pytest.raises(ConfigError, match=message) as error:
        run("DIN_IaCN", "absent", config_dict={key: value, "data_path": str(tmp_path), "download": False})
    assert "config_dict" in str(error.value)


def test_the_python_api_checks_config_files_as_the_command_line_does(tmp_path):
    from recbole_iacn.quick_start import run

    path = tmp_path / "bad.yaml"
    path.write_text("seed: 3\neval_step: ten\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}, line 2.*eval_step expects an integer"):
        run("DIN_IaCN", "absent", [str(path)], config_dict={"data_path": str(tmp_path), "download": False})
