"""Ray Tune studies (recbole_iacn.tune), with real Ray on a tiny synthetic dataset (2 CPU cores).

Run alone: ``python -m pytest tests/test_tune.py -q`` (well under 3 minutes on 2 cores).
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import pytest

from recbole_iacn.errors import ConfigError

from tests.conftest import SYN_DATASET as DATASET, SYN_MODEL as MODEL, SYN_TINY as TINY  # noqa: E402
TWO_DELTAS = """\
search: grid
scheduler: fifo
max_concurrent_trials: 1
params:
  iacn_delta: {grid_search: [0.1, 0.9]}
  iacn_lambda: 1.0
"""


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def syn_root(tmp_path_factory) -> str:
    """A data_path holding a tiny SYNTHETIC CTR dataset ``syn`` (no download)."""
    from recbole_iacn.data import build_synthetic

    root = tmp_path_factory.mktemp("tune-data")
    build_synthetic(root / DATASET, name=DATASET, scale=0.002, max_history=10)
    return str(root)


@pytest.fixture(scope="module")
def ray_session():
    """One small local Ray for the module's studies (the driver leaves a running Ray alone)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def cli_args(overrides: dict) -> list:
    return [f"--{k}={v}" for k, v in overrides.items()]


# ------------------------------------------------------------------------------ a real study
def test_two_trial_study_from_the_command_line(tmp_path, syn_root, ray_session, capsys):
    from recbole_iacn.cli import main
    from recbole_iacn.properties import read_yaml_file
    from recbole_iacn.pipeline import make_config
    from recbole_iacn.quick_start import load_model

    space = write(tmp_path / "two.yaml", TWO_DELTAS)
    argv = [f"--model={MODEL}", f"--dataset={DATASET}", f"--tune={space}", f"--data_path={syn_root}",
            "--tune_storage=results", "--tune_name=two", "--tune_max_concurrent=2", "--tune_verbose=0",
            *cli_args(TINY)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    study = tmp_path / "results" / "two"  # relative storage resolved against the cwd (tmp_path)
    assert f"study: {study}" in out

    import pandas as pd

    table = pd.read_csv(study / "results.csv")
    assert len(table) == 2
    assert sorted(table["iacn_delta"]) == [0.1, 0.9]
    assert set(table["status"]) == {"finished"}
    for column in ("valid_auc", "test_auc", "valid_logloss", "test_logloss"):
        assert table[column].between(0, math.inf).all() and table[column].notna().all()
    assert table["valid_auc"].between(0, 1).all() and table["test_auc"].between(0, 1).all()
    assert "| trial_id | status | iacn_delta |" in (study / "results.md").read_text()

    best = read_yaml_file(study / "best_config.yaml")
    assert set(best) == {"iacn_delta", "iacn_lambda"}
    assert best["iacn_delta"] == table.loc[table["valid_auc"].idxmax(), "iacn_delta"]
    config, _, _ = make_config(MODEL, DATASET, [str(study / "best_config.yaml")], {"data_path": syn_root})
    assert config["iacn_delta"] == best["iacn_delta"]

    checkpoint = table.loc[table["valid_auc"].idxmax(), "checkpoint"]
    assert load_model(checkpoint).config["iacn_delta"] == best["iacn_delta"]
    if _has("matplotlib"):
        assert (study / "metric_vs_delta.png").stat().st_size > 0


def _has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------------------ resuming
def _interrupt_after_first_trial(switch: Path):
    """Presses Ctrl+C (SIGINT to this process) once the first trial has finished, as a user would.
    Ray saves the callback with the study; removing ``switch`` keeps the resumed copy quiet."""
    import os
    import signal

    from ray import tune

    class InterruptAfterFirstTrial(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if switch.exists():
                switch.unlink()
                os.kill(os.getpid(), signal.SIGINT)

    switch.touch()
    return InterruptAfterFirstTrial()


def test_interrupted_study_resumes_without_rerunning_finished_trials(tmp_path, syn_root, ray_session):
    from recbole_iacn.tune import StudyOptions, run_study

    space = write(tmp_path / "resume.yaml", TWO_DELTAS)
    overrides = {**TINY, "data_path": syn_root}
    storage = str(tmp_path / "results")
    switch = tmp_path / "interrupt"
    first = run_study(MODEL, DATASET, space, overrides=overrides,
                      options=StudyOptions(storage_path=storage, verbose=0,
                                           callbacks=[_interrupt_after_first_trial(switch)]))
    statuses = sorted(r["status"] for r in first.report.rows)
    assert statuses.count("finished") == 1 and len(statuses) <= 2
    assert first.interrupted and first.expected_trials == 2 and first.unfinished == 1  # issue 19, case 7
    done = next(r for r in first.report.rows if r["status"] == "finished")
    done_log = Path(first.study_dir) / f"trial_{done['trial_id']}" / "result.json"
    reports_before = done_log.read_text().splitlines()

    second = run_study(MODEL, DATASET, space, overrides=overrides,
                       options=StudyOptions(storage_path=storage, verbose=0))
    assert second.resumed and second.study_dir == first.study_dir
    assert not second.interrupted and second.unfinished == 0
    assert [r["status"] for r in second.report.rows] == ["finished", "finished"]
    assert sorted(r["iacn_delta"] for r in second.report.rows) == [0.1, 0.9]
    again = next(r for r in second.report.rows if r["trial_id"] == done["trial_id"])
    assert again["valid_auc"] == done["valid_auc"]
    assert done_log.read_text().splitlines() == reports_before  # not trained again


def test_resuming_with_a_different_space_is_refused(tmp_path):
    from recbole_iacn.tune.driver import check_resumable, write_definition

    write_definition(tmp_path, {"model": MODEL, "space": {"params": {"iacn_delta": {"grid_search": [0.1]}}}})
    with pytest.raises(ConfigError, match=r"different settings \(space.params.iacn_delta.grid_search differ.*--tune_name"):
        check_resumable(tmp_path, {"model": MODEL, "space": {"params": {"iacn_delta": {"grid_search": [0.2]}}}})


# ------------------------------------------------------------------------------ bad spaces
MALFORMED = {
    "unknown top-level key": ("serach: grid\nparams: {iacn_delta: {grid_search: [0.1]}}", r"serach.*did you mean 'search'"),
    "unknown function": ("params: {iacn_delta: {unifrom: [0.1, 0.5]}}", r"params.iacn_delta uses 'unifrom', which is not a Ray Tune sampling function.*did you mean 'uniform'"),
    "the old grid form": ("params: {iacn_delta: {grid: [0.1, 0.3]}}", r"params.iacn_delta uses grid:.*write \{grid_search: \[0.1, 0.3\]\}"),
    "uniform arity": ("search: random\nparams: {iacn_delta: {uniform: [0.1]}}", r"params.iacn_delta uniform: .*missing.*'upper'.*ray.tune.uniform\(lower, upper\)"),
    "quniform arity": ("search: random\nparams: {dropout_prob: {quniform: [0.0, 0.5]}}", r"quniform: .*missing.*'q'"),
    "unknown keyword": ("search: random\nparams: {embedding_size: {randint: {low: 8, upper: 33}}}", r"randint: .*unexpected keyword argument 'low'"),
    "low >= high": ("search: random\nparams: {iacn_delta: {uniform: [0.9, 0.1]}}", r"lower \(0.9\) must be smaller than upper \(0.1\)"),
    "loguniform from 0": ("search: random\nparams: {learning_rate: {loguniform: [0, 0.01]}}", r"loguniform: LogUniform requires a lower bound greater than 0"),
    "randint floats": ("search: random\nparams: {embedding_size: {randint: [4.5, 9]}}", r"randint: bounds must be whole numbers"),
    "outside the setting's range": ("params: {iacn_delta: {grid_search: [0.3, 1.5]}}", r"params.iacn_delta takes a number in \[0, 1\], not 1.5"),
    "sampled outside the range": ("search: random\nparams: {iacn_delta: {uniform: [0.5, 2]}}", r"params.iacn_delta uniform reaches 2"),
    "floats for an integer": ("search: random\nparams: {iacn_num_negatives: {uniform: [4, 16]}}", r"params.iacn_num_negatives takes whole numbers.*randint"),
    "empty grid": ("params: {iacn_delta: {grid_search: []}}", r"grid_search: needs a non-empty list"),
    "grid with optuna": ("search: optuna\nparams: {iacn_delta: {grid_search: [0.1, 0.3]}}", r"Optuna cannot search; use choice"),
    "grid search without grid": ("search: grid\nparams: {iacn_delta: {uniform: [0.1, 0.3]}}", r"search is grid but no parameter uses grid_search"),
    "unknown search": ("search: bayes\nparams: {iacn_delta: {grid_search: [0.1]}}", r"search is 'bayes'.*grid, random, optuna"),
    "unknown scheduler": ("scheduler: hyperband\nparams: {iacn_delta: {grid_search: [0.1]}}", r"scheduler is 'hyperband'"),
    "asha block with fifo": ("asha: {grace_period: 1}\nparams: {iacn_delta: {grid_search: [0.1]}}", r"asha is given but scheduler is 'fifo'"),
    "bad asha key": ("scheduler: asha\nasha: {grace: 1}\nparams: {iacn_delta: {grid_search: [0.1]}}", r"asha.grace is not allowed.*grace_period"),
    "reduction factor": ("scheduler: asha\nasha: {reduction_factor: 1}\nparams: {iacn_delta: {grid_search: [0.1]}}", r"reduction_factor.*> 1"),
    "zero samples": ("num_samples: 0\nparams: {iacn_delta: {grid_search: [0.1]}}", r"num_samples is 0; it must be an integer >= 1"),
    "bad resource": ("resources_per_trial: {cpus: 2}\nparams: {iacn_delta: {grid_search: [0.1]}}", r"resources_per_trial.cpus.*did you mean 'cpu'"),
    "no params": ("search: grid", r"params is missing or empty"),
    "only fixed params": ("params: {iacn_delta: 0.3}", r"has only fixed values"),
    "two keys": ("params: {iacn_delta: {grid_search: [0.1], choice: [0.2]}}", r"has 2 keys"),
    "tuning the data": ("params: {ctr_max_history: {grid_search: [10, 20]}}", r"params.ctr_max_history cannot be tuned"),
    "not a mapping": ("- iacn_delta", r"must hold a mapping"),
    "invalid yaml": ("params: {iacn_delta: {grid_search: [0.1, }", r"is not valid YAML at line"),
}


@pytest.mark.parametrize("text, message", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_space_file_is_a_clear_config_error(tmp_path, text, message):
    from recbole_iacn.tune import load_space

    path = write(tmp_path / "bad.yaml", text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_space(path)
    assert path in str(info.value)


def test_missing_space_file_names_the_flag(tmp_path):
    from recbole_iacn.tune import load_space

    with pytest.raises(ConfigError, match=r"does not exist.*--tune="):
        load_space(tmp_path / "nope.yaml")


def test_space_keys_are_checked_against_the_model_config(tmp_path, syn_root):
    from recbole_iacn.tune import run_study

    typo = write(tmp_path / "typo.yaml", "params: {iacn_detla: {grid_search: [0.1, 0.2]}}\n")
    with pytest.raises(ConfigError, match=r"params.iacn_detla is not a RecBole or model setting.*'iacn_delta'"):
        run_study(MODEL, DATASET, typo, overrides={**TINY, "data_path": syn_root})
    floats = write(tmp_path / "floats.yaml", "search: random\nparams: {iacn_num_negatives: {uniform: [4, 16]}}\n")
    with pytest.raises(ConfigError, match=r"params.iacn_num_negatives takes whole numbers.*randint"):
        run_study(MODEL, DATASET, floats, overrides={**TINY, "data_path": syn_root})


def test_command_line_may_not_override_a_tuned_key(tmp_path):
    from recbole_iacn.tune import load_space
    from recbole_iacn.tune.driver import merge_overrides

    space = load_space(write(tmp_path / "s.yaml", TWO_DELTAS))
    with pytest.raises(ConfigError, match=r"--iacn_delta=0.5 conflicts with the search space"):
        merge_overrides(space, {"iacn_delta": 0.5})
    rest = merge_overrides(space, {"iacn_lambda": 0.5, "epochs": 1})
    assert rest == {"epochs": 1} and space.fixed() == {"iacn_lambda": 0.5}


def test_study_flags_are_validated():
    from recbole_iacn.tune import pop_study_options

    overrides = {"tune_cpus_per_trial": 2, "tune_max_concurrent": 2, "address": "auto", "epochs": 1}
    options = pop_study_options(overrides)
    assert (options.cpus_per_trial, options.max_concurrent, options.address) == (2, 2, "auto")
    assert overrides == {"epochs": 1}
    with pytest.raises(ConfigError, match=r"--tune_max_concurrent=0 is not valid"):
        pop_study_options({"tune_max_concurrent": 0})
    with pytest.raises(ConfigError, match=r"--tune_cpu is not a study option"):
        pop_study_options({"tune_cpu": 1})


def test_optuna_missing_names_the_install_command(tmp_path, monkeypatch):
    from recbole_iacn.errors import MissingExtraError
    from recbole_iacn.tune import load_space
    from recbole_iacn.tune.driver import require_search_backend

    space = load_space(Path(__file__).resolve().parents[1] / "properties" / "tune" / "optuna.yaml")
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install optuna") as raised:
        require_search_backend(space)
    assert raised.value.exit_code == 3  # as a missing matplotlib: the environment, not the input


@pytest.mark.parametrize("name", ["delta", "delta_lambda", "random", "optuna"])
def test_shipped_spaces_are_valid(name):
    from recbole_iacn.tune import load_space

    space = load_space(Path(__file__).resolve().parents[1] / "properties" / "tune" / f"{name}.yaml")
    assert "iacn_delta" in space.tuned()


def test_importing_the_package_does_not_import_ray():
    import subprocess

    code = "import sys, recbole_iacn, recbole_iacn.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
