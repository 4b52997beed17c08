"""Generic RecBole-atomic builder: hand-computed tiny fixture, protocols, and the bundled ml-100k."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbole_iacn.data.builder import build_from_atomic, default_ml100k_source
from recbole_iacn.data.common import INTER_HEADER, read_header
from recbole_iacn.data.ctr import draw_negatives
from recbole_iacn.errors import DataFormatError, MissingFieldError
from tests.conftest import configure_field_names

HEADER = INTER_HEADER.split("\t")

# u1 sorted by time: "b c"@10, a@20, a@30, "b c"@40; u2: a@5 then "b c"@5 (tie keeps file order);
# u3 has a single interaction. Only two items exist, so every negative is the other item.
TINY_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ta\t3\t30\n"
    "u1\tb c\t4\t10\n"
    "u2\ta\t5\t5\n"
    "u1\ta\t1\t20\n"
    "u2\tb c\t2\t5\n"
    "u3\tb c\t1\t1\n"
    "u1\tb c\t2\t40\n"
)
TINY_ITEM = (
    "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
    "a\tSome Film\tAnimation Children's\n"
    "b c\tOther Film\t\n"
)
TINY_USER = "user_id:token\tage:token\nu1\t20\nu2\t30\nu3\t40\n"


def write_tiny(tmp_path, with_item=True, with_user=True):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.inter").write_text(TINY_INTER, encoding="utf-8")
    if with_item:
        (src / "tiny.item").write_text(TINY_ITEM, encoding="utf-8")
    if with_user:
        (src / "tiny.user").write_text(TINY_USER, encoding="utf-8")
    return src


def read_split(out_dir, name, split):
    text = (Path(out_dir) / f"{name}.{split}.inter").read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[0] == INTER_HEADER and lines[-1] == ""
    return lines[1:-1]


def test_dense_protocol_literal_rows(tmp_path):
    src = write_tiny(tmp_path)
    out = tmp_path / "out"
    summary = build_from_atomic(src, "tiny", out, "ctr", protocol="dense")
    assert read_split(out, "ctr", "train") == [
        "1\tu1\ta\tb_c\tdefault_cat",
        "0\tu1\tb_c\tb_c\tdefault_cat",
    ]
    assert read_split(out, "ctr", "valid") == [
        "1\tu1\ta\tb_c a\tdefault_cat Animation",
        "0\tu1\tb_c\tb_c a\tdefault_cat Animation",
    ]
    assert read_split(out, "ctr", "test") == [
        "1\tu1\tb_c\tb_c a a\tdefault_cat Animation Animation",
        "0\tu1\ta\tb_c a a\tdefault_cat Animation Animation",
        "1\tu2\tb_c\ta\tAnimation",
        "0\tu2\ta\ta\tAnimation",
    ]
    assert (out / "ctr.item").read_text(encoding="utf-8") == (
        "item_id:token\tcate_id:token\na\tAnimation\nb_c\tdefault_cat\n"
    )
    assert (out / "ctr.user").read_text(encoding="utf-8") == TINY_USER
    counts = summary["counts"]
    assert counts["interactions"] == 7
    assert counts["users_dropped_single_interaction"] == 1
    assert counts["users"] == 2
    assert counts["samples"] == 8
    assert (counts["train_rows"], counts["valid_rows"], counts["test_rows"]) == (2, 2, 4)
    build = json.loads((out / "ctr.build.json").read_text(encoding="utf-8"))
    assert build["synthetic"] is False
    assert build["checksum"] == summary["checksum"]
    assert list(build["files"]) == sorted(["ctr.train.inter", "ctr.valid.inter", "ctr.test.inter",
                                           "ctr.item", "ctr.user"])


def test_max_history_keeps_most_recent(tmp_path):
    src = write_tiny(tmp_path)
    out = tmp_path / "out"
    build_from_atomic(src, "tiny", out, "ctr", protocol="dense", max_history=2)
    assert read_split(out, "ctr", "test")[0] == "1\tu1\tb_c\ta a\tAnimation Animation"


def test_dien_protocol_last_interaction_and_user_split(tmp_path):
    src = write_tiny(tmp_path)
    out = tmp_path / "out"
    summary = build_from_atomic(src, "tiny", out, "ctr", protocol="dien", valid_ratio=0.0, test_ratio=0.5)
    train, valid, test = (read_split(out, "ctr", s) for s in ("train", "valid", "test"))
    assert valid == []
    assert len(train) == 2 and len(test) == 2
    expected = {
        "u1": ["1\tu1\tb_c\tb_c a a\tdefault_cat Animation Animation",
               "0\tu1\ta\tb_c a a\tdefault_cat Animation Animation"],
        "u2": ["1\tu2\tb_c\ta\tAnimation", "0\tu2\ta\ta\tAnimation"],
    }
    assert sorted([train, test]) == sorted(expected.values())
    assert summary["counts"]["users_dropped_single_interaction"] == 1


def test_without_item_file_everything_default_category(tmp_path):
    src = write_tiny(tmp_path, with_item=False, with_user=False)
    out = tmp_path / "out"
    summary = build_from_atomic(src, "tiny", out, "ctr")
    assert not (out / "ctr.user").exists()
    assert summary["counts"]["source_items_without_category"] == 2
    assert (out / "ctr.item").read_text(encoding="utf-8").endswith("a\tdefault_cat\nb_c\tdefault_cat\n")


def test_missing_field_error_names_file_and_field(tmp_path):
    src = write_tiny(tmp_path)
    with pytest.raises(MissingFieldError) as info:
        build_from_atomic(src, "tiny", tmp_path / "out", "ctr", time_field="when")
    assert "tiny.inter" in str(info.value) and "'when'" in str(info.value)
    with pytest.raises(MissingFieldError, match="genre"):
        build_from_atomic(src, "tiny", tmp_path / "out", "ctr", category_field="genre")
    with pytest.raises(FileNotFoundError, match="nothere.inter"):
        build_from_atomic(src, "nothere", tmp_path / "out", "ctr")
    with pytest.raises(DataFormatError, match="protocol"):
        build_from_atomic(src, "tiny", tmp_path / "out", "ctr", protocol="weird")


def test_user_file_is_headed_with_the_configured_user_field(tmp_path, monkeypatch):
    """``<name>.user`` names its user column USER_ID_FIELD, as the .inter files do: the source's user column is
    renamed (typed token), every other column and every row are kept."""
    configure_field_names(tmp_path, monkeypatch, USER_ID_FIELD="uid")
    src = write_tiny(tmp_path)
    (src / "tiny.user").write_text("age:token\tuser_id:token\n20\tu1\n30\tu2\n", encoding="utf-8")
    out = tmp_path / "out"
    summary = build_from_atomic(src, "tiny", out, "ctr")
    assert read_header(out / "ctr.train.inter")[1] == ("uid", "token")
    assert (out / "ctr.user").read_text(encoding="utf-8") == "age:token\tuid:token\n20\tu1\n30\tu2\n"
    assert set(summary["files"]) >= {"ctr.user"}
    assert (src / "tiny.user").read_text(encoding="utf-8").startswith("age:token\tuser_id:token\n")  # source kept


def test_user_file_user_column_is_the_source_user_field(tmp_path):
    """The source's user column is the one named ``user_field`` (as in its .inter), whatever its type."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.inter").write_text(TINY_INTER.replace("user_id:token", "who:token", 1), encoding="utf-8")
    (src / "tiny.user").write_text("who:float\tage:token\r\n1\t20\r\n", encoding="utf-8")
    build_from_atomic(src, "tiny", tmp_path / "out", "ctr", user_field="who")
    assert (tmp_path / "out" / "ctr.user").read_text(encoding="utf-8").splitlines() == ["user_id:token\tage:token",
                                                                                    "1\t20"]


def test_user_file_errors_name_the_file_and_line(tmp_path, monkeypatch):
    src = write_tiny(tmp_path)
    user = src / "tiny.user"
    user.write_text("uid:token\tage:token\nu1\t20\n", encoding="utf-8")
    with pytest.raises(MissingFieldError, match=r"tiny\.user: required field 'user_id' is missing"):
        build_from_atomic(src, "tiny", tmp_path / "out", "ctr")
    user.write_text("user_id\tage:token\nu1\t20\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"tiny\.user, line 1: column 1 is headed 'user_id'"):
        build_from_atomic(src, "tiny", tmp_path / "out", "ctr")
    configure_field_names(tmp_path, monkeypatch, USER_ID_FIELD="uid")
    user.write_text("user_id:token\tuid:token\nu1\tx\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"tiny\.user, line 1: .*'uid'"):
        build_from_atomic(src, "tiny", tmp_path / "out", "ctr")


def test_negative_sampling_distributions():
    rng = np.random.default_rng(0)
    positives = np.full(5000, 1)
    popularity = np.array([100.0, 1.0, 1.0, 0.0])
    neg = draw_negatives(positives, popularity, "popularity", rng)
    assert not np.any(neg == positives)
    assert not np.any(neg == 3)  # zero popularity is never drawn
    assert np.mean(neg == 0) > 0.95
    neg = draw_negatives(positives, popularity, "uniform", rng)
    assert not np.any(neg == positives)
    assert set(np.unique(neg)) == {0, 2, 3}
    with pytest.raises(DataFormatError, match="distinct item"):
        draw_negatives(positives, np.array([0.0, 5.0]), "popularity", rng)


def test_determinism_and_seed(tmp_path):
    src, name = default_ml100k_source()
    a = build_from_atomic(src, name, tmp_path / "a", name, protocol="dien")
    b = build_from_atomic(src, name, tmp_path / "b", name, protocol="dien")
    c = build_from_atomic(src, name, tmp_path / "c", name, protocol="dien", seed=7)
    assert a["checksum"] == b["checksum"]
    assert a["checksum"] != c["checksum"]
    for split in ("train", "valid", "test"):
        assert (tmp_path / "a" / f"{name}.{split}.inter").read_bytes() == \
            (tmp_path / "b" / f"{name}.{split}.inter").read_bytes()
    assert a["counts"]["users"] == 943
    assert (a["counts"]["test_users"], a["counts"]["valid_users"], a["counts"]["train_users"]) == (94, 85, 764)


def test_ml100k_dense(tmp_path):
    src, name = default_ml100k_source()
    summary = build_from_atomic(src, name, tmp_path, name)
    assert summary["seconds"] < 10
    source = pd.read_csv(Path(src) / f"{name}.inter", sep="\t", dtype=str)
    source.columns = [c.split(":")[0] for c in source.columns]
    n_inter, n_users = len(source), source["user_id"].nunique()
    per_user = source.groupby("user_id").size()
    counts = summary["counts"]
    assert (n_inter, n_users) == (100000, 943)
    assert counts["users"] == n_users
    assert counts["samples"] == 2 * (n_inter - n_users)
    assert counts["test_rows"] == 2 * int((per_user >= 2).sum())
    assert counts["valid_rows"] == 2 * int((per_user >= 3).sum())
    assert counts["train_rows"] == counts["samples"] - counts["test_rows"] - counts["valid_rows"]

    when = {(u, i): float(t) for u, i, t in zip(source["user_id"], source["item_id"], source["timestamp"])}
    items = set(source["item_id"])
    for split in ("train", "valid", "test"):
        rows = [r.split("\t") for r in read_split(tmp_path, name, split)]
        assert len(rows) % 2 == 0
        for pos, neg in zip(rows[::2], rows[1::2]):
            assert pos[0] == "1" and neg[0] == "0"
            assert pos[1] == neg[1] and pos[3:] == neg[3:]
            assert neg[2] != pos[2] and neg[2] in items
            hist = pos[3].split(" ")
            assert 1 <= len(hist) <= 50 and len(pos[4].split(" ")) == len(hist)
            times = [when[(pos[1], h)] for h in hist]
            assert times == sorted(times) and times[-1] <= when[(pos[1], pos[2])]
    item_lines = (tmp_path / f"{name}.item").read_text(encoding="utf-8").split("\n")[1:-1]
    assert [line.split("\t")[0] for line in item_lines] == [str(i) for i in range(1, 1683)]
    assert all(" " not in line for line in item_lines)
