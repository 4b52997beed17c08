"""CTRDataset: validated loading (file and line in every error), behaviour length, shared vocabularies."""

from __future__ import annotations

import pytest

from recbole_iacn.errors import DataFormatError
from recbole_iacn.pipeline import prepare
from tests.conftest import FAST

HEADER = "label:float\tuser_id:token\titem_id:token\titem_id_list:token_seq\tcate_id_list:token_seq\n"
ROWS = [
    "1\tu1\ti5\ti1 i2 i3 i4\tc1 c1 c2 c2\n",
    "0\tu1\ti6\ti1 i2 i3 i4\tc1 c1 c2 c2\n",
    "1\tu2\ti2\ti1\tc1\n",
    "0\tu2\ti4\ti1\tc1\n",
]
ITEMS = "item_id:token\tcate_id:token\n" + "".join(f"i{i}\tc{(i + 1) // 2}\n" for i in range(1, 7))


def write_dataset(root, name="tiny", train=None, valid=None, test=None, items=ITEMS):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, body in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.{split}.inter").write_text(body if body is not None else HEADER + "".join(ROWS), encoding="utf-8")
    (folder / f"{name}.item").write_text(items, encoding="utf-8")
    return folder


def load(root, name="tiny", **overrides):
    return prepare("DIN", name, config_dict={**FAST, "data_path": str(root), **overrides})


def test_behaviours_keep_the_most_recent_and_record_their_length(tmp_path):
    write_dataset(tmp_path)
    prepared = load(tmp_path, MAX_ITEM_LIST_LENGTH=3)
    data = prepared.dataset
    first = prepared.train_data._dataset[0:1]
    assert data.id2token("item_id", first["item_id_list"][0]).tolist() == ["i2", "i3", "i4"]
    assert first["item_length"].tolist() == [3]
    third = prepared.train_data._dataset[2:3]
    assert third["item_length"].tolist() == [1]
    assert third["item_id_list"][0, 1:].tolist() == [0, 0]


def test_behaviour_length_is_a_per_run_setting(tmp_path):
    write_dataset(tmp_path)
    assert load(tmp_path, MAX_ITEM_LIST_LENGTH=2).dataset.field2seqlen["item_id_list"] == 2
    assert load(tmp_path, MAX_ITEM_LIST_LENGTH=10).dataset.field2seqlen["item_id_list"] == 4


def test_items_and_categories_share_one_vocabulary_with_their_sequences(tmp_path):
    write_dataset(tmp_path)
    data = load(tmp_path).dataset
    assert data.field2token_id["item_id"] is data.field2token_id["item_id_list"]
    assert data.field2token_id["cate_id"] is data.field2token_id["cate_id_list"]
    batch = data[[0]]
    # candidate i5 has category c3; behaviour c1 has the same id in both fields
    assert str(data.id2token("cate_id", batch["cate_id"])) == "c3"
    assert data.token2id("cate_id", "c1") == data.token2id("cate_id_list", "c1")


@pytest.mark.parametrize(
    "train, message",
    [
        ("label\tuser_id:token\titem_id:token\n1\tu\ti\n", r"line 1: column 1 is headed 'label', not 'name:type'"),
        ("label:number\tuser_id:token\n1\tu\n", r"line 1: column 'label' has unknown type 'number'"),
        (HEADER + ROWS[0] + "1\tu1\ti2\ti1\tc1\textra\n", r"line 3: 6 '\\t'-separated values, but the header has 5"),
        (HEADER + ROWS[0] + "1\tu1\ti2\n", r"line 3: 3 '\\t'-separated values"),
        (HEADER + ROWS[0] + "\n" + ROWS[1] + "1\tu1", r"line 5: 2 '\\t'-separated values"),
        (HEADER + "yes\tu1\ti2\ti1\tc1\n", r"line 2: label is a float field, but the value is 'yes'"),
        (HEADER + ROWS[0] + "2\tu1\ti2\ti1\tc1\n", r"line 3: label must be 0 or 1"),
    ],
)
def test_malformed_atomic_files_name_file_and_line(tmp_path, train, message):
    folder = write_dataset(tmp_path, train=train)
    with pytest.raises(DataFormatError, match=message) as error:
        load(tmp_path)
    assert str(folder / "tiny.train.inter") in str(error.value)


def test_missing_behaviour_field_is_explained(tmp_path):
    body = "label:float\tuser_id:token\titem_id:token\n1\tu1\ti1\n0\tu1\ti2\n"
    write_dataset(tmp_path, train=body, valid=body, test=body)
    with pytest.raises(DataFormatError, match="lacks the field.*item_id_list.*python -m recbole_iacn.data"):
        load(tmp_path)


def test_empty_histories_are_kept_and_reported(tmp_path, caplog):
    rows = HEADER + ROWS[0] + "1\tu3\ti3\t\t\n" + "0\tu3\ti4\t\t\n"
    write_dataset(tmp_path, train=rows)
    prepared = load(tmp_path)
    assert len(prepared.train_data._dataset) == 3
    assert prepared.train_data._dataset[1:2]["item_length"].tolist() == [0]


@pytest.mark.parametrize("chunk", [3, 7, 64, 1 << 20])
def test_row_width_check_agrees_with_a_line_by_line_count(tmp_path, monkeypatch, chunk):
    import random

    from recbole_iacn.data import dataset as module

    monkeypatch.setattr(module, "_CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    for trial in range(30):
        lines = ["a:token\tb:token\tc:token"]
        for _ in range(rng.randint(0, 12)):
            width = 3 if rng.random() < 0.85 else rng.choice([1, 2, 4])
            lines.append("\t".join("x" * rng.randint(0, 3) for _ in range(width)))
        ending = rng.choice(["\n", "\r\n"])
        text = ending.join(lines) + rng.choice(["", ending])
        path = tmp_path / f"f{trial}.inter"
        path.write_bytes(text.encode())
        expected = None
        for number, line in enumerate(text.split(ending), start=1):
            if number > 1 and line and line.count("\t") != 2:
                expected = (number, line.count("\t") + 1)
                break
        assert module.find_bad_row(path, "\t", 3) == expected, text
