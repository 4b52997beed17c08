"""Issue 31: nothing silently wrong at the edges (the Python API, predict(), checkpoints, paths, Ctrl-C).

Each test reproduces one case of the issue, numbered as there; ``benchmarks/fault_injection.py`` holds the
randomised kills.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from recbole_iacn.errors import CheckpointError, ConfigError, DataFormatError, DatasetNotFoundError
from tests.conftest import FAST, FAST_HOST
from tests.test_dataset import write_dataset
from tests.test_distributed import syn_root  # noqa: F401 (a fixture)

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


# ------------------------------------------------------------------------------ case 2: predict()
@pytest.fixture(scope="module")
def profile_checkpoint(tmp_path_factory) -> Path:
    """A DIN trained 1 epoch on the tiny dataset with a user profile (age, numeric tokens): its checkpoint."""
    from recbole_iacn.quick_start import run

    root = tmp_path_factory.mktemp("edges")
    folder = write_dataset(root)
    (folder / "tiny.user").write_text("user_id:token\tage:token\nu1\t49\nu2\t23\n", encoding="utf-8")
    result = run("DIN", "tiny", config_dict={**FAST_HOST, "data_path": str(root), "checkpoint_dir": str(root / "saved")})
    return Path(result["model_file"])


@pytest.fixture(scope="module")
def with_profile(profile_checkpoint):
    from recbole_iacn.quick_start import load_model

    return load_model(profile_checkpoint)


def _record(**changes):
    return {"user_id": "u1", "age": "49", "item_id": "i5", "item_id_list": "i1 i2 i3", "cate_id_list": "c1 c1 c2",
            **changes}


def test_predict_leaves_an_unknown_behaviour_out_of_both_lists(with_profile):
    """Case 2: an unknown item was dropped from item_id_list but its category kept, so the lists shifted."""
    model = with_profile
    unknown = model.predict([_record(item_id_list="i1 i99 i2 i3", cate_id_list="c1 c3 c1 c2")])
    assert unknown.tolist() == model.predict([_record()]).tolist()


def test_predict_refuses_behaviour_lists_of_different_lengths(with_profile):
    """Case 2: the file loader refuses them; predict() accepted them."""
    with pytest.raises(DataFormatError, match=r"records\[1\]: item_id_list has 3 behaviours but cate_id_list has 2"):
        with_profile.predict([_record(), _record(cate_id_list="c1 c1")])


def test_predict_reads_a_whole_float_as_its_integer_token(with_profile):
    """Case 2: age=49.0 silently became padding."""
    model = with_profile
    as_token = model.predict([_record()])
    assert model.predict([_record(age=49.0)]).tolist() == as_token.tolist()
    assert model.predict([_record(age=49)]).tolist() == as_token.tolist()
    assert model.predict([_record(age="[PAD]")]).tolist() != as_token.tolist()  # age matters to the model


def test_predict_refuses_a_fractional_float_for_a_token_field(with_profile):
    with pytest.raises(DataFormatError, match=r"records\[0\]: age is 49.5"):
        with_profile.predict([_record(age=49.5)])


# ------------------------------------------------------------------------------ case 3: checkpoint digest
def _flip_inside_the_weights(source: Path, target: Path, count: int = 16) -> Path:
    """Copy ``source`` with ``count`` bytes inverted in the middle of its largest tensor record."""
    import zipfile

    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    target.write_bytes(bytes(data))
    return target


def test_a_checkpoint_with_flipped_bytes_in_its_weights_is_refused(profile_checkpoint, tmp_path):
    """Case 3: 16 flipped bytes inside the weights loaded and predicted another value."""
    from recbole_iacn.quick_start import load_model

    path = _flip_inside_the_weights(profile_checkpoint, tmp_path / "flipped.pth")
    with pytest.raises(CheckpointError, match=r"flipped.pth.*digest"):
        load_model(path)
    assert load_model(profile_checkpoint).model is not None


# ------------------------------------------------------------------------------ case 5: rows longer than the header
def _convert(capsys, *args):
    from recbole_iacn.data.__main__ import main

    status = main(list(args))
    return status, capsys.readouterr()


def test_a_first_row_longer_than_the_header_is_refused_by_the_converter(tmp_path, capsys):
    """Case 5: a raw row with 4 values under a 3-column header was accepted, the extra value dropped."""
    from tests.test_faults import _raw_dataset

    source = _raw_dataset(tmp_path / "src")
    path = source / "raw.inter"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].rstrip("\n") + "\textra\n"
    path.write_text("".join(lines), encoding="utf-8")
    status, out = _convert(capsys, "recbole", "--source-dir", str(source), "--source-name", "raw",
                           "--out", str(tmp_path / "out"), "--name", "x")
    assert status == 2, out.out
    assert f"{path}:2:" in out.err and "4" in out.err and "3" in out.err and "Traceback" not in out.err
    assert not (tmp_path / "out" / "x").exists()


def test_a_first_row_longer_than_the_header_is_refused_by_the_dataset_loader(tmp_path):
    from tests.test_dataset import HEADER, ROWS, load

    write_dataset(tmp_path, train=HEADER + ROWS[0].rstrip("\n") + "\textra\n" + ROWS[1])
    with pytest.raises(DataFormatError, match=r"tiny.train.inter.*line 2"):
        load(tmp_path)


@pytest.mark.parametrize("row", [1, 3])
def test_rows_longer_than_the_header_are_refused_in_recbole_amazon_files(tmp_path, row):
    """Case 5 in the RecBole Amazon reader: its usecols dropped the extra value of any row."""
    from recbole_iacn.data.recbole_amazon import read_ratings

    path = tmp_path / "a.inter"
    rows = [f"u{i}\ti{i}\t5\t{i}" for i in range(4)]
    rows[row - 1] += "\textra"
    path.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n",
                    encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"a.inter:{row + 1}"):
        read_ratings(path, "user_id", "item_id", "timestamp")


# ------------------------------------------------------------------------------ cases 6, 13: converter paths
@pytest.mark.parametrize("name", ["../escaped", "a/b", "", ".", "..", ".hidden"])
def test_the_converter_refuses_a_name_that_is_not_one_plain_folder_name(tmp_path, capsys, name):
    """Case 6: --name ../escaped wrote outside --out, /abs/path ignored --out, '' and '.' wrote hidden files;
    case 13: --name .. ended in an OSError (EBUSY) traceback."""
    out = tmp_path / "X" / "inner"
    status, printed = _convert(capsys, "synthetic", "--scale", "0.001", "--out", str(out), "--name", name)
    assert status == 2 and "--name" in printed.err and "Traceback" not in printed.err
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_the_converter_refuses_an_absolute_name(tmp_path, capsys):
    target = tmp_path / "abs"
    status, printed = _convert(capsys, "synthetic", "--scale", "0.001", "--out", str(tmp_path / "out"),
                               "--name", str(target))
    assert status == 2 and "--name" in printed.err
    assert not target.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["out", "out/x"])
def test_the_converter_refuses_an_out_that_is_a_file(tmp_path, capsys, where):
    """Case 13: --out set to an existing file ended in a FileExistsError traceback."""
    (tmp_path / "out").mkdir() if where == "out/x" else None
    (tmp_path / where).write_text("not a folder\n", encoding="utf-8")
    status, printed = _convert(capsys, "synthetic", "--scale", "0.001", "--out", str(tmp_path / "out"), "--name", "x")
    assert status == 2 and "Traceback" not in printed.err
    assert str(tmp_path / where) in printed.err and "not a folder" in printed.err
    assert (tmp_path / where).read_text(encoding="utf-8") == "not a folder\n"


# ------------------------------------------------------------------------------ case 14: --dataset paths
@pytest.mark.parametrize("dataset", ["../x", "/abs/x", "", ".hidden"])
def test_a_dataset_that_is_not_a_name_exits_2(capsys, dataset):
    """Case 14: --dataset=../x ended in a FileNotFoundError traceback from RecBole's logger."""
    from recbole_iacn import cli

    assert cli.main(["--model=DIN", f"--dataset={dataset}", "--epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "--dataset" in err and "not a valid dataset name" in err and "Traceback" not in err


def test_the_python_api_refuses_a_dataset_that_is_not_a_name(tmp_path):
    from recbole_iacn.quick_start import run

    with pytest.raises(ConfigError, match="not a valid dataset name"):
        run("DIN", "../x", config_dict={"data_path": str(tmp_path)})


# ------------------------------------------------------------------------------ case 10: a pending trial
class _PendingResult:
    """What Ray's ResultGrid holds for a trial that was still PENDING when the study was interrupted."""

    path = "/study/trial_0000a"
    config = None
    error = None
    checkpoint = None
    metrics = {}


class _Grid(list):
    def get_dataframe(self):
        import pandas as pd

        return pd.DataFrame()

    def get_best_result(self, metric, mode):
        raise RuntimeError("no trial reported")


def test_the_report_lists_a_trial_interrupted_while_pending(tmp_path):
    """Case 10: Ctrl-C while a trial was PENDING: AttributeError at report.py (result.config is None), no report."""
    from recbole_iacn.tune.report import STATUS_NOT_RUN, write_report

    report = write_report(_Grid([_PendingResult()]), {"iacn_delta": "grid_search"}, {}, "valid_auc", "max",
                          {"name": "s", "model": "DIN_IaCN", "dataset": "ml-100k"}, tmp_path)
    assert [(r["trial_id"], r["status"], r["iacn_delta"]) for r in report.rows] == [("0000a", STATUS_NOT_RUN, None)]
    assert (tmp_path / "results.csv").is_file()


# ------------------------------------------------------------------------------ cases 11, 12: output folders
def _read_only(monkeypatch, folder: Path):
    """Make ``folder`` (and everything under it) refuse new files and folders, as a read-only folder does for
    a user who is not root (these tests may run as root, whom chmod does not stop)."""
    import errno

    folder = str(folder)
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path):
        path = os.path.abspath(os.fspath(path))
        return path == folder or path.startswith(folder + os.sep)

    def guarded_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and inside(path) and not os.path.exists(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if inside(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


OUTPUT_CASES = ["read-only", "under read-only", "a file", "under a file"]


def _output_target(tmp_path, monkeypatch, case) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "file").write_text("x\n", encoding="utf-8")
    if case.endswith("read-only"):
        _read_only(monkeypatch, ro)
    return {"read-only": ro, "under read-only": ro / "sub" / "deeper", "a file": tmp_path / "file",
            "under a file": tmp_path / "file" / "sub"}[case]


@pytest.fixture(scope="module")
def iacn_checkpoint(tmp_path_factory) -> Path:
    """A DIN_IaCN trained 1 epoch on the tiny dataset: its checkpoint."""
    from recbole_iacn.quick_start import run

    root = tmp_path_factory.mktemp("iacn")
    write_dataset(root)
    result = run("DIN_IaCN", "tiny", config_dict={**FAST, "data_path": str(root), "checkpoint_dir": str(root / "saved")})
    return Path(result["model_file"])


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_explain_out_that_cannot_be_written_exits_2(iacn_checkpoint, tmp_path, monkeypatch, capsys, case):
    """Case 11: explain --out at a read-only folder, a subfolder of one or a file: PermissionError or
    FileExistsError tracebacks (after the work was done)."""
    from recbole_iacn.explain.__main__ import main

    out = _output_target(tmp_path, monkeypatch, case)
    status = main(["--model-file", str(iacn_checkpoint), "--users", "u1", "--out", str(out), "--no-plots"])
    err = capsys.readouterr().err
    assert status == 2 and "--out" in err and str(out) in err and "Traceback" not in err


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_tune_storage_that_cannot_be_written_exits_2(tmp_path, monkeypatch, capsys, case):
    """Case 12: --tune_storage at a read-only folder, a subfolder of one or a file: a pyarrow traceback, exit 1."""
    from recbole_iacn import cli
    from recbole_iacn.tune import driver

    def no_study(*args, **kwargs):
        raise AssertionError("the study started")

    monkeypatch.setattr(driver, "prepare_data", no_study)
    storage = _output_target(tmp_path, monkeypatch, case)
    space = REPO / "properties" / "tune" / "delta.yaml"
    status = cli.main(["--model=DIN_IaCN", "--dataset=ml-100k", f"--tune={space}", f"--tune_storage={storage}"])
    err = capsys.readouterr().err
    assert status == 2 and "--tune_storage" in err and str(storage) in err and "Traceback" not in err


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_converter_out_that_cannot_be_written_exits_2_before_building(tmp_path, monkeypatch, capsys, case):
    out = _output_target(tmp_path, monkeypatch, case)
    status, printed = _convert(capsys, "synthetic", "--scale", "0.001", "--out", str(out), "--name", "x")
    assert status == 2 and "--out" in printed.err and str(out) in printed.err and "Traceback" not in printed.err


# ------------------------------------------------------------------------------ cases 16, 17: downloads
def test_a_download_without_content_length_succeeds(tmp_path, monkeypatch):
    """Case 17: a server that sends no Content-Length, even with a complete zip, failed with "int() argument
    must be ... 'NoneType'"."""
    from recbole_iacn.data.prepare import resolve_ctr_dataset
    from tests.test_download import ARCHIVE, amazon_books_zip, check_built, no_terminal, run_config, serve

    with serve(monkeypatch) as routes:
        routes[f"/{ARCHIVE}"] = (amazon_books_zip(), "no-length")
        no_terminal(monkeypatch)
        resolve_ctr_dataset(run_config(tmp_path, download=True))
    check_built(tmp_path)


def test_ctrl_c_during_a_download_exits_130_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Case 16: Ctrl-C during a download exited 2 with "Check the connection"."""
    import signal
    import threading

    import torch  # noqa: F401  (imported first: a Ctrl-C inside torch's own import breaks it for the later tests)

    from recbole_iacn import cli
    from tests.test_download import ARCHIVE, NAME, amazon_books_zip, leftovers, no_terminal, serve

    with serve(monkeypatch) as routes:
        routes[f"/{ARCHIVE}"] = (amazon_books_zip(), "stall")
        no_terminal(monkeypatch)
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            status = cli.main(["--model=DIN", f"--dataset={NAME}", f"--data_path={tmp_path / 'data'}",
                               "--download=true"])
        finally:
            timer.cancel()
    err = capsys.readouterr().err
    assert status == 130 and "interrupted" in err and "connection" not in err
    assert leftovers(tmp_path / "data") == []


# ------------------------------------------------------------------------------ case 18: a wrong header type
@pytest.mark.parametrize("field, declared, wanted", [("label", "token", "float"), ("user_id", "float", "token"),
                                                     ("item_id", "token_seq", "token")])
def test_a_required_field_of_the_wrong_type_is_reported_as_such(tmp_path, field, declared, wanted):
    """Case 18: a label:token header was reported as "label must be 0 or 1, got '1'"."""
    from tests.test_dataset import HEADER, ROWS, load

    header = HEADER.replace(f"{field}:{wanted}", f"{field}:{declared}")
    folder = write_dataset(tmp_path, train=header + "".join(ROWS))
    with pytest.raises(DataFormatError, match=rf"tiny.train.inter, line 1: {field} is declared {field}:{declared}, "
                       rf"but .* write '{field}:{wanted}'") as error:
        load(tmp_path)
    assert "tiny.valid.inter" not in str(error.value) and str(folder) in str(error.value)


# ------------------------------------------------------------------------------ cases 19, 20: explain's inputs
@pytest.mark.parametrize("device, message", [("cuda:7", "cuda:7"), ("gpu", "gpu")])
def test_explain_on_a_device_this_machine_lacks_blames_the_device(iacn_checkpoint, capsys, device, message):
    """Case 19: --device cuda:7 on a CPU machine called a good checkpoint "not a safe checkpoint ... corrupt"."""
    import torch

    from recbole_iacn.explain.__main__ import main

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    status = main(["--model-file", str(iacn_checkpoint), "--users", "u1", "--device", device])
    err = capsys.readouterr().err
    assert status == 2 and "--device" in err and message in err
    assert "corrupt" not in err and "not a safe" not in err


def test_a_folder_given_as_model_file_is_called_a_folder(iacn_checkpoint, capsys):
    """Case 20: a directory given as --model-file was reported as "does not exist"."""
    from recbole_iacn.explain.__main__ import main

    status = main(["--model-file", str(iacn_checkpoint.parent), "--users", "u1"])
    err = capsys.readouterr().err
    assert status == 2 and "is a folder" in err and "does not exist" not in err
    assert iacn_checkpoint.name in err  # the checkpoint inside it is named


# ------------------------------------------------------------------------------ case 21: stale .partial files
def test_partial_files_of_killed_checkpoint_writes_are_removed(tmp_path):
    """Case 21: a kill during a checkpoint write left a 0-byte hidden .partial file that nothing removed."""
    import socket
    import time

    from recbole_iacn.checkpoint import atomic_save, remove_stale_partials, temp_prefix

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "saved"
    folder.mkdir()
    killed = folder / f"{temp_prefix('DIN-x.pth', pid=dead.pid)}abcd1234.partial"
    running = folder / f"{temp_prefix('DIN-y.pth')}abcd1234.partial"  # this process: still writing
    other_host = folder / f".DIN-z.pth.w{dead.pid}@not-{socket.gethostname()}.abcd1234.partial"
    legacy_old, legacy_new = folder / ".DIN-u.pth.abcd1234.partial", folder / ".DIN-v.pth.efgh5678.partial"
    for path in (killed, running, other_host, legacy_old, legacy_new):
        path.write_bytes(b"")
    an_hour_ago = time.time() - 2 * 3600
    os.utime(legacy_old, (an_hour_ago, an_hour_ago))
    assert sorted(p.name for p in remove_stale_partials(folder)) == sorted([killed.name, legacy_old.name])
    assert sorted(p.name for p in folder.iterdir()) == sorted([running.name, other_host.name, legacy_new.name])
    atomic_save({"x": 1}, folder / "DIN-w.pth")  # a write leaves no partial of its own
    assert sorted(p.name for p in folder.iterdir()) == sorted([running.name, other_host.name, legacy_new.name,
                                                               "DIN-w.pth"])


def test_a_new_run_removes_partial_files_of_killed_writes(tmp_path):
    from recbole_iacn.checkpoint import temp_prefix
    from tests.test_faults import _trainer

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / "data"
    write_dataset(root)
    saved = tmp_path / "saved"
    saved.mkdir()
    killed = saved / f"{temp_prefix('DIN-x.pth', pid=dead.pid)}abcd1234.partial"
    killed.write_bytes(b"")
    _trainer((root, None), saved)
    assert not killed.exists()


# ------------------------------------------------------------------------------ case 15: Ctrl-C while a file is read
def _ctrl_c_on_text_read(monkeypatch, suffix: str):
    """Ctrl-C arrives while pandas reads the file ending in ``suffix``: the signal is sent from inside the
    read its C parser calls, as a real Ctrl-C lands there."""
    import builtins
    import signal

    real_open = builtins.open

    class Interrupting:
        def __init__(self, handle):
            self._handle = handle

        def read(self, *args):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("pandas"):  # read by pandas' C parser
                os.kill(os.getpid(), signal.SIGINT)
            return self._handle.read(*args)

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __iter__(self):
            return iter(self._handle)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._handle.__exit__(*exc)

    def opening(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return Interrupting(handle) if str(path).endswith(suffix) and "r" in mode else handle

    monkeypatch.setattr(builtins, "open", opening)


def test_ctrl_c_while_the_train_file_is_read_exits_130(tmp_path, monkeypatch, capsys):
    """Case 15: Ctrl-C while the train file was read exited 2 with "Error tokenizing data ... Every row must
    have as many values", blaming an intact file."""
    from recbole_iacn import cli

    root = tmp_path / "data"
    write_dataset(root)
    _ctrl_c_on_text_read(monkeypatch, "tiny.train.inter")
    status = cli.main(["--model=DIN", "--dataset=tiny", f"--data_path={root}",
                       *[f"--{k}={v}" for k, v in FAST.items()]])
    err = capsys.readouterr().err
    assert status == 130 and "interrupted" in err and "tokenizing" not in err


def test_ctrl_c_while_the_converter_reads_exits_130(tmp_path, monkeypatch, capsys):
    from tests.test_faults import _raw_dataset

    source = _raw_dataset(tmp_path / "src")
    _ctrl_c_on_text_read(monkeypatch, "raw.inter")
    status, printed = _convert(capsys, "recbole", "--source-dir", str(source), "--source-name", "raw",
                               "--out", str(tmp_path / "out"), "--name", "x")
    assert status == 130 and printed.err.strip() == "interrupted" and not (tmp_path / "out" / "x").exists()


# ------------------------------------------------------------------------------ case 7: package default files
def test_resuming_a_study_after_editing_a_package_default_file_is_refused(tmp_path, monkeypatch):
    """Case 7: a study resumed after properties/model/DIN.yaml changed embedding_size mixed both in one table."""
    from recbole_iacn.tune.driver import check_resumable, study_definition, write_definition
    from recbole_iacn.tune.space import load_space
    from tests.conftest import configure_field_names

    props = configure_field_names(tmp_path, monkeypatch)  # a copy of properties/ the test may edit
    space_file = tmp_path / "space.yaml"
    space_file.write_text("search: grid\nparams:\n  iacn_delta: {grid_search: [0.1, 0.3]}\n", encoding="utf-8")
    space = load_space(space_file)
    write_definition(tmp_path / "study", study_definition("DIN_IaCN", "syn", space, [], {}))
    check_resumable(tmp_path / "study", study_definition("DIN_IaCN", "syn", space, [], {}))
    model_file = props / "model" / "DIN.yaml"
    text = model_file.read_text(encoding="utf-8")
    model_file.write_text(re.sub(r"^embedding_size: *\d+", "embedding_size: 32", text, flags=re.M), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"DIN\.yaml: embedding_size was 18, now 32"):
        check_resumable(tmp_path / "study", study_definition("DIN_IaCN", "syn", space, [], {}))


# ------------------------------------------------------------------------------ case 8: one log file per run
def test_runs_started_together_with_the_same_settings_write_their_own_log_files(tmp_path, monkeypatch):
    """Case 8: two runs with the same settings started in the same second appended to one log file."""
    import recbole.utils.logger as recbole_logger

    from tests.test_dataset import load

    monkeypatch.setattr(recbole_logger, "get_local_time", lambda: "Dec-06-2026_00-00-00")  # the same second
    write_dataset(tmp_path)
    load(tmp_path)
    load(tmp_path)
    logs = sorted(p.name for p in (tmp_path / "log" / "DIN").iterdir())
    assert len(logs) == 2 and str(os.getpid()) in logs[0], logs


# ------------------------------------------------------------------------------ case 9: --nproc beyond the machine
def test_more_cpu_processes_than_cores_are_refused_before_spawning(tmp_path, monkeypatch):
    """Case 9: --nproc=1000 on a CPU machine spawned hundreds of ranks and exhausted the memory."""
    import torch.multiprocessing

    from recbole_iacn.distributed.settings import available_cores
    from recbole_iacn.quick_start import run

    def no_spawn(*args, **kwargs):
        raise AssertionError("ranks were spawned")

    monkeypatch.setattr(torch.multiprocessing, "start_processes", no_spawn)
    write_dataset(tmp_path)
    cores = available_cores()
    with pytest.raises(ConfigError, match=rf"--nproc={cores + 1}.*{cores} CPU core"):
        run("DIN", "tiny", config_dict={**FAST_HOST, "data_path": str(tmp_path), "nproc": cores + 1, "use_gpu": False})


def _ranks(token: str) -> list:
    """The run's ranks: its processes that multiprocessing spawned (not the launcher nor its resource tracker)."""
    from tests.test_distributed import processes_with_token

    ranks = []
    for pid in processes_with_token(token):
        try:
            if b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                ranks.append(pid)
        except OSError:
            continue
    return ranks


def _described(pids) -> list:
    described = []
    for pid in pids:
        try:
            ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            described.append(f"{pid} (parent {ppid}): {cmdline[:160]}")
        except OSError:
            continue
    return described


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("slow_start, delay", [(True, 0.0), (False, 0.0), (False, 1.0)],
                         ids=["ranks-slow-to-start", "ranks-just-spawned", "ranks-importing"])
def test_ranks_never_outlive_a_launcher_killed_while_they_start(tmp_path, syn_root, slow_start, delay):
    """Case 9, orphans: SIGKILL to the launcher of --nproc=2 as soon as its ranks' processes appear (or 1 s
    later, while they import torch): within 5 s no process of the run is left. A rank armed PR_SET_PDEATHSIG
    once it had imported torch, so ranks of a launcher killed before lived on, with parent 1, until then (for
    good on a machine out of memory). ``slow_start``: the ranks' start-up takes 60 s (tests/fixtures/rank_fault
    sleeps in them before any import), as importing torch can on a loaded machine."""
    from tests.test_distributed import (RANK_FAULT, cli_command, cli_env, free_port, processes_with_token,
                                        stop_everything, wait_until)

    token = uuid.uuid4().hex
    extra = {"PYTHONPATH": os.pathsep.join([str(RANK_FAULT), str(REPO)]),
             "RECBOLE_IACN_TEST_SLOW_START": "60"} if slow_start else {}
    command = cli_command(syn_root, free_port(), epochs=50, checkpoint_dir=tmp_path / "saved")
    with open(tmp_path / "stderr.txt", "w", encoding="utf-8") as stderr:
        launcher = subprocess.Popen(command, cwd=tmp_path, env=cli_env(token, **extra), stdout=subprocess.DEVNULL,
                                    stderr=stderr)
    try:
        started = wait_until(lambda: len(_ranks(token)) == 2 or launcher.poll() is not None, 180, step_s=0.01)
        assert started and launcher.poll() is None, (tmp_path / "stderr.txt").read_text(encoding="utf-8")[-2000:]
        time.sleep(delay)
        launcher.kill()
        launcher.wait(10)
        assert wait_until(lambda: not processes_with_token(token), 5), _described(processes_with_token(token))
    finally:
        stop_everything(launcher, token)


# ------------------------------------------------------------------------------ case 4: DDP best valid
def test_the_best_valid_of_two_processes_is_what_its_checkpoint_scores(tmp_path, syn_root):
    """Case 4: with --nproc=2 the printed best valid was not what the checkpoint scores on valid."""
    from recbole_iacn.pipeline import prepare
    from recbole_iacn.quick_start import run
    from recbole_iacn.trainer import trainer_class
    from tests.conftest import SYN_DATASET, SYN_MODEL
    from tests.test_distributed import TINY, free_port

    settings = {**TINY, "data_path": syn_root, "checkpoint_dir": str(tmp_path)}
    two = run(SYN_MODEL, SYN_DATASET, config_dict=settings, nproc=2, ip="127.0.0.1", port=free_port())
    prepared = prepare(SYN_MODEL, SYN_DATASET, config_dict=settings)
    trainer = trainer_class(prepared.config, True)(prepared.config, prepared.model_class(
        prepared.config, prepared.train_data._dataset))
    valid = trainer.evaluate(prepared.valid_data, load_best_model=True, model_file=two["model_file"])
    assert valid["auc"] == pytest.approx(two["best_valid_result"]["auc"], abs=1e-9)
    assert valid["logloss"] == pytest.approx(two["best_valid_result"]["logloss"], abs=1e-6)


# ------------------------------------------------------------------------------ file modes follow the umask
@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_checkpoints_follow_the_umask(tmp_path, umask_022):
    """Checkpoints were 0600 whatever the umask (mkstemp's mode): a group could not read a shared run's."""
    from recbole_iacn.checkpoint import atomic_save

    atomic_save({"x": 1}, tmp_path / "model.pth")
    assert _mode(tmp_path / "model.pth") == 0o644


def test_built_datasets_follow_the_umask(tmp_path, capsys, umask_022):
    """Dataset folders were 0700 whatever the umask (mkdtemp's mode)."""
    status, _ = _convert(capsys, "synthetic", "--scale", "0.001", "--out", str(tmp_path), "--name", "x")
    assert status == 0 and _mode(tmp_path / "x") == 0o755
    assert {_mode(p) for p in (tmp_path / "x").iterdir()} == {0o644}


def test_cached_views_follow_the_umask(tmp_path, umask_022):
    from recbole_iacn.data.prepare import resolve_ctr_dataset
    from tests.test_faults import _raw_dataset, _view_config

    _raw_dataset(tmp_path / "raw")
    view = Path(resolve_ctr_dataset(_view_config(tmp_path)))
    assert _mode(view) == 0o755 and {_mode(p) for p in view.iterdir()} == {0o644}


def test_atomic_write_stages_beside_the_file_and_cleans_up(tmp_path, umask_022):
    """One write-then-rename for every single-file output: a hidden staging file with the writer's pid, the
    final mode from the umask, and on an error the previous file kept and no staging file left."""
    from recbole_iacn.checkpoint import _TEMP_NAME, atomic_write

    target = tmp_path / "report.json"
    with atomic_write(target) as staging:
        assert Path(staging).parent == tmp_path and _TEMP_NAME.match(Path(staging).name)
        assert f".w{os.getpid()}@" in Path(staging).name and not target.exists()
        Path(staging).write_text("new", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "new" and _mode(target) == 0o644
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_write(target, fsync=True) as staging:
            Path(staging).write_text("half", encoding="utf-8")
            raise RuntimeError("writer failed")
    assert target.read_text(encoding="utf-8") == "new" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_ctrl_c_during_explain_exits_130(monkeypatch, capsys):
    """Ctrl-C must always mean exit 130: explain let the KeyboardInterrupt end in a traceback."""
    from recbole_iacn import explain
    from recbole_iacn.explain.__main__ import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(explain, "explain", interrupted)
    assert main(["--model-file", "m.pth", "--users", "u1"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_the_converter_removes_staging_folders_of_killed_builds(tmp_path, capsys):
    """A kill -9 during `python -m recbole_iacn.data` left its hidden .NAME.building-* folder for good."""
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".x.building-{socket.gethostname()}-{dead.pid}-abcd1234"
    killed.mkdir()
    (killed / "x.train.inter").write_text("partial", encoding="utf-8")
    status, _ = _convert(capsys, "synthetic", "--scale", "0.001", "--out", str(tmp_path), "--name", "x")
    assert status == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["x"]


@pytest.mark.parametrize("moment", ["between the renames", "after the swap"])
def test_the_converter_finishes_a_swap_that_was_killed(tmp_path, capsys, moment):
    """kill -9 during the converter's swap, which carries over what the build does not own (raw files, a
    ``ctr/`` cache): between its two renames the earlier folder, set aside as ``.NAME.old-HOST-PID-*``, is put
    back; after them, what it still holds and the new folder lacks is carried over. Nothing is lost."""
    import socket

    from recbole_iacn.data.staging import remove_stale_staging

    status, _ = _convert(capsys, "synthetic", "--scale", "0.001", "--out", str(tmp_path), "--name", "x")
    assert status == 0
    folder = tmp_path / "x"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    aside = tmp_path / f".x.old-{socket.gethostname()}-{dead.pid}-abcd1234"
    if moment == "between the renames":
        (folder / "x.inter").write_text("raw", encoding="utf-8")
        before = sorted(p.name for p in folder.iterdir())
        os.rename(folder, aside)
    else:
        aside.mkdir()
        (aside / "x.inter").write_text("raw", encoding="utf-8")
        before = sorted([p.name for p in folder.iterdir()] + ["x.inter"])
    assert remove_stale_staging(folder) == [aside]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"] and sorted(p.name for p in folder.iterdir()) == before
    assert (folder / "x.inter").read_text(encoding="utf-8") == "raw"


def test_ctrl_c_of_a_multi_process_run_prints_an_interrupted_line(monkeypatch, capsys):
    """Found by the fault injection: a SIGINT'd --nproc=2 run ended with 'error: Stopped by SIGINT: ...'."""
    import signal

    from recbole_iacn import cli, pipeline
    from recbole_iacn.errors import LaunchInterrupted

    def stopped(*args, **kwargs):
        raise LaunchInterrupted(signal.SIGINT)

    monkeypatch.setattr(pipeline, "run", stopped)
    assert cli.main(["--model=DIN", "--dataset=ml-100k", "--epochs=1"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("interrupted") and "rank" in err[-1]


def test_ctrl_c_while_the_converter_starts_exits_130(monkeypatch, capsys):
    """Found by the fault injection: Ctrl-C while `python -m recbole_iacn.data` imported numpy and pandas
    (before main's error handling) ended in a KeyboardInterrupt traceback, exit -2. The module now imports
    them inside main, which turns Ctrl-C into 'interrupted', exit 130."""
    from recbole_iacn.data import __main__ as converter

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(converter, "make_parser", interrupted)
    assert converter.main(["synthetic"]) == 130 and capsys.readouterr().err.strip() == "interrupted"
    code = "import sys, recbole_iacn.data.__main__; print(sorted({'numpy', 'pandas'} & set(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_explain_imports_torch_only_inside_main():
    """Found by the fault injection: Ctrl-C while `python -m recbole_iacn.explain` imported torch (in the
    package, before main's handler) ended in a KeyboardInterrupt traceback, exit -2. numpy and pandas, which
    the package imported too (through recbole_iacn.checkpoint and .histories), take a second on a loaded machine."""
    code = ("import sys, recbole_iacn.explain.__main__; "
            "print(sorted({'torch', 'numpy', 'pandas'} & set(sys.modules)))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def _ctrl_c_in_a_finaliser() -> None:
    """Ctrl-C landing in a finaliser (``__del__``), where Python cannot raise its KeyboardInterrupt."""

    class Finalised:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
            for _ in range(1000):  # Python runs the handler here, where its KeyboardInterrupt cannot propagate
                pass

    Finalised()  # dropped at once: its __del__ runs


@pytest.mark.parametrize("command", ["explain", "converter", "run_recbole_iacn"])
def test_ctrl_c_that_lands_in_a_finaliser_still_exits_130(command, monkeypatch, capsys):
    """Found by the fault injection: Ctrl-C 2.3 s into `python -m recbole_iacn.explain`, while torch was
    imported, landed in a finaliser (__del__): Python printed 'Exception ignored in ...' and a KeyboardInterrupt
    traceback there and went on, and explain printed its result and exited 0. The other two commands did the same."""
    if command == "explain":
        from recbole_iacn import explain
        from recbole_iacn.explain.__main__ import main

        def explained(*args, **kwargs):
            _ctrl_c_in_a_finaliser()
            return {"kind": "explanation", "users": []}

        monkeypatch.setattr(explain, "explain", explained)
        argv = ["--model-file", "m.pth", "--users", "u1"]
    elif command == "converter":
        from recbole_iacn.data import __main__ as converter

        def built(args):
            _ctrl_c_in_a_finaliser()
            return {"name": "x"}

        monkeypatch.setattr(converter, "run", built)
        main, argv = converter.main, ["synthetic", "--out", "out"]
    else:
        from recbole_iacn import cli, pipeline

        def trained(*args, **kwargs):
            _ctrl_c_in_a_finaliser()
            return {"best_valid_result": {"auc": 0.5}, "test_result": {"auc": 0.5}, "model_file": "m.pth"}

        monkeypatch.setattr(pipeline, "run", trained)  # what the command line calls, after its settings check
        main, argv = cli.main, ["--model=DIN", "--dataset=ml-100k", "--epochs=1"]
    assert main(argv) == 130
    printed = capsys.readouterr()
    assert printed.err.strip().splitlines()[-1:] == ["interrupted"] and printed.out == ""
    assert "Traceback" not in printed.err


def test_a_ctrl_c_caught_inside_code_run_by_exec_still_exits_130(tmp_path):
    """Seen at 3 and 4 s into `python -m recbole_iacn.explain`: it printed 'interrupted' and ended by SIGINT
    (status -2), not 130. CPython ends a `python -m` command so when a KeyboardInterrupt left code run by exec()
    of a string, even one caught afterwards: dataclasses and namedtuple make their methods so, as torch's import
    does many times. The guard's exit clears that mark."""
    (tmp_path / "ctrl_c_in_exec.py").write_text(textwrap.dedent("""\
        import sys

        from recbole_iacn.errors import CtrlC


        def main():
            with CtrlC() as ctrl_c:
                try:
                    exec("import signal\\nsignal.raise_signal(signal.SIGINT)\\nfor _ in range(1000):\\n    pass")
                except KeyboardInterrupt:
                    return ctrl_c.exit()
            return 0


        sys.exit(main())
        """), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "ctrl_c_in_exec"], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert (done.returncode, done.stderr.strip()) == (130, "interrupted")


def test_ctrl_c_while_a_finished_command_shuts_down_keeps_its_status(tmp_path):
    """Seen 4 s into `python -m recbole_iacn.explain` (CI, 2026-12-06): the work done and its summary printed, a
    Ctrl-C during Python's shutdown ended the process by SIGINT (status -2) and no word: CPython resets Python's
    handler to the system's there. Under run_command, Ctrl-C is ignored once main has returned; main() called
    from Python gets its caller's handler back."""
    (tmp_path / "finished_command.py").write_text(textwrap.dedent("""\
        import atexit
        import signal
        import sys
        import time

        from recbole_iacn.errors import CtrlC, run_command


        def main():
            with CtrlC() as ctrl_c:
                try:
                    print("done", flush=True)
                    return int(sys.argv[1])
                except KeyboardInterrupt:
                    return ctrl_c.exit()


        atexit.register(lambda: time.sleep(1.5))  # a slow shutdown, as torch's
        if sys.argv[2] == "command":
            run_command(main)
        before = signal.getsignal(signal.SIGINT)
        main()
        print(signal.getsignal(signal.SIGINT) is before, flush=True)
        """), encoding="utf-8")

    def interrupted_after(*argv):
        process = subprocess.Popen([sys.executable, "-m", "finished_command", *argv], cwd=tmp_path,
                                   env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        lines = [process.stdout.readline() for _ in range(1 if argv[1] == "command" else 2)]
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        return process.returncode, [line.strip() for line in lines], err

    assert interrupted_after("0", "command") == (0, ["done"], "")
    assert interrupted_after("2", "command") == (2, ["done"], "")
    status, printed, err = interrupted_after("0", "library")  # the caller's own handler is back: it raises
    assert printed == ["done", "True"] and "KeyboardInterrupt" in err  # (raised in the atexit callback)


def test_a_command_that_started_native_threads_ends_without_the_teardown(tmp_path):
    """Issue 31: a study whose Ctrl-C landed as ``ray.init`` finished printed 'interrupted' and then died with
    status -11 in the interpreter's teardown (3 times in 28 tries, after faulthandler had stopped: in Ray's
    native destructors). After skip_native_teardown, run_command ends the process once the exit handlers have
    run and the streams are flushed, skipping that teardown. Here the teardown's crash is planted: a module-level
    object whose finaliser raises SIGSEGV, run when the interpreter clears the modules (after atexit)."""
    (tmp_path / "native_teardown.py").write_text(textwrap.dedent("""\
        import atexit
        import os
        import signal
        import sys

        from recbole_iacn.errors import CtrlC, run_command, skip_native_teardown


        class CrashesInTeardown:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGSEGV)


        crash = CrashesInTeardown()
        atexit.register(lambda: open(sys.argv[3], "w").write("atexit ran"))


        def main():
            with CtrlC():
                if sys.argv[2] == "skip":
                    skip_native_teardown()
                sys.stdout.write("unflushed output")  # no newline, no flush: exit must flush it
                return int(sys.argv[1])


        run_command(main)
        """), encoding="utf-8")

    def run(status, mode):
        marker = tmp_path / f"atexit-{status}-{mode}"
        done = subprocess.run([sys.executable, "-m", "native_teardown", str(status), mode, str(marker)],
                              cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                              text=True, timeout=60)
        return done.returncode, done.stdout, marker.is_file()

    assert run(0, "teardown") == (-signal.SIGSEGV, "unflushed output", True)  # the crash is real without it
    assert run(0, "skip") == (0, "unflushed output", True)
    assert run(130, "skip") == (130, "unflushed output", True)


def test_a_study_shuts_ray_down_when_ctrl_c_lands_in_ray_init(monkeypatch):
    """The study's Ray is shut down whatever ends it, a Ctrl-C inside ``ray.init`` included (Ray is then half
    started), with Ctrl-C ignored while it shuts down; and the command is marked to end without the teardown."""
    ray = pytest.importorskip("ray")
    from recbole_iacn import errors
    from recbole_iacn.tune import driver

    calls, state = [], {"up": False}

    def interrupted_init(**kwargs):
        state["up"] = True  # half started: the node's processes run, the driver is not connected
        raise KeyboardInterrupt

    def shutdown():
        calls.append(signal.getsignal(signal.SIGINT))
        state["up"] = False

    monkeypatch.setattr(ray, "init", interrupted_init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", shutdown)
    monkeypatch.setitem(errors._COMMAND, "skip_teardown", False)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with driver.ray_session(None):
            raise AssertionError("the study must not start")
    assert calls == [signal.SIG_IGN] and not state["up"]  # shut down once, Ctrl-C ignored meanwhile
    assert signal.getsignal(signal.SIGINT) is before
    assert errors._COMMAND["skip_teardown"]

    calls.clear()
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # a Ray the caller started is left running
    with driver.ray_session(None):
        pass
    assert calls == []


def test_ctrl_c_at_any_moment_of_explain_exits_130(iacn_checkpoint, tmp_path):
    """Ctrl-C at several moments of `python -m recbole_iacn.explain`, from 0.05 s to 4 s after the package
    recbole_iacn.explain was imported (`-X importtime` reports it): main's imports of numpy, pandas and torch,
    loading the checkpoint, explaining, writing. Each exits 130 with the one line 'interrupted' and no traceback.
    Before that moment only Python's start-up and a few standard-library modules run (see the test above: ~20 ms
    on an idle machine; here, under a load of 10 on 2 cores, a signal 0.1 s after Python's start-up landed there
    once in 7 runs)."""
    import threading

    command = [sys.executable, "-X", "importtime", "-m", "recbole_iacn.explain", "--model-file", str(iacn_checkpoint),
               "--users", "u1", "--candidate", "i2", "--out", str(tmp_path / "out"), "--no-plots"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    landed, wrong = [], []
    for delay in (0.05, 0.2, 0.5, 1.0, 2.0, 3.0, 4.0):
        stdout = tmp_path / f"stdout-{delay}"
        with stdout.open("w") as out:
            process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        lines, imported = [], threading.Event()

        def read(process=process, lines=lines, imported=imported):
            for line in process.stderr:
                lines.append(line)
                if line.rstrip().endswith("| recbole_iacn.explain"):
                    imported.set()
            imported.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert imported.wait(120)
        try:
            process.wait(timeout=delay)  # finished before the signal: that moment did not come
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            landed.append(delay)
        process.wait(120)
        reader.join(10)
        err = "".join(line for line in lines if not line.startswith("import time:"))
        # a signal after main returned (the summary printed) finds Python shutting down: the status stays 0
        finished = process.returncode == 0 and stdout.read_text().rstrip().endswith("explanations.json")
        if delay in landed and not finished and (
                process.returncode != 130 or "Traceback" in err or "Exception ignored" in err
                or err.strip().splitlines()[-1:] != ["interrupted"]):
            wrong.append((delay, process.returncode, err[-1500:]))
    assert not wrong, wrong
    assert len(landed) >= 3, f"explain ended before most signals: {landed}"


