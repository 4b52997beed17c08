"""DIEN's prepared files (``local_train_splitByUser`` / ``local_test_splitByUser``) -> CTR dataset.

Each line: ``label \\t user \\t item \\t category \\t history items \\t history categories`` with the
two history lists joined by the byte 0x02. Train rows go to train (with ``valid_ratio`` of the
train users carved out as valid, seeded), test rows to test. Histories are truncated to the last
``max_history`` entries; rows with an empty history are dropped (counted). Within each output file
rows are grouped by user in order of first appearance, positives before negatives (stable).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .common import (
    DEFAULT_SEED,
    DEFAULT_VALID_RATIO,
    SEQ_SEPARATOR,
    check_existing_file,
    check_max_history,
    check_ratio,
    iter_text_lines,
    natural_order,
    resolve_field_names,
    sanitize_category,
    sanitize_token,
)
from recbole_iacn.errors import DataFormatError, MalformedLineError
from .ctr import AUTO_MAX_HISTORY, finalize_build, resolve_max_history, write_item_file, write_split_files

DIEN_LIST_SEPARATOR = "\x02"
DIEN_FIELDS = 6
LABELS = {"1": 1, "0": 0, "1.0": 1, "0.0": 0}


def parse_dien_line(text: str, path, line_no: int) -> Tuple[int, str, str, str, List[str], List[str]]:
    """Parse one prepared-file line; raises :class:`MalformedLineError` naming file:line."""
    parts = text.split("\t")
    if len(parts) != DIEN_FIELDS:
        raise MalformedLineError(path, line_no, f"expected {DIEN_FIELDS} tab-separated fields "
                                 f"(label, user, item, category, history items, history categories), found {len(parts)}")
    label_text, user, item, cat, hist_items, hist_cats = parts
    if label_text.strip() not in LABELS:
        raise MalformedLineError(path, line_no, f"label '{label_text}' is not 0 or 1")
    user, item = sanitize_token(user), sanitize_token(item)
    if not user or not item:
        raise MalformedLineError(path, line_no, "empty user or item id")
    items = [sanitize_token(t) for t in hist_items.split(DIEN_LIST_SEPARATOR)] if hist_items else []
    cats = [sanitize_category(t) for t in hist_cats.split(DIEN_LIST_SEPARATOR)] if hist_cats else []
    if len(items) != len(cats):
        raise MalformedLineError(path, line_no, f"history has {len(items)} items but {len(cats)} categories "
                                 "(both lists must be joined by the byte 0x02 and have equal length)")
    if any(not t for t in items):
        raise MalformedLineError(path, line_no, "empty item id inside the history list")
    return LABELS[label_text.strip()], user, item, sanitize_category(cat), items, cats


def read_item_info(path) -> Dict[str, str]:
    """``item-info``: ``item \\t category`` per line -> dict (first occurrence wins)."""
    mapping: Dict[str, str] = {}
    for line_no, text in iter_text_lines(path):
        parts = text.split("\t")
        if len(parts) != 2:
            raise MalformedLineError(path, line_no, f"expected 2 tab-separated fields (item, category), found {len(parts)}")
        item = sanitize_token(parts[0])
        if not item:
            raise MalformedLineError(path, line_no, "empty item id")
        mapping.setdefault(item, sanitize_category(parts[1]))
    return mapping


def _read_prepared(path, max_history, counts: dict, categories: Dict[str, str]) -> List[tuple]:
    """Parse one prepared file; returns rows ``(label, user, item, hist_str, cats_str)``."""
    rows = []
    for line_no, text in iter_text_lines(path):
        label, user, item, cat, items, cats = parse_dien_line(text, path, line_no)
        counts["lines"] += 1
        if not items:
            counts["rows_dropped_empty_history"] += 1
            continue
        if max_history is not None and len(items) > max_history:
            items, cats = items[-max_history:], cats[-max_history:]
            counts["histories_truncated"] += 1
        for it, ct in zip([item] + items, [cat] + cats):
            known = categories.setdefault(it, ct)
            if known != ct:
                counts["category_conflicts"] += 1
        rows.append((label, user, item, SEQ_SEPARATOR.join(items), SEQ_SEPARATOR.join(cats)))
    return rows


def order_rows(rows: List[tuple]) -> List[tuple]:
    """Group rows by user (first-appearance order), positives before negatives, otherwise stable."""
    first_seen: Dict[str, int] = {}
    for row in rows:
        first_seen.setdefault(row[1], len(first_seen))
    return sorted(rows, key=lambda r: (first_seen[r[1]], -r[0]))


def carve_valid_users(rows: List[tuple], valid_ratio: float, rng) -> set:
    """Pick ``valid_ratio`` of the distinct train users (first-appearance order, seeded permutation)."""
    users = list(dict.fromkeys(r[1] for r in rows))
    n_valid = int(round(len(users) * valid_ratio))
    chosen = rng.permutation(len(users))[:n_valid]
    return {users[i] for i in chosen.tolist()}


def _format(rows) -> List[str]:
    """Output lines for parsed rows."""
    return [f"{label}\t{user}\t{item}\t{hist}\t{cats}" for label, user, item, hist, cats in rows]


def build_from_dien(train_path, test_path, out_dir, name: str, *, item_info=None, seed: int = DEFAULT_SEED,
                    max_history: Optional[int] | str = AUTO_MAX_HISTORY,
                    valid_ratio: float = DEFAULT_VALID_RATIO) -> dict:
    """Convert DIEN's prepared train/test files (+ optional ``item-info``) into the CTR dataset ``name``.

    Categories for ``<name>.item`` come from ``item-info`` when given, else from the rows themselves
    (candidate and history categories; the first seen wins, conflicts counted).
    """
    started = time.perf_counter()
    train_path = check_existing_file(train_path, "DIEN train file (local_train_splitByUser)")
    test_path = check_existing_file(test_path, "DIEN test file (local_test_splitByUser)")
    max_history = check_max_history(resolve_max_history(max_history, "dien-prepared"))
    valid_ratio = check_ratio(valid_ratio, "valid_ratio")
    rng = np.random.default_rng(int(seed))
    counts = {"lines": 0, "rows_dropped_empty_history": 0, "histories_truncated": 0, "category_conflicts": 0}
    row_categories: Dict[str, str] = {}
    train_rows = order_rows(_read_prepared(train_path, max_history, counts, row_categories))
    test_rows = order_rows(_read_prepared(test_path, max_history, counts, row_categories))
    if not train_rows:
        raise DataFormatError(f"{train_path} holds no training row with a non-empty history ({counts['lines']} lines "
                        "read in both files); a model cannot be trained on it. Pass DIEN's local_train_splitByUser.")
    valid_users = carve_valid_users(train_rows, valid_ratio, rng)
    split_rows = {
        "train": [r for r in train_rows if r[1] not in valid_users],
        "valid": [r for r in train_rows if r[1] in valid_users],
        "test": test_rows,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = resolve_field_names()
    rows_written = write_split_files(out_dir, name, {k: _format(v) for k, v in split_rows.items()}, fields)

    categories = dict(row_categories)
    if item_info is not None:
        info_map = read_item_info(check_existing_file(item_info, "item-info file"))
        counts["items_category_from_item_info"] = sum(1 for it in categories if it in info_map)
        categories.update({it: info_map[it] for it in categories if it in info_map})
    items = np.array(list(categories), dtype=object)
    items = items[natural_order(items)]
    item_cats = [categories[i] for i in items.tolist()]
    write_item_file(out_dir / f"{name}.item", items.tolist(), item_cats, fields)

    all_rows = train_rows + test_rows
    counts.update({
        "users": len({r[1] for r in all_rows}),
        "items": int(items.size),
        "categories": len(set(item_cats)),
        "samples": len(all_rows),
        **{f"{split}_rows": rows_written[split] for split in rows_written},
        **{f"{split}_users": len({r[1] for r in split_rows[split]}) for split in split_rows},
    })
    params = {"protocol": "dien-prepared", "seed": int(seed), "max_history": max_history, "valid_ratio": valid_ratio,
              "fields": fields}
    source = {"kind": "dien-prepared", "train": str(train_path), "test": str(test_path),
              "item_info": None if item_info is None else str(item_info)}
    summary = finalize_build(out_dir, name, None, {"parameters": params, "counts": counts, "source": source,
                                                   "synthetic": False})
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary
