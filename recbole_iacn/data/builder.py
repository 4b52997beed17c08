"""Generic builder: a RecBole atomic dataset (``.inter`` [+ ``.item``, ``.user``]) -> CTR dataset."""

from __future__ import annotations

import csv
import importlib.util
import os
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd

from recbole_iacn.checkpoint import interrupts_kept

from .common import (
    DEFAULT_CATEGORY,
    DEFAULT_NEG_SAMPLING,
    DEFAULT_SEED,
    DEFAULT_TEST_RATIO,
    DEFAULT_VALID_RATIO,
    FIRST_DATA_LINE,
    check_existing_file,
    intern_tokens,
    no_wider_first_row,
    read_header,
    sanitize_category,
    sanitize_token,
)
from recbole_iacn.errors import DataFormatError, MissingFieldError
from .ctr import AUTO_MAX_HISTORY, BuildOptions, Interactions, build_ctr_dataset

#: Field names tried, in order, when ``category_field`` is not given.
CATEGORY_FIELD_CANDIDATES = ("cate_id", "category", "categories", "class")
BUNDLED_ML100K = "ml-100k"
#: Data rows start on this 1-based file line (line 1 is the typed header).


def default_ml100k_source() -> Tuple[str, str]:
    """Return ``(directory, "ml-100k")`` of the MovieLens-100K copy shipped inside RecBole's wheel.

    Found without importing recbole (which would import torch).
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataFormatError("recbole is not installed, so its bundled ml-100k cannot be found; pip install recbole.")
    root = list(spec.submodule_search_locations)[0]
    directory = os.path.join(root, "dataset_example", BUNDLED_ML100K)
    check_existing_file(os.path.join(directory, f"{BUNDLED_ML100K}.inter"), "bundled ml-100k interactions")
    return directory, BUNDLED_ML100K


def read_atomic_columns(path: Path, wanted: List[str], required: Optional[List[str]] = None) -> pd.DataFrame:
    """Read the columns ``wanted`` (field names) of an atomic file as strings; a row with more fields than
    the header, or an empty value in a ``required`` column (default: all of ``wanted``), is refused."""
    fields = read_header(path)
    names = [f for f, _ in fields]
    for field_name in wanted:
        if field_name not in names:
            raise MissingFieldError(path, field_name, names,
                                    "Pass the right field name (e.g. --user-field/--item-field/--time-field).")
    # every column is read (not usecols=wanted): only then does the parser refuse a row with more fields
    # than the header declares, instead of silently dropping the extra ones
    try:
        with interrupts_kept(), no_wider_first_row(path, len(names)):  # Ctrl-C is not a parser error
            frame = pd.read_csv(
                path, sep="\t", header=None, skiprows=1, names=names, dtype=str, index_col=False,
                keep_default_na=False, na_filter=False, quoting=csv.QUOTE_NONE, encoding="utf-8", engine="c",
            )
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{path}: {str(exc).strip()} (a row has more tab-separated fields than the header's "
                        f"{len(names)}). Each row needs exactly one value per header field.") from None
    for field_name in wanted if required is None else required:  # a short row leaves its last fields empty
        empty = (frame[field_name] == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise DataFormatError(f"{path}:{row + FIRST_DATA_LINE}: field '{field_name}' is empty (a short row, or a "
                            f"missing value). Each row needs one value per header field ({', '.join(names)}).")
    return frame[wanted]


def _parse_times(values: pd.Series, path: Path, field_name: str) -> np.ndarray:
    """Numeric times; a non-numeric value raises an error naming the file line."""
    times = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(times))
    if bad.size:
        row = int(bad[0])
        raise DataFormatError(
            f"{path}:{row + FIRST_DATA_LINE}: field '{field_name}' value '{values.iloc[row]}' is not a number."
        )
    return times


def detect_category_field(item_path: Path, category_field: Optional[str]):
    """Return ``(field, type)`` of the category field of ``item_path`` or None when there is none."""
    fields = dict(read_header(item_path))
    if category_field is not None:
        if category_field not in fields:
            raise MissingFieldError(item_path, category_field, list(fields), "Check --category-field.")
        return category_field, fields[category_field]
    for candidate in CATEGORY_FIELD_CANDIDATES:
        if candidate in fields:
            return candidate, fields[candidate]
    return None


def _category_of(value: str, ftype: str) -> str:
    """Category token from a raw field value: first token of a token_seq, the whole token otherwise."""
    if ftype == "token_seq":
        parts = value.split()
        return sanitize_category(parts[0] if parts else "")
    return sanitize_category(value)


def load_item_categories(item_path: Optional[Path], item_field: str, category_field: Optional[str]):
    """Map sanitized item id -> category token from ``<source>.item`` (empty dict if unavailable)."""
    if item_path is None or not item_path.is_file():
        if category_field is not None:
            raise DataFormatError(f"category_field '{category_field}' given but there is no item file ({item_path}).")
        return {}, None
    detected = detect_category_field(item_path, category_field)
    if detected is None:
        return {}, None
    field_name, ftype = detected
    frame = read_atomic_columns(item_path, [item_field, field_name], required=[item_field])  # no category is fine
    mapping = {}
    for item, value in zip(frame[item_field].tolist(), frame[field_name].tolist()):
        mapping.setdefault(sanitize_token(item), _category_of(value, ftype))
    return mapping, field_name


def categories_for_items(item_tokens: np.ndarray, mapping: dict):
    """Return ``(item_cat codes, cat_tokens, n_items_without_category)`` for interned items."""
    cats = [mapping.get(tok, DEFAULT_CATEGORY) for tok in item_tokens.tolist()]
    missing = sum(1 for tok in item_tokens.tolist() if mapping.get(tok, DEFAULT_CATEGORY) == DEFAULT_CATEGORY)
    codes, cat_tokens = pd.factorize(np.asarray(cats, dtype=object), sort=False)
    return codes.astype(np.int64), np.asarray(cat_tokens, dtype=object), missing


def build_from_atomic(
    source_dir,
    source_name: str,
    out_dir,
    name: str,
    *,
    protocol: str = "dense",
    seed: int = DEFAULT_SEED,
    max_history: Optional[int] | str = AUTO_MAX_HISTORY,
    neg_sampling: str = DEFAULT_NEG_SAMPLING,
    valid_ratio: float = DEFAULT_VALID_RATIO,
    test_ratio: float = DEFAULT_TEST_RATIO,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str = "timestamp",
    category_field: Optional[str] = None,
    fields: Optional[dict] = None,
) -> dict:
    """Build the CTR dataset ``name`` in ``out_dir`` from the atomic dataset ``source_dir/source_name``.

    Reads ``<source_name>.inter`` (needs ``user_field``, ``item_field``, ``time_field``), the
    category from ``<source_name>.item`` when present (``category_field`` or auto-detected among
    :data:`CATEGORY_FIELD_CANDIDATES`; a token_seq gives its first token; none -> ``default_cat``),
    and writes ``<source_name>.user``, when present, as ``<name>.user`` with its ``user_field`` column
    named ``USER_ID_FIELD`` (the ``.inter`` files' user column). ``user_field``, ``item_field`` and
    ``time_field`` name the source's columns; ``fields`` (config key -> name, e.g. the run's config; default
    overall.yaml's, see :class:`~recbole_iacn.data.ctr.BuildOptions`) the columns written. Returns the
    summary dict (also written to ``<name>.build.json``) with an extra ``seconds`` entry.
    """
    started = time.perf_counter()
    source_dir = Path(source_dir)
    inter_path = check_existing_file(source_dir / f"{source_name}.inter", "interaction file")
    frame = read_atomic_columns(inter_path, [user_field, item_field, time_field])
    times = _parse_times(frame[time_field], inter_path, time_field)
    user, user_tokens = intern_tokens(frame[user_field].to_numpy(), inter_path, user_field)
    item, item_tokens = intern_tokens(frame[item_field].to_numpy(), inter_path, item_field)
    del frame

    item_path = source_dir / f"{source_name}.item"
    mapping, used_field = load_item_categories(item_path if item_path.is_file() else None, item_field, category_field)
    item_cat, cat_tokens, missing = categories_for_items(item_tokens, mapping)
    inter = Interactions(user=user, item=item, time=times, user_tokens=user_tokens, item_tokens=item_tokens,
                         item_cat=item_cat, cat_tokens=cat_tokens)
    user_path = source_dir / f"{source_name}.user"
    source = {
        "kind": "recbole-atomic",
        "dir": str(source_dir),
        "name": source_name,
        "category_field": used_field,
    }
    opts = BuildOptions(protocol, seed, max_history, neg_sampling, valid_ratio, test_ratio, fields)
    summary = build_ctr_dataset(
        inter, out_dir, name, opts, source=source,
        extra_counts={"source_items_without_category": missing},
        user_source=user_path if user_path.is_file() else None, user_field=user_field,
    )
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary
