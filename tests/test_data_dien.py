"""DIEN prepared files (local_{train,test}_splitByUser, 0x02-joined lists) -> CTR dataset."""

from pathlib import Path

import pytest

from recbole_iacn.data.common import INTER_HEADER
from recbole_iacn.data.dien import build_from_dien
from recbole_iacn.errors import MalformedLineError

SEP = "\x02"
TRAIN_LINES = [
    f"0\tU1\tI9\tCat A\tI1{SEP}I2\tCat A{SEP}Cat B",  # negative listed first: output puts positive first
    f"1\tU1\tI3\tCat B\tI1{SEP}I2\tCat A{SEP}Cat B",
    "1\tU2\tI4\tC\tI5\tC",
    "0\tU2\tI1\tCat A\tI5\tC",
    "1\tU3\tI6\tC\t\t",  # empty history: dropped
]
TEST_LINES = [
    f"1\tU4\tI2\tCat B\tI1{SEP}I3{SEP}I4\tCat A{SEP}Cat B{SEP}C",
    f"0\tU4\tI7\tD\tI1{SEP}I3{SEP}I4\tCat A{SEP}Cat B{SEP}C",
]
EXPECTED_TRAIN_BY_USER = {
    "U1": ["1\tU1\tI3\tI1 I2\tCat_A Cat_B", "0\tU1\tI9\tI1 I2\tCat_A Cat_B"],
    "U2": ["1\tU2\tI4\tI5\tC", "0\tU2\tI1\tI5\tC"],
}
# max_history=2 keeps the two most recent history entries.
EXPECTED_TEST = ["1\tU4\tI2\tI3 I4\tCat_B C", "0\tU4\tI7\tI3 I4\tCat_B C"]
EXPECTED_ITEM = ("item_id:token\tcate_id:token\nI1\tCat_A\nI2\tCat_B\nI3\tCat_B\nI4\tC\nI5\tC\n"
                 "I7\tD\nI9\tScience_Fiction\n")


def write(path: Path, lines, newline="\n"):
    path.write_bytes((newline.join(lines) + newline).encode("utf-8"))
    return path


def read_split(out_dir, name, split):
    lines = (Path(out_dir) / f"{name}.{split}.inter").read_text(encoding="utf-8").split("\n")
    assert lines[0] == INTER_HEADER and lines[-1] == ""
    return lines[1:-1]


def test_dien_prepared_literal(tmp_path):
    train = write(tmp_path / "local_train_splitByUser", TRAIN_LINES, newline="\r\n")
    test = write(tmp_path / "local_test_splitByUser", TEST_LINES)
    info = write(tmp_path / "item-info", ["I9\tScience Fiction", "I100\tUnused"])
    out = tmp_path / "out"
    summary = build_from_dien(train, test, out, "dien", item_info=info, max_history=2, valid_ratio=0.5)
    assert read_split(out, "dien", "test") == EXPECTED_TEST
    train_rows, valid_rows = read_split(out, "dien", "train"), read_split(out, "dien", "valid")
    assert sorted([train_rows, valid_rows]) == sorted(EXPECTED_TRAIN_BY_USER.values())
    assert (out / "dien.item").read_text(encoding="utf-8") == EXPECTED_ITEM
    counts = summary["counts"]
    assert counts["rows_dropped_empty_history"] == 1
    assert counts["histories_truncated"] == 2
    assert (counts["users"], counts["samples"], counts["items"]) == (3, 6, 7)


def test_dien_without_item_info_and_determinism(tmp_path):
    train = write(tmp_path / "local_train_splitByUser", TRAIN_LINES)
    test = write(tmp_path / "local_test_splitByUser", TEST_LINES)
    a = build_from_dien(train, test, tmp_path / "a", "dien")
    b = build_from_dien(train, test, tmp_path / "b", "dien")
    assert a["checksum"] == b["checksum"]
    assert "I9\tCat_A\n" in (tmp_path / "a" / "dien.item").read_text(encoding="utf-8")
    assert read_split(tmp_path / "a", "dien", "test")[0] == "1\tU4\tI2\tI1 I3 I4\tCat_A Cat_B C"


@pytest.mark.parametrize("line, reason", [
    ("1\tU1\tI1\tC\tI2", "expected 6 tab-separated fields"),
    (f"1\tU1\tI1\tC\tI2{SEP}I3\tC", "history has 2 items but 1 categories"),
    ("yes\tU1\tI1\tC\tI2\tC", "label 'yes' is not 0 or 1"),
])
def test_malformed_rows_name_file_and_line(tmp_path, line, reason):
    train = write(tmp_path / "local_train_splitByUser", TRAIN_LINES[:2] + [line])
    test = write(tmp_path / "local_test_splitByUser", TEST_LINES)
    with pytest.raises(MalformedLineError) as info:
        build_from_dien(train, test, tmp_path / "out", "dien")
    assert "local_train_splitByUser:3:" in str(info.value) and reason in str(info.value)
