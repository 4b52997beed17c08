"""run_recbole_iacn.py: argument parsing, overrides and every user-facing error message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recbole_iacn import cli
from recbole_iacn.errors import ConfigError
from recbole_iacn.registry import model_names

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_registered_model(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in model_names():
        assert name in out
    assert "--config_files" in out and "--tune" in out


def test_help_shows_every_group_of_settings(capsys):
    """Model, data, training, distributed and study settings, each under its group's heading."""
    from recbole_iacn import settings

    assert cli.main(["--model=DIN_IaCN", "--help"]) == 0
    out = capsys.readouterr().out
    for group in ("training", "data", "model", "DIN", "IaCN", "study", "distributed"):
        assert f"\n{settings.GROUPS[group]}:\n" in out, group
    for key in ("--nproc", "--world_size", "--ip", "--port", "--tune_cpus_per_trial", "--iacn_routing_scale"):
        assert key in out, key


def test_key_value_arguments_are_parsed_as_yaml():
    raw = cli.parse_args(["--model=DIN", "--learning_rate=1e-4", "--mlp_hidden_size=[64, 32]", "--show_progress=false"])
    assert raw["model"] == "DIN"
    overrides = cli.build_overrides({k: v for k, v in raw.items() if k != "model"}, "DIN", "ml-100k")
    assert overrides == {"learning_rate": 1e-4, "mlp_hidden_size": [64, 32], "show_progress": False}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs"], "Write it as --epochs=VALUE"),
        (["DIN"], "Unrecognised argument 'DIN'"),
        (["--epochs=1", "--epochs=2"], "given twice"),
    ],
)
def test_malformed_arguments(argv, message):
    with pytest.raises(ConfigError, match=message):
        cli.parse_args(argv)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"epochs": "ten"}, "epochs expects an integer"),
        ({"epochs": "1.5"}, "epochs expects an integer"),
        ({"learning_rate": "fast"}, "learning_rate expects a number"),
        ({"mlp_hidden_size": "[64,"}, "Cannot parse the value of --mlp_hidden_size"),
        ({"attention_softmax": "maybe"}, "attention_softmax expects true or false"),
    ],
)
def test_malformed_values(raw, message):
    with pytest.raises(ConfigError, match=message):
        cli.build_overrides(raw, "DIN", "ml-100k")


def test_unknown_model_lists_the_known_ones(capsys):
    assert cli.main(["--model=DINN", "--dataset=ml-100k"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'DINN'" in err and "Did you mean DIN" in err
    for name in model_names():
        assert name in err


@pytest.mark.parametrize("name, base, kind", [("BPR_IaCN", "BPR", "general"), ("SASRec_IaCN", "SASRec", "sequential"),
                                              ("recbole.DIN_IaCN", "DIN", "sequential")])
def test_iacn_on_a_recbole_model_that_is_not_context_aware_says_why_not(name, base, kind, capsys):
    """BPR_IaCN was an 'Unknown model' with spelling suggestions (PNN_IaCN?); it is a real RecBole model that IaCN
    does not attach to, and the error now says so, with what does."""
    from recbole_iacn import registry

    assert cli.main([f"--model={name}", "--dataset=ml-100k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {name}: IaCN attaches to RecBole's context-aware models") and "Traceback" not in err
    assert f"RecBole's {base} is a {kind} model" in err and "Unknown model" not in err
    assert all(n in err for n in registry.attached_names())
    assert ("This package's own DIN_IaCN is 'DIN_IaCN'" in err) == (base == "DIN")


def test_unknown_dataset_names_the_files_looked_for(capsys, tmp_path):
    assert cli.main(["--model=DIN", "--dataset=nosuch", f"--data_path={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "Dataset 'nosuch' not found" in err
    assert str(tmp_path / "nosuch" / "nosuch.train.inter") in err
    assert "python -m recbole_iacn.data" in err


def test_recbole_model_with_missing_atomic_files(capsys, tmp_path):
    assert cli.main(["--model=BPR", "--dataset=nosuch", f"--data_path={tmp_path}"]) == 2
    assert "nosuch.inter" in capsys.readouterr().err


def test_missing_config_file(capsys, tmp_path):
    assert cli.main(["--model=DIN", f"--config_files={tmp_path / 'nope.yaml'}"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_invalid_yaml_config_file_names_the_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nlearning_rate: [0.1\nseed: 3\n", encoding="utf-8")
    assert cli.main(["--model=DIN", f"--config_files={bad}"]) == 2
    err = capsys.readouterr().err
    assert "is not valid YAML at line" in err and str(bad) in err


def test_config_file_that_is_not_a_mapping(capsys, tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n", encoding="utf-8")
    assert cli.main(["--model=DIN", f"--config_files={bad}"]) == 2
    assert "must hold a mapping" in capsys.readouterr().err


def test_invalid_hyperparameter_from_the_command_line(capsys, data_root):
    assert cli.main(["--model=DIN_IaCN", "--dataset=ml-100k", f"--data_path={data_root}", "--iacn_delta=2"]) == 2
    assert "iacn_delta" in capsys.readouterr().err


def test_errors_exit_non_zero_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "run_recbole_iacn.py"), "--model=Nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: Unknown model 'Nope'")


def test_unrelated_import_error_is_a_bug_not_exit_3(monkeypatch, capsys):
    """Only the package's own dependency errors exit 3; any other ImportError propagates with its traceback."""
    import recbole_iacn.pipeline as pipeline
    from recbole_iacn.errors import CompatibilityError

    def broken(*args, **kwargs):
        raise ImportError("bug")

    monkeypatch.setattr(pipeline, "run", broken)
    with pytest.raises(ImportError, match="^bug$"):
        cli.main(["--model=DIN", "--dataset=ml-100k"])

    def incompatible(*args, **kwargs):
        raise CompatibilityError("the stack cannot run RecBole")

    monkeypatch.setattr(pipeline, "run", incompatible)
    assert cli.main(["--model=DIN", "--dataset=ml-100k"]) == 3
    assert capsys.readouterr().err.startswith("error: the stack cannot run RecBole")


def test_each_setting_is_checked_once(tmp_path, monkeypatch):
    """Issue 29: the config files and the overrides are checked once (quick_start.check_settings, which the
    command line calls), nproc once (distributed.pop_settings, in pipeline.run); the run is the pipeline's."""
    from recbole_iacn import pipeline, settings

    path = tmp_path / "a.yaml"
    path.write_text("epochs: 1\n", encoding="utf-8")
    checked, files = [], []
    check, check_config_files = settings.check, settings.check_config_files

    def counted_check(key, *args, **kwargs):
        checked.append(key)
        return check(key, *args, **kwargs)

    def counted_files(paths, *args, **kwargs):
        files.append(list(paths))
        return check_config_files(paths, *args, **kwargs)

    monkeypatch.setattr(settings, "check", counted_check)
    monkeypatch.setattr(settings, "check_config_files", counted_files)
    monkeypatch.setattr(pipeline, "run_one_process", lambda *args, **kwargs: {"best_valid_result": {}, "test_result": {}})
    argv = ["--model=DIN", "--dataset=ml-100k", f"--config_files={path}", "--nproc=1", "--learning_rate=0.01"]
    assert cli.main(argv) == 0
    assert [checked.count(key) for key in ("epochs", "learning_rate", "nproc")] == [1, 1, 1]
    assert files == [[str(path)]]
