"""Amazon 2014 converter on tiny files written in the exact upstream formats."""

import gzip
from pathlib import Path

import pytest

from recbole_iacn.data.amazon import build_amazon, first_path_category
from recbole_iacn.data.common import INTER_HEADER
from recbole_iacn.errors import MalformedLineError
# Python-literal dicts (single quotes) like the 2014 dumps; one strict-JSON line; non-ASCII text;
# a duplicate review (A2/B001/60), a single-review user (A3), an item missing from metadata (B004).
REVIEW_LINES = [
    "{'reviewerID': 'A1', 'asin': 'B001', 'reviewerName': 'J. Doe', 'helpful': [0, 0], "
    "'reviewText': 'Great read, \u00e9l\u00e8ve \u2014 \"quotes\" and it\\'s fine', 'overall': 5.0, "
    "'summary': 'Five stars', 'unixReviewTime': 100, 'reviewTime': '01 1, 1970'}",
    "{'reviewerID': 'A1', 'asin': 'B002', 'reviewerName': 'Jos\u00e9', 'helpful': [1, 2], "
    "'reviewText': '\u65e5\u672c\u8a9e', 'overall': 4.0, 'summary': 'ok', 'unixReviewTime': 200, "
    "'reviewTime': '01 1, 1970'}",
    '{"reviewerID": "A2", "asin": "B002", "helpful": [0, 0], "reviewText": "json line", "overall": 3.0, '
    '"summary": "meh", "unixReviewTime": 50, "reviewTime": "01 1, 1970"}',
    "{'reviewerID': 'A1', 'asin': 'B003', 'reviewerName': 'J. Doe', 'helpful': [0, 0], 'reviewText': 'x', "
    "'overall': 2.0, 'summary': 's', 'unixReviewTime': 300, 'reviewTime': '01 1, 1970'}",
    "{'reviewerID': 'A2', 'asin': 'B001', 'helpful': [0, 0], 'reviewText': 'y', 'overall': 1.0, "
    "'summary': 's', 'unixReviewTime': 60, 'reviewTime': '01 1, 1970'}",
    "{'reviewerID': 'A2', 'asin': 'B001', 'helpful': [0, 0], 'reviewText': 'y', 'overall': 1.0, "
    "'summary': 's', 'unixReviewTime': 60, 'reviewTime': '01 1, 1970'}",
    "{'reviewerID': 'A3', 'asin': 'B001', 'helpful': [0, 0], 'reviewText': 'z', 'overall': 5.0, "
    "'summary': 's', 'unixReviewTime': 10, 'reviewTime': '01 1, 1970'}",
    "{'reviewerID': 'A2', 'asin': 'B004', 'helpful': [0, 0], 'reviewText': 'w', 'overall': 5.0, "
    "'summary': 's', 'unixReviewTime': 70, 'reviewTime': '01 1, 1970'}",
]
META_LINES = [
    "{'asin': 'B001', 'categories': [['Books', 'Literature & Fiction', 'Mystery'], ['Books', 'Other']], "
    "'title': 'Le Myst\u00e8re', 'related': {'also_bought': ['B002']}}",
    "{'asin': 'B999', 'categories': [['Books', 'Unreviewed']], 'title': 'Nobody reviewed me'}",
    "{'asin': 'B002', 'title': 'Space', 'categories': [['Books', 'Science Fiction & Fantasy']]}",
    '{"asin": "B003", "categories": [["Books"]], "title": "Caf\u00e9"}',
]
# Expected by hand: A1 history B001@100 B002@200, candidate B003@300; A2 history B002@50 B001@60
# (duplicate dropped), candidate B004@70 (default_cat); A3 dropped (single review).
EXPECTED_POSITIVE = {
    "A1": ("B003", "B001 B002", "Mystery Science_Fiction_&_Fantasy"),
    "A2": ("B004", "B002 B001", "Science_Fiction_&_Fantasy Mystery"),
}
EXPECTED_ITEMS = ("item_id:token\tcate_id:token\nB001\tMystery\nB002\tScience_Fiction_&_Fantasy\n"
                  "B003\tBooks\nB004\tdefault_cat\n")


def write_lines(path: Path, lines, compress: bool, newline="\n"):
    data = newline.join(lines).encode("utf-8") + newline.encode()
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


def make_inputs(tmp_path, compress, newline="\n", reviews=REVIEW_LINES):
    tag = "gz" if compress else "plain"
    r = write_lines(tmp_path / f"reviews_Books_5.{tag}.json.gz", reviews, compress, newline)
    m = write_lines(tmp_path / f"meta_Books.{tag}.json.gz", META_LINES, compress, newline)
    return r, m


def read_split(out_dir, name, split):
    lines = (Path(out_dir) / f"{name}.{split}.inter").read_text(encoding="utf-8").split("\n")
    assert lines[0] == INTER_HEADER and lines[-1] == ""
    return [line.split("\t") for line in lines[1:-1]]


def test_category_rule():
    assert first_path_category([["Books", "Literature & Fiction", "Mystery"], ["X"]]) == "Mystery"
    assert first_path_category([]) == "default_cat"
    assert first_path_category(None) == "default_cat"
    assert first_path_category([[]]) == "default_cat"


def test_amazon_expected_samples_gzip(tmp_path):
    reviews, meta = make_inputs(tmp_path, compress=True)
    out = tmp_path / "out"
    summary = build_amazon(reviews, meta, out, "amz", valid_ratio=0.0, test_ratio=0.5)
    train, valid, test = (read_split(out, "amz", s) for s in ("train", "valid", "test"))
    assert valid == [] and len(train) == 2 and len(test) == 2
    rows = train + test
    seen = set()
    for pos, neg in zip(rows[::2], rows[1::2]):
        user = pos[1]
        seen.add(user)
        assert pos[0] == "1" and neg[0] == "0" and neg[1] == user
        assert tuple(pos[2:]) == EXPECTED_POSITIVE[user]
        assert neg[3:] == pos[3:]
        assert neg[2] != pos[2] and neg[2] in {"B001", "B002", "B003", "B004"}
    assert seen == {"A1", "A2"}
    assert (out / "amz.item").read_text(encoding="utf-8") == EXPECTED_ITEMS
    counts = summary["counts"]
    assert counts["review_lines"] == 8
    assert counts["duplicate_reviews_dropped"] == 1
    assert counts["users_dropped_single_interaction"] == 1
    assert counts["items_missing_from_metadata"] == 1
    assert counts["meta_lines_not_reviewed"] == 1
    assert counts["interactions"] == 7
    assert (counts["users"], counts["items"], counts["categories"], counts["samples"]) == (2, 4, 4, 4)
    assert summary["synthetic"] is False


def test_gzip_plain_and_crlf_give_identical_output(tmp_path):
    gz = make_inputs(tmp_path, compress=True)
    (tmp_path / "crlf").mkdir()
    plain = make_inputs(tmp_path / "crlf", compress=False, newline="\r\n")
    a = build_amazon(*gz, tmp_path / "a", "amz", seed=3)
    b = build_amazon(*plain, tmp_path / "b", "amz", seed=3)
    assert a["checksum"] == b["checksum"]
    c = build_amazon(*gz, tmp_path / "c", "amz", seed=3)
    assert c["checksum"] == a["checksum"]


def test_different_seed_changes_negatives(tmp_path):
    reviews, meta = make_inputs(tmp_path, compress=True)
    negatives = set()
    for seed in range(6):
        build_amazon(reviews, meta, tmp_path / f"s{seed}", "amz", seed=seed, valid_ratio=0.0, test_ratio=0.0)
        rows = read_split(tmp_path / f"s{seed}", "amz", "train")
        negatives.add(tuple(r[2] for r in rows if r[0] == "0"))
    assert len(negatives) > 1


def test_malformed_line_names_file_and_line(tmp_path):
    bad = list(REVIEW_LINES)
    bad.insert(2, "{'reviewerID': 'A9', 'overall': 5.0, 'unixReviewTime': 5}")  # line 3: no asin
    reviews, meta = make_inputs(tmp_path, compress=True, reviews=bad)
    with pytest.raises(MalformedLineError) as info:
        build_amazon(reviews, meta, tmp_path / "out", "amz")
    message = str(info.value)
    assert reviews.name in message and ":3:" in message and "'asin'" in message
    assert info.value.line_no == 3 and isinstance(info.value, ValueError)
    summary = build_amazon(reviews, meta, tmp_path / "out", "amz", skip_malformed=True)
    assert summary["counts"]["reviews_malformed_skipped"] == 1
    assert summary["counts"]["interactions"] == 7


def test_unparseable_line(tmp_path):
    bad = list(REVIEW_LINES) + ["{'reviewerID': 'A1', 'asin': "]
    reviews, meta = make_inputs(tmp_path, compress=False, reviews=bad)
    with pytest.raises(MalformedLineError, match=r":9: malformed line: neither JSON nor a Python literal"):
        build_amazon(reviews, meta, tmp_path / "out", "amz")
