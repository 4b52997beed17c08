"""All 8 host models train end to end through run_recbole_iacn.py: on the tiny synthetic dataset, on the ML-1M
sample, and one of them on the embedded ml-100k with no setup (its CTR view built on first use; every model's
training on ml-100k itself: tests/test_models.py). RecBole's models with IaCN attached through fields:
tests/test_recbole_fields.py."""

from __future__ import annotations

import itertools
import math
import shutil
import threading
from pathlib import Path

import pytest
import torch

from recbole_iacn import cli
from recbole_iacn.data import default_ml100k_source
from recbole_iacn.data.__main__ import main as data_main
from recbole_iacn.registry import host_model_names
from tests.conftest import ML1M_SAMPLE, SYN_DATASET

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


def test_a_model_runs_on_the_embedded_ml100k_with_no_setup(capsys, tmp_path):
    # no data_path: the CTR view of RecBole's bundled ml-100k is built on first use under ./dataset
    assert cli.main(["--model=DIN_IaCN", "--dataset=ml-100k", *FAST_ARGS]) == 0
    check_printed_result(capsys.readouterr().out)
    assert (tmp_path / "dataset" / "ml-100k" / "ctr" / "ml-100k.train.inter").is_file()


def writer_threads() -> int:
    """Live threads of tensorboard's event writers (RecBole's trainer opens one per run)."""
    return sum(type(t).__module__.startswith("tensorboard") for t in threading.enumerate())


@pytest.mark.parametrize("model", host_model_names())
def test_every_model_runs_through_the_command_line(model, syn_root, capsys):
    argv = [f"--model={model}", f"--dataset={SYN_DATASET}", f"--data_path={syn_root}", *FAST_ARGS]
    writers = writer_threads()
    assert cli.main(argv) == 0
    check_printed_result(capsys.readouterr().out)
    assert writer_threads() == writers  # the run's tensorboard writer is closed, its thread gone


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


def small_ml100k(folder: Path, name: str = "ml-100k", ratings: int = 3_000) -> Path:
    """RecBole's bundled ml-100k cut to its first ``ratings`` ratings, in ``folder/name`` (RecBole's atomic files)."""
    source_dir, source = default_ml100k_source()
    small = folder / name
    small.mkdir(parents=True)
    for suffix in ("user", "item"):
        shutil.copy(Path(source_dir) / f"{source}.{suffix}", small / f"{name}.{suffix}")
    with open(Path(source_dir) / f"{source}.inter", encoding="utf-8") as lines:
        (small / f"{name}.inter").write_text("".join(itertools.islice(lines, ratings + 1)), encoding="utf-8")
    return folder


RECBOLE_DIN = ["--model=recbole.DIN", "--epochs=1", "--state=WARNING", "--show_progress=false",
               "--train_batch_size=4096", "--embedding_size=4", "--MAX_ITEM_LIST_LENGTH=5"]


def test_recbole_din_saves_and_reloads_a_safe_checkpoint(tmp_path, capsys):
    """RecBole's own DIN lists a layer among its 'other parameters'; checkpoints must still be safe. RecBole's
    model reads RecBole's atomic files: its bundled ml-100k (its settings too), cut to keep this quick."""
    argv = [*RECBOLE_DIN, "--dataset=ml-100k", f"--data_path={small_ml100k(tmp_path / 'atomic')}"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "test result:" in out and "checkpoint:" in out
    assert not torch.is_anomaly_enabled()  # RecBole's sequential models imported, anomaly mode still off


def test_a_recbole_model_on_ml100k_reads_the_data_path_it_is_given(tmp_path):
    """RecBole reads its bundled ml-100k whatever data_path says; given one that holds ml-100k/ml-100k.inter, its
    models now read that copy (the bundled files still when none is given, or the folder has no copy: the
    package's default data_path holds only the CTR view, ml-100k/ctr/)."""
    from recbole_iacn.pipeline import make_config, prepare

    bundled = Path(default_ml100k_source()[0]).resolve()
    config, _, _ = make_config("BPR", "ml-100k")
    assert Path(config["data_path"]).resolve() == bundled
    (tmp_path / "empty" / "ml-100k" / "ctr").mkdir(parents=True)
    config, _, _ = make_config("BPR", "ml-100k", config_dict={"data_path": str(tmp_path / "empty")})
    assert Path(config["data_path"]).resolve() == bundled
    root = small_ml100k(tmp_path / "atomic", ratings=500)
    prepared = prepare("BPR", "ml-100k", config_dict={"data_path": str(root), "state": "WARNING"})
    assert prepared.config["data_path"] == str(root / "ml-100k")
    assert prepared.dataset.inter_num <= 500


def test_a_recbole_sequential_model_without_its_time_field_is_told_how_to_load_it(tmp_path, capsys):
    """RecBole loads only user_id and item_id of a dataset it has no settings for; its DIN then failed deep in
    RecBole ('[timestamp] is not exist in interaction'). Now a clear error names the fix, and the fix works."""
    argv = [*RECBOLE_DIN, "--dataset=mine", f"--data_path={small_ml100k(tmp_path / 'atomic', 'mine')}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "sequential model" in err and "TIME_FIELD 'timestamp'" in err and "Traceback" not in err
    hint = err.split("e.g. ")[1].rstrip().rstrip(".")
    assert hint == "--load_col=\"{'inter': ['user_id', 'item_id', 'timestamp']}\""
    assert cli.main([*argv, hint.replace('"', "")]) == 0
    assert "test result:" in capsys.readouterr().out
    header = tmp_path / "atomic" / "mine" / "mine.inter"
    text = header.read_text(encoding="utf-8").replace("\ttimestamp:float", "\twhen:float")
    header.write_text(text, encoding="utf-8")
    assert cli.main([*argv, hint.replace('"', "")]) == 2
    err = capsys.readouterr().err
    assert f"{header}, line 1" in err and "--TIME_FIELD=<column>" in err


def test_a_recbole_model_reads_atomic_files_with_a_byte_order_mark(tmp_path, capsys):
    """RecBole read a UTF-8 byte-order mark as part of the first column's name ('\\ufeffuser_id') and died in pandas
    with KeyError: 'user_id'; RecBole's models run through this package now read such files as they read any."""
    root = small_ml100k(tmp_path / "atomic", "mine", ratings=500)
    inter = root / "mine" / "mine.inter"
    inter.write_bytes(b"\xef\xbb\xbf" + inter.read_bytes())
    argv = ["--model=BPR", "--dataset=mine", f"--data_path={root}", "--epochs=1", "--state=WARNING",
            "--show_progress=false"]
    assert cli.main(argv) == 0
    assert "test result:" in capsys.readouterr().out
