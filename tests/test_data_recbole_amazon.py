"""RecBole's Amazon atomic files -> DIEN CTR view: 5-core, category rule, history length defaults."""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbole_iacn.data.amazon import first_path_category
from recbole_iacn.data.builder import build_from_atomic
from recbole_iacn.data.common import sanitize_category
from recbole_iacn.data.ctr import PROTOCOL_MAX_HISTORY, BuildOptions
from recbole_iacn.data.recbole_amazon import (
    build_from_recbole_amazon,
    check_amazon_release,
    k_core,
    parse_categories,
    parse_entries,
    pick_categories,
    read_item_profiles,
)
from recbole_iacn.errors import DataFormatError

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def test_k_core_repeats_until_stable():
    # u0-u2 rate a, b (2 each); u3 rates a, b, c; with k=3, c (1 rating) goes, then u3 has 2 < 3 ... and so on
    user = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3])
    item = np.array([0, 1, 0, 1, 0, 1, 0, 1, 2])
    keep, rounds = k_core(user, item, k=2)
    assert keep.tolist() == [True] * 8 + [False] and rounds == 2
    keep, rounds = k_core(user, item, k=3)
    assert not keep.any()


def test_parse_categories_reads_recboles_set_strings():
    assert parse_categories("'Books', 'Mystery, Thriller & Suspense'") == ["Books", "Mystery,_Thriller_&_Suspense"]
    assert parse_categories("'Books', \"Children's Books\"") == ["Books", "Children's_Books"]
    assert parse_categories("'It\\'s \"odd\"'") == ["It's_\"odd\""]
    assert parse_categories("et(") == [] and parse_categories("") == []
    assert parse_categories("Books Thrillers") == ["Books", "Thrillers"]  # plain token_seq


def test_protocol_history_defaults():
    assert BuildOptions("dien").validated().max_history == 100 == PROTOCOL_MAX_HISTORY["dien"]
    assert BuildOptions("dense").validated().max_history == 50
    assert BuildOptions("dien", max_history=20).validated().max_history == 20
    assert BuildOptions("dien", max_history=0).validated().max_history is None


def _long_history_source(tmp_path, n=130):
    src = tmp_path / "src"
    src.mkdir()
    rows = [f"u{u}\ti{(u + t) % 150}\t5.0\t{1000 + t}" for u in range(6) for t in range(n)]
    (src / "amazon-long.inter").write_text(INTER_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return src


def test_dien_keeps_100_behaviours_by_default(tmp_path):
    src = _long_history_source(tmp_path)
    summary = build_from_recbole_amazon(src, "amazon-long", tmp_path / "out", "amazon-long", valid_ratio=0,
                                        test_ratio=0)
    assert summary["parameters"]["max_history"] == 100
    rows = (tmp_path / "out" / "amazon-long.train.inter").read_text(encoding="utf-8").splitlines()[1:]
    assert {len(r.split("\t")[3].split()) for r in rows} == {100}
    dense = build_from_atomic(src, "amazon-long", tmp_path / "dense", "x", protocol="dense")
    assert dense["parameters"]["max_history"] == 50
    info = json.loads((tmp_path / "out" / "amazon-long.build.json").read_text(encoding="utf-8"))
    counts = info["counts"]  # no .item file: every kept item is missing from it
    assert counts["k_core"] == 5
    assert counts["items_missing_from_item_file"] == counts["items_in_ratings"] - counts["items_dropped_by_k_core"] > 0


def test_bad_rows_name_the_file_and_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    path = src / "amazon-bad.inter"
    path.write_text(INTER_HEADER + "u1\ti1\t5.0\t10\nu1\ti2\t5.0\tlater\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"amazon-bad.inter:3: field 'timestamp' value 'later' is not a number"):
        build_from_recbole_amazon(src, "amazon-bad", tmp_path / "out", "amazon-bad")
    path.write_text(INTER_HEADER + "u1\ti1\t5.0\t10\textra\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"amazon-bad.inter:2: 5 tab-separated values, but the header has 4"):
        build_from_recbole_amazon(src, "amazon-bad", tmp_path / "out", "amazon-bad")
    path.write_text(INTER_HEADER + "u1\ti1\t5.0\t10\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="5-core"):
        build_from_recbole_amazon(src, "amazon-bad", tmp_path / "out", "amazon-bad")


# ---------------------------------------------------------------------------------------------
# categories on real Amazon 2014 data (tests/fixtures/amazon2014/README.md)
# ---------------------------------------------------------------------------------------------
FIXTURES = Path(__file__).parent / "fixtures" / "amazon2014"


def _dien_items():
    """``[(asin, categories)]`` of the real Digital Music metadata extract, and DIEN's category of each."""
    with gzip.open(FIXTURES / "meta_Digital_Music.head1000.json.gz", "rt", encoding="utf-8") as handle:
        records = [ast.literal_eval(line) for line in handle]
    return [(r["asin"], r["categories"]) for r in records], [first_path_category(r["categories"]) for r in records]


def _categories(item_path, wanted):
    profiles, weights, item_profile, _, _ = read_item_profiles(item_path, "item_id", wanted)
    chosen, counts, rule = pick_categories(len(wanted), profiles, weights, item_profile)
    return chosen, rule


def test_set_order_file_recovers_diens_category_on_real_multi_path_metadata(tmp_path):
    items, dien = _dien_items()
    # RecBole's conversion (RecSysDatasets AmazonBooksDataset.load_item_data): every entry of every path in
    # a set, written as str(set)[1:-1] by pandas
    values = [str({e for path in cats for e in path})[1:-1] for _, cats in items]
    path = tmp_path / "amazon-digital-music.item"
    pd.DataFrame({"item_id:token": [a for a, _ in items], "categories:token_seq": values}).to_csv(
        path, sep="\t", index=False)
    chosen, rule = _categories(path, {a: i for i, (a, _) in enumerate(items)})
    assert "set order, several paths per item" in rule
    agree = sum(c == d for c, d in zip(chosen, dien))
    assert agree == 776  # of 1,000; the rarest-entry rule gave 248
    single = [i for i, (_, cats) in enumerate(items) if len(cats) == 1]
    assert all(chosen[i] == dien[i] for i in single)


def test_path_order_file_gives_the_last_entry_of_the_path():
    path = FIXTURES / "Amazon_Beauty.head600.item"
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    items = frame["item_id:token"].tolist()
    chosen, rule = _categories(path, {a: i for i, a in enumerate(items)})
    assert "path order" in rule
    expected = [parse_categories(v)[-1] for v in frame["categories:token_seq"]]
    assert chosen == expected and len(chosen) == 600


def test_set_order_single_path_items_on_real_file(tmp_path):
    """The same real single-path items with their entries in an order unrelated to the paths (by name, every
    other row reversed, as str(set) lists a pair both ways across a file): the leaf is found without the order."""
    frame = pd.read_csv(FIXTURES / "Amazon_Beauty.head600.item", sep="\t", dtype=str, keep_default_na=False)
    entries = [parse_entries(v) for v in frame["categories:token_seq"]]
    shuffled = [", ".join(repr(x) for x in sorted(e, reverse=bool(i % 2))) for i, e in enumerate(entries)]
    path = tmp_path / "amazon-beauty.item"
    pd.DataFrame({"item_id:token": frame["item_id:token"], "categories:token_seq": shuffled}).to_csv(
        path, sep="\t", index=False)
    chosen, rule = _categories(path, {a: i for i, a in enumerate(frame["item_id:token"])})
    assert "set order, one path per item" in rule
    # of 600; the rarest-entry rule: 558 (on all 12,101 items: 12,005 and 11,681); tests/test_category_tree.py
    # tells the items the sets decide (all found) from those they cannot
    assert sum(c == sanitize_category(e[-1]) for c, e in zip(chosen, entries)) == 583


# ---------------------------------------------------------------------------------------------
# same-time ratings, unsupported releases
# ---------------------------------------------------------------------------------------------
def test_same_time_ratings_end_in_item_id_order(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # every user rates i0..i4 at time 1, then i5..i7 all at time 9, written in descending item order
    rows = [f"u{u}\ti{k}\t5.0\t1" for u in range(6) for k in range(5)]
    rows += [f"u{u}\ti{k}\t4.0\t9" for u in range(6) for k in (7, 6, 5)]
    (src / "amazon-ties.inter").write_text(INTER_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    build_from_recbole_amazon(src, "amazon-ties", tmp_path / "out", "amazon-ties", valid_ratio=0, test_ratio=0)
    lines = (tmp_path / "out" / "amazon-ties.train.inter").read_text(encoding="utf-8").splitlines()[1:]
    positives = [line.split("\t") for line in lines if line.startswith("1\t")]
    assert len(positives) == 6
    for _, _, target, history, _ in positives:
        assert target == "i7"
        assert history.split() == ["i0", "i1", "i2", "i3", "i4", "i5", "i6"]


@pytest.mark.parametrize("name", ["amazon-books-18", "amazon-all-beauty-23"])
def test_2018_and_2023_releases_are_refused(tmp_path, name):
    src = _long_history_source(tmp_path)
    (src / "amazon-long.inter").rename(src / f"{name}.inter")
    with pytest.raises(DataFormatError, match="2014 files only"):
        build_from_recbole_amazon(src, name, tmp_path / "out", name)
    check_amazon_release("amazon-books")  # 2014 names pass
