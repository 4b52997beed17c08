"""RecBole's Amazon atomic files -> DIEN CTR view: 5-core, category rule, history length defaults."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recbole_iacn.data.builder import build_from_atomic
from recbole_iacn.data.common import DataError
from recbole_iacn.data.ctr import PROTOCOL_MAX_HISTORY, BuildOptions
from recbole_iacn.data.recbole_amazon import build_from_recbole_amazon, k_core, parse_categories

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
    with pytest.raises(DataError, match=r"amazon-bad.inter:3: field 'timestamp' value 'later' is not a number"):
        build_from_recbole_amazon(src, "amazon-bad", tmp_path / "out", "amazon-bad")
    path.write_text(INTER_HEADER + "u1\ti1\t5.0\t10\textra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"amazon-bad.inter:2: 5 tab-separated values, but the header has 4"):
        build_from_recbole_amazon(src, "amazon-bad", tmp_path / "out", "amazon-bad")
    path.write_text(INTER_HEADER + "u1\ti1\t5.0\t10\n", encoding="utf-8")
    with pytest.raises(DataError, match="5-core"):
        build_from_recbole_amazon(src, "amazon-bad", tmp_path / "out", "amazon-bad")
