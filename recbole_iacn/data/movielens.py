"""MovieLens ``ratings.dat`` (+ optional LibRecommender ``merged.csv``) -> RecBole atomic files.

The atomic files (``<name>.inter``, ``<name>.item``, ``<name>.user``) are then turned into a CTR
dataset by :func:`recbole_iacn.data.builder.build_from_atomic` (see :func:`build_movielens`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .common import (
    DEFAULT_NEG_SAMPLING,
    DEFAULT_SEED,
    DEFAULT_TEST_RATIO,
    DEFAULT_VALID_RATIO,
    check_existing_file,
    iter_text_lines,
    sanitize_token,
)
from recbole_iacn.errors import MalformedLineError, MissingFieldError
from .ctr import AUTO_MAX_HISTORY

DAT_SEPARATOR = "::"
DAT_FIELDS = ("user_id", "item_id", "rating", "timestamp")
#: merged.csv marks an absent genre with this word.
MISSING_MARK = "missing"
MERGED_REQUIRED = ("user", "item", "sex", "age", "occupation", "genre1")
#: Subfolder of a CTR dataset folder where the CLI keeps the imported atomic source.
SOURCE_SUBDIR = "source"


def _read_ratings(ratings_path: Path):
    """Parse ``uid::iid::rating::ts`` lines into four lists (ids sanitized, numbers validated)."""
    users, items, ratings, stamps = [], [], [], []
    for line_no, text in iter_text_lines(ratings_path):
        parts = text.split(DAT_SEPARATOR)
        if len(parts) != len(DAT_FIELDS):
            raise MalformedLineError(ratings_path, line_no,
                                     f"expected {len(DAT_FIELDS)} '::'-separated fields "
                                     f"({'::'.join(DAT_FIELDS)}), found {len(parts)}")
        user, item, rating, stamp = (p.strip() for p in parts)
        try:
            float(rating)
            int(stamp)
        except ValueError:
            raise MalformedLineError(ratings_path, line_no,
                                     f"rating '{rating}' / timestamp '{stamp}' is not numeric") from None
        if not user or not item:
            raise MalformedLineError(ratings_path, line_no, "empty user or item id")
        users.append(sanitize_token(user))
        items.append(sanitize_token(item))
        ratings.append(rating)
        stamps.append(stamp)
    return users, items, ratings, stamps


def _read_merged(merged_csv: Path):
    """Item genre1 and user (gender, age, occupation) maps from LibRecommender's merged.csv."""
    item_genre: Dict[str, str] = {}
    user_info: Dict[str, tuple] = {}
    with open(check_existing_file(merged_csv, "merged.csv"), "r", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for column in MERGED_REQUIRED:
            if column not in header:
                raise MissingFieldError(merged_csv, column, header)
        for row in reader:
            line_no = reader.line_num
            if None in row.values() or None in row:
                raise MalformedLineError(merged_csv, line_no, f"expected {len(header)} comma-separated fields")
            user, item = sanitize_token(row["user"]), sanitize_token(row["item"])
            genre = sanitize_token(row["genre1"])
            if genre and genre != MISSING_MARK:
                item_genre.setdefault(item, genre)
            user_info.setdefault(user, tuple(sanitize_token(row[c]) for c in ("sex", "age", "occupation")))
    return item_genre, user_info


def _natural_key(token: str):
    """Sort key: numbers numerically, then other strings."""
    return (0, int(token), token) if token.isdecimal() else (1, 0, token)


def import_movielens_dat(ratings_path, out_dir, name: str, merged_csv=None) -> dict:
    """Write RecBole atomic ``<name>.inter`` / ``.item`` / ``.user`` into ``out_dir``.

    ``<name>.inter``: ``user_id, item_id, rating, timestamp`` in file order. With ``merged_csv``:
    ``<name>.item`` (``item_id, cate_id`` = genre1, only items whose genre is known) and
    ``<name>.user`` (``user_id, gender, age, occupation``, only users listed there). Returns counts.
    """
    ratings_path = check_existing_file(ratings_path, "ratings.dat")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    users, items, ratings, stamps = _read_ratings(ratings_path)
    with open(out_dir / f"{name}.inter", "w", encoding="utf-8", newline="\n") as handle:
        handle.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        handle.writelines(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in zip(users, items, ratings, stamps))
    counts = {"ratings": len(users), "users": len(set(users)), "items": len(set(items))}
    for stale in (out_dir / f"{name}.item", out_dir / f"{name}.user"):
        if stale.exists():
            stale.unlink()
    if merged_csv is not None:
        item_genre, user_info = _read_merged(Path(merged_csv))
        with open(out_dir / f"{name}.item", "w", encoding="utf-8", newline="\n") as handle:
            handle.write("item_id:token\tcate_id:token\n")
            handle.writelines(f"{i}\t{item_genre[i]}\n" for i in sorted(item_genre, key=_natural_key))
        with open(out_dir / f"{name}.user", "w", encoding="utf-8", newline="\n") as handle:
            handle.write("user_id:token\tgender:token\tage:token\toccupation:token\n")
            handle.writelines(f"{u}\t" + "\t".join(user_info[u]) + "\n" for u in sorted(user_info, key=_natural_key))
        rated_items = set(items)
        counts.update({
            "items_with_genre": int(np.sum([i in item_genre for i in rated_items])),
            "users_with_features": len(set(users) & set(user_info)),
        })
    return counts


def build_movielens(ratings_path, out_dir, name: str, *, merged_csv=None, protocol: str = "dense",
                    seed: int = DEFAULT_SEED, max_history: Optional[int] | str = AUTO_MAX_HISTORY,
                    neg_sampling: str = DEFAULT_NEG_SAMPLING, valid_ratio: float = DEFAULT_VALID_RATIO,
                    test_ratio: float = DEFAULT_TEST_RATIO) -> dict:
    """Import ``ratings.dat`` into ``out_dir/source/`` then build the CTR dataset in ``out_dir``."""
    from .builder import build_from_atomic

    source_dir = Path(out_dir) / SOURCE_SUBDIR
    import_counts = import_movielens_dat(ratings_path, source_dir, name, merged_csv)
    summary = build_from_atomic(source_dir, name, out_dir, name, protocol=protocol, seed=seed,
                                max_history=max_history, neg_sampling=neg_sampling,
                                valid_ratio=valid_ratio, test_ratio=test_ratio, category_field=None)
    summary["import_counts"] = import_counts
    return summary
