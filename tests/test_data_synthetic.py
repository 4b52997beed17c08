"""Synthetic generator at a tiny scale: labelled synthetic, counts right, deterministic."""

import json

import numpy as np

from recbole_iacn.data.common import INTER_HEADER
from recbole_iacn.data.ctr import format_summary
from recbole_iacn.data.synthetic import build_synthetic, generate_interactions, scaled_sizes
from tests.conftest import configure_field_names


def test_scaled_sizes():
    assert scaled_sizes(1.0) == (600_000, 368_000, 1_600)
    assert scaled_sizes(0.01) == (6_000, 3_680, 16)


def test_generated_behaviour_shape():
    inter = generate_interactions(0.01, np.random.default_rng(1))
    lengths = np.bincount(inter.user)
    assert lengths.size == 6000 and lengths.min() >= 2 and lengths.max() <= 60
    assert 8 <= lengths.mean() <= 12
    per_user_cats = [np.unique(inter.item_cat[inter.item[inter.user == u]]).size for u in range(200)]
    assert max(per_user_cats) <= 4  # behaviours only come from the user's 1-4 interests
    assert np.unique(inter.item_cat).size == 16


def test_synthetic_tiny_build(tmp_path):
    summary = build_synthetic(tmp_path, scale=0.001)
    name = "synthetic-books"
    build = json.loads((tmp_path / f"{name}.build.json").read_text(encoding="utf-8"))
    assert build["synthetic"] is True and build["source"]["kind"] == "synthetic"
    assert "SYNTHETIC" in format_summary(summary)
    counts = summary["counts"]
    n_users = 600
    n_test = round(n_users * 0.1)
    n_valid = round((n_users - n_test) * 0.1)
    assert counts["users"] == n_users and counts["samples"] == 2 * n_users
    assert (counts["test_rows"], counts["valid_rows"]) == (2 * n_test, 2 * n_valid)
    assert counts["train_rows"] == 2 * (n_users - n_test - n_valid)
    users = set()
    for split in ("train", "valid", "test"):
        lines = (tmp_path / f"{name}.{split}.inter").read_text(encoding="utf-8").split("\n")
        assert lines[0] == INTER_HEADER
        rows = [line.split("\t") for line in lines[1:-1]]
        for pos, neg in zip(rows[::2], rows[1::2]):
            assert (pos[0], neg[0]) == ("1", "0") and pos[1] == neg[1] and pos[2] != neg[2]
            assert pos[1] not in users
            users.add(pos[1])
    assert len(users) == n_users
    again = build_synthetic(tmp_path / "again", scale=0.001)
    other = build_synthetic(tmp_path / "other", scale=0.001, seed=1)
    assert again["checksum"] == summary["checksum"] != other["checksum"]


def test_output_header_follows_configured_field_names(tmp_path, monkeypatch):
    """The converters head their files with the field names of overall.yaml, not fixed ones."""
    from recbole_iacn.data.common import inter_header, item_header

    configure_field_names(tmp_path, monkeypatch, USER_ID_FIELD="uid", ITEM_ID_FIELD="iid", ITEM_CATEGORY_FIELD="genre")
    assert inter_header() == "label:float\tuid:token\tiid:token\titem_id_list:token_seq\tcate_id_list:token_seq"
    assert item_header() == "iid:token\tgenre:token"
    build_synthetic(tmp_path / "out", scale=0.001)
    name = "synthetic-books"
    assert (tmp_path / "out" / f"{name}.train.inter").read_text(encoding="utf-8").split("\n")[0] == inter_header()
    assert (tmp_path / "out" / f"{name}.item").read_text(encoding="utf-8").split("\n")[0] == item_header()
