"""All 8 host models train end to end through run_recbole_iacn.py: ml-100k (no setup) and the ML-1M sample
(RecBole's models with IaCN attached through fields: tests/test_recbole_fields.py)."""

from __future__ import annotations

import math

import pytest

from recbole_iacn import cli
from recbole_iacn.data.__main__ import main as data_main
from recbole_iacn.registry import host_model_names
from tests.conftest import ML1M_SAMPLE

FAST_ARGS = [
    "--epochs=1",
    "--embedding_size=8",
    "--iacn_embedding_size=8",
    "--MAX_ITEM_LIST_LENGTH=10",
    "--train_batch_size=2048",
    "--state=WARNING",
    "--show_progress=false",
]


def check_printed_result(output: str):
    lines = {line.split(":", 1)[0]: line for line in output.splitlines() if ":" in line}
    assert "best valid" in lines and "test result" in lines and "checkpoint" in lines
    auc = float(lines["test result"].split("auc : ")[1].split()[0])
    assert 0.0 <= auc <= 1.0 and not math.isnan(auc)
    return auc


@pytest.mark.parametrize("model", host_model_names())
def test_every_model_runs_on_the_embedded_ml100k(model, capsys, tmp_path):
    # no data_path: the CTR view of RecBole's bundled ml-100k is built on first use under ./dataset
    assert cli.main([f"--model={model}", "--dataset=ml-100k", *FAST_ARGS]) == 0
    check_printed_result(capsys.readouterr().out)
    assert (tmp_path / "dataset" / "ml-100k" / "ctr" / "ml-100k.train.inter").is_file()


@pytest.fixture(scope="module")
def ml1m_root(tmp_path_factory):
    if not ML1M_SAMPLE.is_dir():
        pytest.skip(f"{ML1M_SAMPLE} is absent (the shared real-data folder is not beside this checkout)")
    root = tmp_path_factory.mktemp("ml1m")
    code = data_main(
        [
            "movielens",
            "--ratings", str(ML1M_SAMPLE / "ratings.dat"),
            "--merged", str(ML1M_SAMPLE / "merged.csv"),
            "--name", "ml-1m-sample",
            "--protocol", "dien",
            "--out", str(root),
        ]
    )
    assert code == 0
    return root


@pytest.mark.parametrize("model", host_model_names())
def test_every_model_runs_on_the_ml1m_sample(model, ml1m_root, capsys):
    argv = [f"--model={model}", "--dataset=ml-1m-sample", f"--data_path={ml1m_root}", *FAST_ARGS]
    assert cli.main(argv) == 0
    check_printed_result(capsys.readouterr().out)


def test_a_recbole_model_runs_through_the_same_entry_point(capsys):
    argv = ["--model=BPR", "--dataset=ml-100k", "--epochs=1", "--state=WARNING", "--show_progress=false", "--train_batch_size=4096"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "test result:" in out and "ndcg@10" in out


def test_recbole_din_saves_and_reloads_a_safe_checkpoint(capsys):
    """RecBole's own DIN lists a layer among its 'other parameters'; checkpoints must still be safe."""
    argv = ["--model=recbole.DIN", "--dataset=ml-100k", "--epochs=1", "--state=WARNING", "--show_progress=false",
            "--train_batch_size=4096", "--embedding_size=4", "--MAX_ITEM_LIST_LENGTH=5"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "test result:" in out and "checkpoint:" in out
