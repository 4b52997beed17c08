"""MovieLens .dat importer (tiny hand-checked fixture, plus the real ML-1M sample when present)."""

from pathlib import Path

import pytest

from recbole_iacn.data.movielens import build_movielens, import_movielens_dat
from recbole_iacn.errors import MalformedLineError
from tests.conftest import configure_field_names

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-1m-sample"

RATINGS = "1::10::5::300\n2::10::3::100\n1::20::4::100\n1::30::2::200\n2::30::1::50\n3::10::4::1\n"
MERGED = (
    "user,item,label,time,sex,age,occupation,genre1,genre2,genre3\n"
    "1,10,5,300,F,25,6,crime,drama,missing\n"
    "2,30,1,50,M,35,7,sci fi,missing,missing\n"
)


def write_fixture(tmp_path):
    ratings = tmp_path / "ratings.dat"
    ratings.write_text(RATINGS, encoding="utf-8")
    merged = tmp_path / "merged.csv"
    merged.write_text(MERGED, encoding="utf-8")
    return ratings, merged


def data_rows(path):
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    return lines[1:-1]


def test_import_atomic_files(tmp_path):
    ratings, merged = write_fixture(tmp_path)
    counts = import_movielens_dat(ratings, tmp_path / "atomic", "ml", merged_csv=merged)
    atomic = tmp_path / "atomic"
    assert (atomic / "ml.inter").read_text(encoding="utf-8").split("\n")[0] == \
        "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert data_rows(atomic / "ml.inter")[:2] == ["1\t10\t5\t300", "2\t10\t3\t100"]
    assert (atomic / "ml.item").read_text(encoding="utf-8") == "item_id:token\tcate_id:token\n10\tcrime\n30\tsci_fi\n"
    assert (atomic / "ml.user").read_text(encoding="utf-8") == (
        "user_id:token\tgender:token\tage:token\toccupation:token\n1\tF\t25\t6\n2\tM\t35\t7\n")
    assert counts == {"ratings": 6, "users": 3, "items": 3, "items_with_genre": 2, "users_with_features": 2}


def test_build_dense_expected_rows(tmp_path):
    ratings, merged = write_fixture(tmp_path)
    out = tmp_path / "ml"
    summary = build_movielens(ratings, out, "ml", merged_csv=merged)
    assert data_rows(out / "ml.train.inter") == []
    valid = [r.split("\t") for r in data_rows(out / "ml.valid.inter")]
    test = [r.split("\t") for r in data_rows(out / "ml.test.inter")]
    assert [r for r in valid if r[0] == "1"] == [["1", "1", "30", "20", "default_cat"]]
    assert [r for r in test if r[0] == "1"] == [["1", "1", "10", "20 30", "default_cat sci_fi"],
                                               ["1", "2", "10", "30", "sci_fi"]]
    for pos, neg in zip((valid + test)[::2], (valid + test)[1::2]):
        assert neg[0] == "0" and neg[1] == pos[1] and neg[3:] == pos[3:]
        assert neg[2] != pos[2] and neg[2] in {"10", "20", "30"}
    assert (out / "ml.user").is_file()
    assert summary["counts"]["users_dropped_single_interaction"] == 1


def test_user_file_follows_the_configured_user_field(tmp_path, monkeypatch):
    """The imported atomic files keep RecBole's names; the CTR dataset's .user is headed with USER_ID_FIELD."""
    configure_field_names(tmp_path, monkeypatch, USER_ID_FIELD="uid")
    ratings, merged = write_fixture(tmp_path)
    out = tmp_path / "ml"
    build_movielens(ratings, out, "ml", merged_csv=merged)
    assert (out / "source" / "ml.user").read_text(encoding="utf-8").startswith("user_id:token\t")
    assert (out / "ml.user").read_text(encoding="utf-8") == (
        "uid:token\tgender:token\tage:token\toccupation:token\n1\tF\t25\t6\n2\tM\t35\t7\n")
    assert (out / "ml.test.inter").read_text(encoding="utf-8").split("\t")[1] == "uid:token"


def test_bad_dat_line(tmp_path):
    bad = tmp_path / "ratings.dat"
    bad.write_text("1::10::5::300\n1::10::5\n", encoding="utf-8")
    with pytest.raises(MalformedLineError, match=r"ratings.dat:2: malformed line: expected 4"):
        import_movielens_dat(bad, tmp_path / "a", "ml")


@pytest.mark.skipif(not SAMPLE_DIR.is_dir(), reason=f"real ML-1M sample not available at {SAMPLE_DIR}")
def test_real_ml1m_sample(tmp_path):
    summary = build_movielens(SAMPLE_DIR / "ratings.dat", tmp_path, "ml-1m-sample",
                              merged_csv=SAMPLE_DIR / "merged.csv")
    assert summary["import_counts"]["ratings"] == 100000
    assert summary["import_counts"]["users"] == 5958 and summary["import_counts"]["items"] == 3312
    counts = summary["counts"]
    assert counts["samples"] == 2 * (100000 - 5958)
    assert counts["test_rows"] == 2 * counts["users"]
    assert counts["train_rows"] + counts["valid_rows"] + counts["test_rows"] == counts["samples"]
    assert summary["seconds"] < 10
    assert (tmp_path / "ml-1m-sample.user").is_file()
