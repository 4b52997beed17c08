"""Converters on damaged or unusual inputs: one clear paragraph (exit 2) or a counted skip, never half a dataset."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest

from recbole_iacn.data.__main__ import main
from test_data_amazon import META_LINES, REVIEW_LINES, write_lines
from test_data_dien import TEST_LINES, TRAIN_LINES, write


def amazon(tmp_path, reviews, meta, *extra):
    return main(["amazon", "--reviews", str(reviews), "--meta", str(meta), "--name", "books",
                 "--out", str(tmp_path / "out"), *extra])


def only_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.strip().count("\n") == 0, err
    return err


def no_output(tmp_path):
    out = tmp_path / "out"
    return not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("damage", ["truncated", "crc"])
@pytest.mark.parametrize("skip", [False, True])
def test_damaged_gzip_is_a_clear_error(tmp_path, capsys, damage, skip):
    reviews = write_lines(tmp_path / "reviews.json.gz", REVIEW_LINES * 50, compress=True)
    data = bytearray(reviews.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[-6] ^= 0xFF  # the CRC-32 in the gzip trailer
    reviews.write_bytes(bytes(data))
    meta = write_lines(tmp_path / "meta.json.gz", META_LINES, compress=True)
    assert amazon(tmp_path, reviews, meta, *(["--skip-malformed"] if skip else [])) == 2
    err = only_error(capsys)
    assert "reviews.json.gz:" in err and "truncated or corrupt" in err
    assert no_output(tmp_path)


def test_utf8_byte_order_mark_on_line_1(tmp_path, capsys):
    reviews = tmp_path / "reviews.json"
    reviews.write_bytes(b"\xef\xbb\xbf" + ("\n".join(REVIEW_LINES) + "\n").encode("utf-8"))
    meta = write_lines(tmp_path / "meta.json", META_LINES, compress=False)
    assert amazon(tmp_path, reviews, meta, "--skip-malformed") == 0
    info = json.loads((tmp_path / "out" / "books" / "books.build.json").read_text(encoding="utf-8"))
    assert info["counts"]["reviews_malformed_skipped"] == 0 and info["counts"]["review_lines"] == len(REVIEW_LINES)


def test_a_zip_passed_as_reviews_says_so(tmp_path, capsys):
    reviews = tmp_path / "reviews_Books_5.zip"
    with zipfile.ZipFile(reviews, "w") as handle:
        handle.writestr("reviews_Books_5.json", "\n".join(REVIEW_LINES))
    meta = write_lines(tmp_path / "meta.json", META_LINES, compress=False)
    assert amazon(tmp_path, reviews, meta) == 2
    assert "is a zip archive" in only_error(capsys) and no_output(tmp_path)


@pytest.mark.parametrize("meta_kind", ["dev-null", "empty-file"])
def test_empty_metadata_is_read_and_warned_about(tmp_path, caplog, meta_kind):
    reviews = write_lines(tmp_path / "reviews.json", REVIEW_LINES, compress=False)
    meta = Path("/dev/null") if meta_kind == "dev-null" else tmp_path / "meta.json"
    if meta_kind == "empty-file":
        meta.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert amazon(tmp_path, reviews, meta) == 0
    assert "holds no line" in caplog.text and "default_cat" in caplog.text
    info = json.loads((tmp_path / "out" / "books" / "books.build.json").read_text(encoding="utf-8"))
    assert info["counts"]["meta_lines"] == 0 and info["counts"]["items_missing_from_metadata"] == 4


def test_float_timestamps_are_times(tmp_path):
    lines = [line.replace("'unixReviewTime': 100", "'unixReviewTime': 1393545600.5")
             .replace("'unixReviewTime': 200", "'unixReviewTime': '1393545700.25'") for line in REVIEW_LINES]
    reviews = write_lines(tmp_path / "reviews.json", lines, compress=False)
    meta = write_lines(tmp_path / "meta.json", META_LINES, compress=False)
    assert amazon(tmp_path, reviews, meta) == 0


def test_a_failed_amazon_build_leaves_no_folder(tmp_path, capsys):
    one_item = [line.replace("'B002'", "'B001'").replace('"B002"', '"B001"').replace("'B003'", "'B001'")
                .replace("'B004'", "'B001'") for line in REVIEW_LINES]
    reviews = write_lines(tmp_path / "reviews.json", one_item, compress=False)
    meta = write_lines(tmp_path / "meta.json", META_LINES, compress=False)
    assert amazon(tmp_path, reviews, meta) == 2
    assert "distinct item" in only_error(capsys)
    assert not (tmp_path / "out" / "books").exists() and list((tmp_path / "out").iterdir()) == []


def dien(tmp_path, train, test, *extra):
    return main(["dien", "--train", str(train), "--test", str(test), "--name", "d", "--out", str(tmp_path / "out"),
                 *extra])


def test_dien_refuses_an_empty_train_file(tmp_path, capsys):
    train = tmp_path / "train"
    train.write_bytes(b"")
    test = write(tmp_path / "test", TEST_LINES)
    assert dien(tmp_path, train, test) == 2
    assert "no training row" in only_error(capsys) and no_output(tmp_path)


def test_a_failed_rebuild_leaves_the_earlier_dataset_intact(tmp_path, capsys):
    train, test = write(tmp_path / "train", TRAIN_LINES), write(tmp_path / "test", TEST_LINES)
    assert dien(tmp_path, train, test) == 0
    folder = tmp_path / "out" / "d"
    (folder / "ctr").mkdir()  # something else in the folder is kept across rebuilds
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    bad_info = write(tmp_path / "item-info", ["I1\tCat A", "I2 without a tab"])
    other_train = write(tmp_path / "train2", TRAIN_LINES[2:])
    assert dien(tmp_path, other_train, test, "--item-info", str(bad_info)) == 2
    assert "item-info:2" in only_error(capsys)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert (folder / "ctr").is_dir()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["d"]  # no temporary folder left
    # a successful rebuild replaces the files as a whole and keeps the rest
    assert dien(tmp_path, other_train, test) == 0
    info = json.loads((folder / "d.build.json").read_text(encoding="utf-8"))
    assert info["counts"]["train_rows"] + info["counts"]["valid_rows"] == 2 and (folder / "ctr").is_dir()
    assert str(tmp_path / "out" / "d") == capsys.readouterr().out.split("-> ")[1].split("\n")[0]



def test_a_raw_inter_row_with_an_extra_or_missing_field_is_refused(tmp_path, capsys):
    """A RecBole .inter row with one field too many (or too few) names the file and line, exit 2."""
    from recbole_iacn.data.__main__ import main

    header = "user_id:token\titem_id:token\ttimestamp:float\n"
    rows = "".join(f"{u}\t{i}\t{u * 100 + i}\n" for u in (1, 2, 3) for i in (1, 2, 3, 4, 5))
    for bad, message in (("2\t9\t300\textra\n", "Expected 3 fields in line 17, saw 4"),
                         ("2\t9\n", "raw.inter:17: field 'timestamp' is empty")):
        source = tmp_path / f"src-{len(bad)}"
        source.mkdir()
        (source / "raw.inter").write_text(header + rows + bad, encoding="utf-8")
        out = tmp_path / f"out-{len(bad)}"
        code = main(["recbole", "--source-dir", str(source), "--source-name", "raw", "--name", "raw", "--out", str(out)])
        assert code == 2 and message in capsys.readouterr().err
        assert not (out / "raw").exists()
