"""Amazon 2014 reviews + metadata -> CTR dataset with the DIEN protocol.

Inputs are the 2014 dumps (``reviews_<Cat>_5.json.gz``, ``meta_<Cat>.json.gz``): one dict per line,
strict JSON or a Python literal (single quotes), gzip or plain (detected by magic bytes), CRLF
tolerated. Reading is streaming with bounded memory: reviewer ids and asins are interned to int codes
and only ``(user, item, time)`` are kept in compact ``array`` buffers; metadata is kept only as the
category of asins that occur in the reviews.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import time
from array import array
from typing import Dict, Optional

import numpy as np
import pandas as pd

from .common import (
    DEFAULT_CATEGORY,
    DEFAULT_NEG_SAMPLING,
    DEFAULT_SEED,
    DEFAULT_TEST_RATIO,
    DEFAULT_VALID_RATIO,
    check_existing_file,
    iter_text_lines,
    sanitize_category,
    sanitize_token,
)
from recbole_iacn.errors import MalformedLineError
from .ctr import AUTO_MAX_HISTORY, BuildOptions, Interactions, build_ctr_dataset

REVIEW_KEYS = ("reviewerID", "asin", "unixReviewTime")
META_ASIN_KEY = "asin"
META_CATEGORIES_KEY = "categories"
#: Metadata lines start with the asin key in the dumps; this reads it without parsing the whole line,
#: so lines of asins absent from the reviews are skipped cheaply (they are not validated).
_META_ASIN_PREFIX = re.compile(r"""^\{\s*['"]asin['"]\s*:\s*['"]([^'"\\]*)['"]""")


def parse_record(text: str, path, line_no: int) -> dict:
    """Parse one line: ``json.loads`` first, then ``ast.literal_eval``; it must give a dict."""
    try:
        record = json.loads(text)
    except ValueError:
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise MalformedLineError(path, line_no, f"neither JSON nor a Python literal ({type(exc).__name__}: {exc})",
                                     "Pass skip_malformed=True (--skip-malformed) to count and skip such lines.") from None
    if not isinstance(record, dict):
        raise MalformedLineError(path, line_no, f"expected a dict, got {type(record).__name__}")
    return record


def _review_fields(record: dict, path, line_no: int):
    """Return (reviewer, asin, time) of a review record, validating keys and types."""
    for key in REVIEW_KEYS:
        if key not in record:
            raise MalformedLineError(path, line_no, f"missing key '{key}' (a review needs {', '.join(REVIEW_KEYS)})")
    reviewer = sanitize_token(str(record["reviewerID"]))
    asin = sanitize_token(str(record["asin"]))
    if not reviewer or not asin:
        raise MalformedLineError(path, line_no, "empty 'reviewerID' or 'asin'")
    stamp = record["unixReviewTime"]
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float, str)):
        raise MalformedLineError(path, line_no, f"'unixReviewTime' is not a number: {stamp!r}")
    try:
        stamp = float(stamp)  # DIEN's scripts sort times as floats: 1393545600.5 is a time
    except (ValueError, OverflowError):
        raise MalformedLineError(path, line_no, f"'unixReviewTime' is not a number: {stamp!r}") from None
    if not math.isfinite(stamp):
        raise MalformedLineError(path, line_no, f"'unixReviewTime' is not a finite number: {stamp!r}")
    return reviewer, asin, stamp


class ReviewStore:
    """Interned, compact storage of (user, item, time) triples."""

    def __init__(self):
        self.user_ids: Dict[str, int] = {}
        self.item_ids: Dict[str, int] = {}
        self.user = array("i")
        self.item = array("i")
        self.time = array("d")

    def add(self, reviewer: str, asin: str, stamp: float) -> None:
        """Append one review, interning the two ids."""
        self.user.append(self.user_ids.setdefault(reviewer, len(self.user_ids)))
        self.item.append(self.item_ids.setdefault(asin, len(self.item_ids)))
        self.time.append(stamp)


def read_reviews(path, skip_malformed: bool = False):
    """Stream a reviews file into a :class:`ReviewStore`; returns ``(store, counts)``."""
    store = ReviewStore()
    counts = {"review_lines": 0, "reviews_malformed_skipped": 0}
    for line_no, text in iter_text_lines(path):
        counts["review_lines"] += 1
        try:
            store.add(*_review_fields(parse_record(text, path, line_no), path, line_no))
        except MalformedLineError:
            if not skip_malformed:
                raise
            counts["reviews_malformed_skipped"] += 1
    return store, counts


def first_path_category(categories) -> str:
    """Category of an item: the LAST entry of its FIRST category path (``default_cat`` if none)."""
    if isinstance(categories, (list, tuple)) and categories:
        first = categories[0]
        if isinstance(first, (list, tuple)) and first:
            return sanitize_category(str(first[-1]))
        if isinstance(first, str):
            return sanitize_category(first)
    return DEFAULT_CATEGORY


def read_meta_categories(path, wanted: Dict[str, int], skip_malformed: bool = False):
    """Category per item code for asins in ``wanted`` (asin -> code); returns ``(dict, counts)``."""
    found: Dict[int, str] = {}
    counts = {"meta_lines": 0, "meta_malformed_skipped": 0, "meta_lines_not_reviewed": 0}
    for line_no, text in iter_text_lines(path):
        counts["meta_lines"] += 1
        quick = _META_ASIN_PREFIX.match(text)
        if quick is not None and sanitize_token(quick.group(1)) not in wanted:
            counts["meta_lines_not_reviewed"] += 1
            continue
        try:
            record = parse_record(text, path, line_no)
            if META_ASIN_KEY not in record:
                raise MalformedLineError(path, line_no, f"missing key '{META_ASIN_KEY}'")
        except MalformedLineError:
            if not skip_malformed:
                raise
            counts["meta_malformed_skipped"] += 1
            continue
        code = wanted.get(sanitize_token(str(record[META_ASIN_KEY])))
        if code is None:
            counts["meta_lines_not_reviewed"] += 1
            continue
        found.setdefault(code, first_path_category(record.get(META_CATEGORIES_KEY)))
    return found, counts


def drop_duplicate_reviews(user: np.ndarray, item: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """Indices (in file order) of reviews kept after dropping exact (user, item, time) repeats."""
    frame = pd.DataFrame({"u": user, "i": item, "t": stamp})
    return np.flatnonzero(~frame.duplicated(keep="first").to_numpy())


def build_amazon(
    reviews_path,
    meta_path,
    out_dir,
    name: str,
    *,
    protocol: str = "dien",
    seed: int = DEFAULT_SEED,
    max_history: Optional[int] | str = AUTO_MAX_HISTORY,
    neg_sampling: str = DEFAULT_NEG_SAMPLING,
    valid_ratio: float = DEFAULT_VALID_RATIO,
    test_ratio: float = DEFAULT_TEST_RATIO,
    skip_malformed: bool = False,
) -> dict:
    """Convert Amazon 2014 ``reviews_*.json(.gz)`` + ``meta_*.json(.gz)`` into the CTR dataset ``name``.

    DIEN protocol by default: category = last entry of the first category path; per user the last
    review is a positive + a negative with all earlier reviews as history (truncated to
    ``max_history``); single-review users dropped; users split at random. Exact duplicate reviews
    and (with ``skip_malformed``) malformed lines are dropped; every drop is counted in the summary.
    """
    started = time.perf_counter()
    reviews_path = check_existing_file(reviews_path, "reviews file")
    meta_path = check_existing_file(meta_path, "metadata file")
    store, counts = read_reviews(reviews_path, skip_malformed)
    user = np.frombuffer(store.user, dtype=np.int32).astype(np.int64)
    item = np.frombuffer(store.item, dtype=np.int32).astype(np.int64)
    stamp = np.frombuffer(store.time, dtype=np.float64).copy()
    keep = drop_duplicate_reviews(user, item, stamp)
    counts["duplicate_reviews_dropped"] = int(user.size - keep.size)
    user, item, stamp = user[keep], item[keep], stamp[keep]

    categories, meta_counts = read_meta_categories(meta_path, store.item_ids, skip_malformed)
    counts.update(meta_counts)
    if meta_counts["meta_lines"] == 0:
        logging.getLogger(__name__).warning(
            f"warning: the metadata file {meta_path} holds no line, so every item gets the category "
            f"'{DEFAULT_CATEGORY}' (counted as items_missing_from_metadata). Pass meta_<Category>.json.gz."
        )
    n_items = len(store.item_ids)
    cat_names = [categories.get(code, DEFAULT_CATEGORY) for code in range(n_items)]
    counts["items_missing_from_metadata"] = n_items - len(categories)
    counts["items_without_category_path"] = sum(1 for c in categories.values() if c == DEFAULT_CATEGORY)
    cat_codes, cat_tokens = pd.factorize(np.asarray(cat_names, dtype=object), sort=False)

    user_tokens = np.empty(len(store.user_ids), dtype=object)
    user_tokens[:] = list(store.user_ids)
    item_tokens = np.empty(n_items, dtype=object)
    item_tokens[:] = list(store.item_ids)
    del store
    inter = Interactions(user=user, item=item, time=stamp, user_tokens=user_tokens, item_tokens=item_tokens,
                         item_cat=cat_codes.astype(np.int64), cat_tokens=np.asarray(cat_tokens, dtype=object))
    source = {"kind": "amazon-2014", "reviews": str(reviews_path), "meta": str(meta_path)}
    opts = BuildOptions(protocol, seed, max_history, neg_sampling, valid_ratio, test_ratio)
    summary = build_ctr_dataset(inter, out_dir, name, opts, source=source, extra_counts=counts)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary
