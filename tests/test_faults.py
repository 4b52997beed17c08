"""Issue 19: nothing lost, nothing silently wrong under bad files, Ctrl-C, kill -9 and concurrent runs.

Each test reproduces one case of the issue; the slow, randomised version of the kill tests is
``benchmarks/fault_injection.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recbole_iacn import cli
from recbole_iacn.errors import CheckpointError, ConfigError, DataFormatError
from tests.conftest import FAST, FAST_HOST
from tests.test_dataset import HEADER, ROWS, load, write_dataset

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ atomic files (case 1, 6)
def test_byte_order_mark_in_a_header_is_ignored(tmp_path):
    """Case 1: a UTF-8 BOM made the first field '\\ufefflabel' and every label 0.5."""
    folder = write_dataset(tmp_path)
    train = folder / "tiny.train.inter"
    train.write_bytes(b"\xef\xbb\xbf" + train.read_bytes())
    data = load(tmp_path).dataset
    assert "\ufefflabel" not in data.field2type
    assert sorted(set(data.inter_feat["label"].tolist())) == [0.0, 1.0]


def test_a_field_missing_from_one_split_is_refused(tmp_path):
    """Case 1: a header field present in only some split files was filled with its mean."""
    header = "label:float\tuser_id:token\titem_id:token\titem_id_list:token_seq\tcate_id_list:token_seq\tprice:float\n"
    rows = "".join(r.rstrip("\n") + "\t1.5\n" for r in ROWS)
    folder = write_dataset(tmp_path, train=header + rows)
    with pytest.raises(DataFormatError, match=r"price") as error:
        load(tmp_path)
    message = str(error.value)
    assert str(folder / "tiny.train.inter") in message and "tiny.valid.inter" in message


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_a_split_without_rows_is_refused(tmp_path, split):
    """Case 6: a header-only test file gave an empty 'test result:'."""
    folder = write_dataset(tmp_path, **{split: HEADER})
    with pytest.raises(DataFormatError, match="has no rows") as error:
        load(tmp_path)
    assert str(folder / f"tiny.{split}.inter") in str(error.value)


def test_behaviour_lists_of_different_lengths_are_refused(tmp_path):
    """Case 6: item_id_list and cate_id_list of different lengths in one row were accepted."""
    folder = write_dataset(tmp_path, train=HEADER + ROWS[0] + "1\tu2\ti2\ti1 i3\tc1\n")
    with pytest.raises(DataFormatError, match=r"line 3: item_id_list has 2 behaviours but cate_id_list has 1"):
        load(tmp_path)
    assert folder.exists()


def test_behaviours_missing_from_the_item_file_are_refused(tmp_path):
    """Case 6: history tokens that appear in no item row silently became new items."""
    write_dataset(tmp_path, train=HEADER + ROWS[0] + "1\tu2\ti2\ti1 i99\tc1 c1\n")
    with pytest.raises(DataFormatError, match=r"tiny.train.inter, line 3: item_id_list holds 'i99'.*tiny.item"):
        load(tmp_path)


def test_history_field_declared_as_token_is_explained(tmp_path):
    """A header declaring item_id_list:token instead of token_seq ended in a traceback."""
    header = HEADER.replace("item_id_list:token_seq", "item_id_list:token")
    write_dataset(tmp_path, train=header + ROWS[0], valid=header + ROWS[1], test=header + ROWS[2])
    with pytest.raises(DataFormatError, match=r"item_id_list.*token_seq"):
        load(tmp_path)


# ------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    "arg, message",
    [
        ("--epochs=0", "epochs expects an integer >= 1"),
        ("--train_batch_size=0", "train_batch_size expects an integer >= 1"),
        ("--learning_rate=-1", "learning_rate expects a number > 0"),
        ("--iacn_lambda=.inf", "iacn_lambda expects a number >= 0"),
        ("--iacn_delta=.nan", "iacn_delta expects a number in"),
        ("--eval_step=.inf", "eval_step"),
    ],
)
def test_invalid_values_on_the_command_line_exit_2(capsys, arg, message):
    assert cli.main(["--model=DIN_IaCN", "--dataset=ml-100k", arg]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: ten\n", "epochs expects an integer"),
        ("seed: 3\nepochs: 0\n", "epochs expects an integer >= 1"),
        ("learning_rate: -1\n", "learning_rate expects a number > 0"),
        ("iacn_lambda: .inf\n", "iacn_lambda expects a number >= 0"),
        ("eval_step: ten\n", "eval_step expects an integer"),
    ],
)
def test_invalid_values_in_a_config_file_name_file_and_line(capsys, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert cli.main(["--model=DIN_IaCN", "--dataset=ml-100k", f"--config_files={path}"]) == 2
    err = capsys.readouterr().err
    assert message in err and f"{path}, line {text.count(chr(10))}" in err


def test_misspelled_settings_get_a_did_you_mean_warning(capsys, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("seed: 3\niacn_lamda: 0.5\n", encoding="utf-8")
    overrides = cli.build_overrides({"iacn_detla": "0.3"}, "DIN_IaCN", "ml-100k", [str(path)])
    err = capsys.readouterr().err
    assert overrides == {"iacn_detla": 0.3}
    assert "iacn_detla is not a known setting (did you mean 'iacn_delta'?)" in err
    assert f"{path}, line 2: iacn_lamda is not a known setting (did you mean 'iacn_lambda'?)" in err


def test_bad_search_space_value_exits_2_without_suggesting_resume(capsys, tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("search: grid\nparams:\n  iacn_delta: {grid_search: [1.5]}\n", encoding="utf-8")
    assert cli.main(["--model=DIN_IaCN", "--dataset=ml-100k", f"--tune={space}"]) == 2
    err = capsys.readouterr().err
    assert "params.iacn_delta" in err and "1.5" in err
    assert "resum" not in err.lower() and "Traceback" not in err


# ------------------------------------------------------------------------------ a trained model
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DIN trained 1 epoch on the tiny dataset: (data root, checkpoint path)."""
    from recbole_iacn.quick_start import run

    root = tmp_path_factory.mktemp("faults")
    write_dataset(root)
    saved = root / "saved"
    result = run("DIN", "tiny", config_dict={**FAST_HOST, "data_path": str(root), "checkpoint_dir": str(saved)})
    return root, result["model_file"]


@pytest.mark.parametrize(
    "records, message",
    [
        ([{"user_id": "u1", "item_id_list": "i1 i2", "cate_id_list": "c1 c1"}], "item_id"),
        ([], "no records"),
        ([{"user_id": "u1", "item_id": "i5", "item_id_list": None, "cate_id_list": None}], "item_id_list"),
        ("i5", "records"),
    ],
)
def test_predict_refuses_bad_records_clearly(trained, records, message):
    from recbole_iacn.quick_start import load_model

    model = load_model(trained[1])
    with pytest.raises(DataFormatError, match=message):
        model.predict(records)


def _tamper(path, target, change):
    """An edit made with care: the content digest is recomputed, so the checks behind it are reached."""
    import torch

    from recbole_iacn.checkpoint import DIGEST_KEY, content_digest

    state = torch.load(path, weights_only=True)
    change(state)
    if isinstance(state, dict):
        state[DIGEST_KEY] = content_digest(state)
    torch.save(state, target)
    return target


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(model="NoSuchModel"), "model 'NoSuchModel'"),
        (lambda s: s.pop("model"), "lacks"),
        (lambda s: s["config"].update(embedding_size=5), "do not fit"),
        (lambda s: s.pop("state_dict"), "lacks"),
        (lambda s: s.update(schema="x"), "schema"),
    ],
)
def test_tampered_checkpoints_give_checkpoint_error(trained, tmp_path, change, message):
    from recbole_iacn.quick_start import load_model

    path = _tamper(trained[1], tmp_path / "tampered.pth", change)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", b"\x80\x02}q\x00."])
def test_empty_or_truncated_checkpoint_gives_checkpoint_error(tmp_path, content):
    from recbole_iacn.quick_start import load_model

    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_model(path)


def test_truncated_real_checkpoint_gives_checkpoint_error(trained, tmp_path):
    from recbole_iacn.quick_start import load_model

    data = Path(trained[1]).read_bytes()
    path = tmp_path / "half.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_model(path)


# ------------------------------------------------------------------------------ checkpoints (cases 3, 4)
def _trainer(trained, checkpoint_dir):
    from recbole_iacn.pipeline import prepare
    from recbole_iacn.trainer import trainer_class

    root, _ = trained
    prepared = prepare("DIN", "tiny", config_dict={**FAST, "data_path": str(root), "checkpoint_dir": str(checkpoint_dir)})
    net = prepared.model_class(prepared.config, prepared.train_data._dataset)
    return trainer_class(prepared.config, True)(prepared.config, net)


def test_checkpoint_names_are_unique_per_run(trained, tmp_path):
    """Case 3: two runs started in the same second wrote the same file."""
    tmp_path = tmp_path / "saved"
    first, second = _trainer(trained, tmp_path), _trainer(trained, tmp_path)
    assert first.saved_model_file != second.saved_model_file
    assert str(os.getpid()) in Path(first.saved_model_file).name
    first._save_checkpoint(0, verbose=False)
    second._save_checkpoint(0, verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        Path(t.saved_model_file).name for t in (first, second))


def test_a_write_interrupted_midway_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    """Case 4: kill -9 while a better epoch was written left a 0-byte file; the best model was gone."""
    import torch

    from recbole_iacn.quick_start import load_model

    tmp_path = tmp_path / "saved"
    trainer = _trainer(trained, tmp_path)
    trainer._save_checkpoint(0, verbose=False)
    before = Path(trainer.saved_model_file).read_bytes()

    def dies_midway(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        trainer._save_checkpoint(1, verbose=False)
    assert Path(trainer.saved_model_file).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [Path(trainer.saved_model_file).name]
    monkeypatch.undo()
    assert load_model(trainer.saved_model_file).model is not None


def test_ctrl_c_during_training_names_the_best_checkpoint_and_exits_130(trained, tmp_path, monkeypatch, capsys):
    from recbole_iacn import trainer as trainer_module
    from recbole_iacn.quick_start import load_model

    root, _ = trained
    calls = []
    original = trainer_module.CompiledLossMixin._train_epoch

    def train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        calls.append(epoch_idx)
        if epoch_idx == 1:
            raise KeyboardInterrupt
        return original(self, train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    monkeypatch.setattr(trainer_module.CompiledLossMixin, "_train_epoch", train_epoch)
    argv = ["--model=DIN", "--dataset=tiny", f"--data_path={root}", f"--checkpoint_dir={tmp_path}",
            *[f"--{k}={v}" for k, v in {**FAST, "epochs": 3}.items()]]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("interrupted; the best checkpoint so far is ")
    path = err[-1].split(" is ", 1)[1].rstrip(".")
    assert load_model(path).model is not None and calls == [0, 1]


# ------------------------------------------------------------------------------ cached datasets (case 5)
def _raw_dataset(folder: Path, name="raw"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(12):
        for k in range(6):
            lines.append(f"u{u}\ti{(u * 3 + k * 5) % 17}\t{k}")
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _view_config(root, name="raw"):
    return {"dataset": name, "data_path": str(root / name), "ctr_protocol": "dense", "ctr_seed": 2020,
            "ctr_max_history": 10, "ctr_neg_sampling": "popularity", "show_progress": False, "download": False}


@pytest.mark.parametrize("cut", ["mid-line", "line-end"])
def test_a_truncated_cached_view_is_rebuilt(tmp_path, cut):
    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "raw")
    config = _view_config(tmp_path)
    view = Path(resolve_ctr_dataset(dict(config)))
    train = view / "raw.train.inter"
    good = train.read_bytes()
    lines = good.splitlines(keepends=True)
    train.write_bytes(b"".join(lines[:-2]) + (lines[-2][:5] if cut == "mid-line" else b""))
    assert Path(resolve_ctr_dataset(dict(config))) == view
    assert train.read_bytes() == good


def test_a_touched_but_unchanged_view_is_kept(tmp_path):
    from recbole_iacn.data import prepare

    _raw_dataset(tmp_path / "raw")
    config = _view_config(tmp_path)
    view = Path(prepare.resolve_ctr_dataset(dict(config)))
    os.utime(view / "raw.train.inter", None)
    assert prepare.verify_build(view, "raw") == []


def test_a_changed_prepared_dataset_is_refused_with_the_fix(tmp_path):
    from recbole_iacn.data import build_from_atomic
    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "src")
    build_from_atomic(tmp_path / "src", "raw", tmp_path / "ds", "ds")
    test = tmp_path / "ds" / "ds.test.inter"
    test.write_bytes(test.read_bytes()[:-10])
    with pytest.raises(DataFormatError, match=r"ds.test.inter.*build.json") as error:
        resolve_ctr_dataset({**_view_config(tmp_path, "ds")})
    assert "python -m recbole_iacn.data" in str(error.value)


def test_stale_staging_folders_are_removed(tmp_path, caplog):
    """A killed view build's staging folder is removed by the next run (and logged); a live process's and
    a recent one without a process id are kept. Also the names earlier versions used (``.ctr-*``)."""
    import logging

    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "raw")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    raw = tmp_path / "raw"
    stale = [raw / f".ctr.building-{host}-{dead.pid}-abcd", raw / f".ctr-{host}-{dead.pid}-abcd"]
    alive = [raw / f".ctr.building-{host}-{os.getppid()}-efgh", raw / f".ctr-{host}-{os.getppid()}-efgh"]
    legacy = [raw / ".ctr.building-zz9y", raw / ".ctr-zz9y"]
    recent = raw / ".ctr.building-yy8x"
    for folder in stale + alive + legacy + [recent]:
        folder.mkdir(parents=True)
        (folder / "raw.train.inter").write_text("x", encoding="utf-8")
    old = time.time() - 2 * 3600
    for folder in legacy:
        os.utime(folder, (old, old))
    with caplog.at_level(logging.INFO):
        resolve_ctr_dataset(_view_config(tmp_path), logger=logging.getLogger("test-staging"))
    assert not any(p.exists() for p in stale + legacy) and all(p.exists() for p in alive) and recent.exists()
    removed = [r.getMessage() for r in caplog.records if "the staging folder of a build that was killed" in r.message]
    assert sorted(removed) == sorted(f"Removed {p}, the staging folder of a build that was killed." for p in
                                     stale + legacy)


def _hidden(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _contents(folder: Path) -> dict:
    return {p.name: p.read_bytes() if p.is_file() else None for p in sorted(folder.iterdir())}


def test_a_rebuilt_view_keeps_no_file_of_the_previous_one(tmp_path):
    """The view is a cache the package owns: a rebuild replaces it as a whole (the converter's folders carry
    over what the build does not own; the view must not, or a stale file would outlive its build)."""
    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "raw")
    view = Path(resolve_ctr_dataset(_view_config(tmp_path)))
    (view / "stray.txt").write_text("from the previous view", encoding="utf-8")
    (view / "raw.old-split.inter").write_text("x", encoding="utf-8")
    (view / "sub").mkdir()
    written = set(_contents(view)) - {"stray.txt", "raw.old-split.inter", "sub"}
    rebuilt = Path(resolve_ctr_dataset({**_view_config(tmp_path), "ctr_seed": 7}))
    assert rebuilt == view and set(_contents(view)) == written
    assert _hidden(tmp_path / "raw") == []


def test_the_old_view_stays_whole_until_the_new_one_is_in_place(tmp_path, monkeypatch):
    """During the swap: the earlier view is renamed aside whole and only emptied once the complete new one
    is in place; there is no moment with a half-written view under ``ctr/``."""
    from recbole_iacn.data import staging
    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "raw")
    view = Path(resolve_ctr_dataset(_view_config(tmp_path)))
    before = _contents(view)
    seen = []
    settle = staging._settle_aside

    def watched(aside, out_dir, owned):
        seen.append((_contents(aside) == before, sorted(_contents(out_dir)) == sorted(before),
                     '"seed": 7' in (out_dir / "raw.build.json").read_text(encoding="utf-8"), owned))
        settle(aside, out_dir, owned)

    monkeypatch.setattr(staging, "_settle_aside", watched)
    resolve_ctr_dataset({**_view_config(tmp_path), "ctr_seed": 7})
    assert seen == [(True, True, True, None)] and _hidden(tmp_path / "raw") == []


@pytest.mark.parametrize("where", ["build", "swap"])
def test_a_view_build_that_fails_leaves_the_old_view_untouched(tmp_path, monkeypatch, where):
    """A build that fails midway (or whose rename into place fails) leaves the earlier view exactly as it
    was, and no staging folder."""
    from recbole_iacn.data import prepare
    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "raw")
    view = Path(resolve_ctr_dataset(_view_config(tmp_path)))
    before = _contents(view)
    if where == "build":  # the split files are written, the build fails before it is complete
        def fail(folder, name):
            assert (Path(folder) / "raw.train.inter").is_file() and Path(folder).name.startswith(".ctr.building-")
            raise RuntimeError("failed midway")

        monkeypatch.setattr(prepare, "record_verified", fail)
    else:  # the earlier view is set aside, then the new one cannot be renamed in: the earlier one goes back
        rename = os.rename

        def fail(src, dst, *args, **kwargs):
            if Path(src).name.startswith(".ctr.building-"):
                raise RuntimeError("failed midway")
            return rename(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(RuntimeError, match="failed midway"):
        resolve_ctr_dataset({**_view_config(tmp_path), "ctr_seed": 7})
    assert _contents(view) == before and _hidden(tmp_path / "raw") == []


@pytest.mark.parametrize("moment", ["between the renames", "after the swap"])
def test_a_swap_killed_midway_is_finished_by_the_next_run(tmp_path, monkeypatch, moment):
    """kill -9 during the swap: between its two renames the view is set aside (``.ctr.replaced-HOST-PID-*``)
    and ``ctr/`` is missing: the next run puts it back (and uses it, no rebuild); after them, the next run
    removes the earlier view set aside."""
    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "raw")
    view = Path(resolve_ctr_dataset(_view_config(tmp_path)))
    before = _contents(view)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    aside = tmp_path / "raw" / f".ctr.replaced-{socket.gethostname()}-{dead.pid}-abcd"
    if moment == "between the renames":
        os.rename(view, aside)
    else:
        aside.mkdir()
        (aside / "stray.txt").write_text("from the previous view", encoding="utf-8")
    _no_rebuild(monkeypatch)
    assert Path(resolve_ctr_dataset(_view_config(tmp_path))) == view
    assert _contents(view) == before and _hidden(tmp_path / "raw") == []


#: The config keys naming the columns the CTR view writes (ITEM_LIST_LENGTH_FIELD is computed at load).
WRITTEN_FIELDS = ("LABEL_FIELD", "USER_ID_FIELD", "ITEM_ID_FIELD", "HISTORY_ITEM_FIELD", "HISTORY_CATEGORY_FIELD",
                  "ITEM_CATEGORY_FIELD")


def _view_headers(view: Path, name="raw") -> list:
    from recbole_iacn.data.common import read_header

    files = [f"{name}.{split}.inter" for split in ("train", "valid", "test")] + [f"{name}.item", f"{name}.user"]
    return [field for f in files for field, _ in read_header(view / f)]


def _no_rebuild(monkeypatch):
    from recbole_iacn.data import prepare

    def build_view(*args, **kwargs):
        raise AssertionError("the cached CTR view was rebuilt")

    monkeypatch.setattr(prepare, "build_view", build_view)


@pytest.mark.parametrize("key", WRITTEN_FIELDS)
def test_a_cached_view_is_rebuilt_when_a_written_field_name_changes(tmp_path, monkeypatch, key):
    from recbole_iacn.data.prepare import resolve_ctr_dataset, verify_build

    raw = _raw_dataset(tmp_path / "raw")
    (raw / "raw.user").write_text("user_id:token\tage:token\nu1\t20\n", encoding="utf-8")
    view = Path(resolve_ctr_dataset(_view_config(tmp_path)))
    assert "renamed" not in _view_headers(view)
    renamed = {**_view_config(tmp_path), key: "renamed"}
    assert Path(resolve_ctr_dataset(dict(renamed))) == view
    assert "renamed" in _view_headers(view) and verify_build(view, "raw") == []
    assert [p.name for p in raw.iterdir() if p.name.startswith(".")] == []  # built under a temporary name
    _no_rebuild(monkeypatch)
    assert Path(resolve_ctr_dataset(dict(renamed))) == view  # the same names again: the cache is reused
    monkeypatch.undo()
    resolve_ctr_dataset(_view_config(tmp_path))
    assert "renamed" not in _view_headers(view)


def test_an_unchanged_config_reuses_the_cached_view(tmp_path, monkeypatch):
    """Only what changes the written files rebuilds the view: the same names given explicitly, a null
    category field (written under its default name) and fields the view does not write reuse it."""
    from recbole_iacn.data.common import field_names
    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "raw")
    config = _view_config(tmp_path)
    view = Path(resolve_ctr_dataset(dict(config)))
    written = (view / "raw.build.json").read_bytes()
    _no_rebuild(monkeypatch)
    for same in (config, {**config, **field_names()}, {**config, "HISTORY_CATEGORY_FIELD": None},
                 {**config, "TIME_FIELD": "timestamp", "ITEM_LIST_LENGTH_FIELD": "n", "RATING_FIELD": "rating"}):
        assert Path(resolve_ctr_dataset(dict(same))) == view
    assert (view / "raw.build.json").read_bytes() == written


def test_a_run_with_renamed_fields_loads_the_view_rebuilt_for_them(tmp_path):
    """A run naming its fields otherwise finds them in the view, the user features joined by the new name."""
    from recbole_iacn.pipeline import prepare

    raw = _raw_dataset(tmp_path / "raw")
    (raw / "raw.user").write_text("user_id:token\tage:token\n" + "".join(f"u{u}\t{u % 3}\n" for u in range(12)),
                                  encoding="utf-8")
    settings = {**FAST, "data_path": str(tmp_path), "checkpoint_dir": str(tmp_path / "saved")}
    prepare("DIN", "raw", config_dict=settings)
    prepared = prepare("DIN", "raw", config_dict={**settings, "USER_ID_FIELD": "uid", "ITEM_ID_FIELD": "iid"})
    dataset = prepared.train_data._dataset
    assert (dataset.uid_field, dataset.iid_field) == ("uid", "iid")
    assert list(dataset.user_feat.columns) == ["uid", "age"]


def test_a_view_without_recorded_field_names_is_rebuilt(tmp_path):
    """A view cached before build.json recorded the field names it was written with is rebuilt once."""
    import json

    from recbole_iacn.data.prepare import resolve_ctr_dataset

    _raw_dataset(tmp_path / "raw")
    view = Path(resolve_ctr_dataset(_view_config(tmp_path)))
    info_path = view / "raw.build.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    fields = info["parameters"].pop("fields")
    info_path.write_text(json.dumps(info), encoding="utf-8")
    resolve_ctr_dataset(_view_config(tmp_path))
    assert json.loads(info_path.read_text(encoding="utf-8"))["parameters"]["fields"] == fields


# ------------------------------------------------------------------------------ studies (cases 2, 7)
def test_resuming_a_study_after_editing_a_config_file_is_refused(tmp_path):
    from recbole_iacn.tune.driver import check_resumable, study_definition, write_definition
    from recbole_iacn.tune.space import load_space

    space_file = tmp_path / "space.yaml"
    space_file.write_text("search: grid\nparams:\n  iacn_delta: {grid_search: [0.1, 0.3]}\n", encoding="utf-8")
    config = tmp_path / "lr.yaml"
    config.write_text("learning_rate: 0.001\n", encoding="utf-8")
    space = load_space(space_file)
    write_definition(tmp_path / "study", study_definition("DIN_IaCN", "syn", space, [str(config)], {}))
    check_resumable(tmp_path / "study", study_definition("DIN_IaCN", "syn", space, [str(config)], {}))
    config.write_text("learning_rate: 0.05\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"learning_rate.*0\.001.*0\.05"):
        check_resumable(tmp_path / "study", study_definition("DIN_IaCN", "syn", space, [str(config)], {}))
    config.write_text("learning_rate: 0.001\n", encoding="utf-8")
    space_file.write_text("search: grid\nparams:\n  iacn_delta: {grid_search: [0.1, 0.3]}\n# edited\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"space\.yaml"):
        check_resumable(tmp_path / "study", study_definition("DIN_IaCN", "syn", load_space(space_file), [str(config)], {}))


def test_an_interrupted_study_exits_non_zero_and_says_how_to_resume(tmp_path, capsys):
    from recbole_iacn.tune import cli as tune_cli
    from recbole_iacn.tune.driver import StudyResult
    from recbole_iacn.tune.report import StudyReport

    markdown = tmp_path / "results.md"
    markdown.write_text("| trial_id |\n", encoding="utf-8")
    rows = [{"trial_id": "a", "status": "finished"}]
    result = StudyResult(str(tmp_path), "valid_auc", "max", False,
                         StudyReport(rows, ["trial_id"], rows[0], {"markdown": str(markdown), "csv": "x"}),
                         {"markdown": str(markdown), "csv": "x"}, interrupted=True, expected_trials=3, unfinished=2)
    text, status = tune_cli.summary(result), tune_cli.exit_status(result)
    assert status == 130
    assert "interrupted: 2 of 3 trials are unfinished" in text and "run the same command again" in text


# ------------------------------------------------------------------------------ real kills (short CI version)
def test_kill_9_and_ctrl_c_leave_loadable_checkpoints(tmp_path):
    """Three real kills of a training process, by ``benchmarks/fault_injection.py`` run as a command: a SIGKILL
    that may land anywhere (start-up, the dataset build), then a SIGINT and a SIGKILL after a checkpoint is
    written, and one run to completion. After each, every checkpoint on disk must load and every dataset match
    its build.json; a SIGINT must end with exit 130, one 'interrupted' line and no traceback."""
    import pandas as pd

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fault_injection.py"), "--train-kills", "3",
                           "--study-kills", "0", "--horizon", "2", "--seed", "0", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    kills = pd.read_csv(out / "kills.csv", comment="#")
    assert (kills["problems"] == "none").all(), kills.to_string()
    landed = kills[kills["killed"]]
    assert list(landed["signal"]) == ["SIGKILL", "SIGINT", "SIGKILL"], kills.to_string()
    assert list(landed["after_checkpoint"]) == [False, True, True]
    assert (landed.loc[landed["signal"] == "SIGINT", "returncode"] == 130).all()
    assert "Final check: no problem" in (out / "README.md").read_text(encoding="utf-8")


def test_ctrl_c_during_a_checkpoint_write_waits_for_the_file(tmp_path):
    """SIGINT inside torch.save (which would surface as torch's RuntimeError) is held back until the new
    checkpoint is in place, then raised as KeyboardInterrupt."""
    import signal

    import torch

    from recbole_iacn.checkpoint import atomic_save

    class InterruptedOnPickle:
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGINT)
            return (dict, ())

    path = tmp_path / "m.pth"
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"state": InterruptedOnPickle(), "x": torch.ones(3)}, path)
    assert torch.load(path, weights_only=False)["x"].tolist() == [1.0, 1.0, 1.0]  # our own test object
    assert [p.name for p in tmp_path.iterdir()] == ["m.pth"]
