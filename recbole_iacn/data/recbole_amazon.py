"""RecBole's Amazon atomic files (``amazon-books`` & co., as RecBole downloads them) -> CTR dataset.

RecBole's ``Amazon_<Category>.zip`` holds (RecSysDatasets' ``AmazonBooksDataset`` conversion of the
2014 "ratings only" dump and its metadata):

* ``<name>.inter``: ``user_id:token  item_id:token  rating:float  timestamp:float`` (every rating,
  22,507,155 of them for Books: not the 5-core subset the DIEN paper used);
* ``<name>.item``: ``item_id:token  sales_type:token  sales_rank:float  categories:token_seq
  title:token  price:float  brand:token``, written by pandas (fields holding a ``"`` are quoted).
  ``categories`` is ``str(set)`` of every entry of every category path, without the braces:
  ``'Books', 'Literature & Fiction', 'Thrillers'`` (``"Children's Books"`` when the entry holds a
  quote; ``et(`` for an item without categories, from ``str(set())[1:-1]``).

The DIEN protocol takes an item's category as the last entry of its first category path. RecBole's
file lost the paths (a Python set, in arbitrary order), so this builder takes the entry that the
fewest (5-core) items carry, ties broken by name: the most specific one, as a leaf of a path is (an
entry's items are a subset of its parent's). Items without an entry, or missing from the ``.item``
file, get ``default_cat``; both are counted in ``build.json``.

Pipeline: read the ratings in chunks (ids interned on the fly, so 22.5 M ratings fit in a few GB),
drop exact duplicate ratings, keep the 5-core (users and items with at least 5 ratings, repeated until
stable, as the 5-core review sets the DIEN paper used), pick categories, then the shared protocol code
(:func:`recbole_iacn.data.ctr.build_ctr_dataset`).
"""

from __future__ import annotations

import ast
import csv
import re
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from recbole_iacn.checkpoint import interrupts_kept

from .amazon import drop_duplicate_reviews
from .builder import CATEGORY_FIELD_CANDIDATES, FIRST_DATA_LINE
from .common import (
    DEFAULT_CATEGORY,
    DEFAULT_NEG_SAMPLING,
    DEFAULT_SEED,
    DEFAULT_TEST_RATIO,
    DEFAULT_VALID_RATIO,
    check_existing_file,
    first_bad_width,
    no_wider_first_row,
    read_header,
    sanitize_category,
    sanitize_token,
    wrong_width_error,
)
from recbole_iacn.errors import DataFormatError, MissingFieldError
from .category_tree import CategoryTree
from .ctr import AUTO_MAX_HISTORY, BuildOptions, Interactions, build_ctr_dataset

#: Users and items need at least this many ratings (the 5-core of the DIEN paper's review sets).
K_CORE = 5
#: Rows read per chunk of the ratings file.
CHUNK_ROWS = 1 << 21
#: The categories field: a Python-quoted string ('...' or "..." with backslash escapes).
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
_WHITESPACE = re.compile(r"\s")
#: ``str(set())[1:-1]``: what RecBole's conversion wrote for an item without categories.
EMPTY_SET_MARK = "et("
#: Amazon 2018 and 2023 names in RecBole's url.yaml (``amazon-books-18``, ``amazon-books-23``).
_UNCHECKED_RELEASE = re.compile(r"^amazon-.+-(18|23)$")


def _progress(total: Optional[int], desc: str, enabled: bool, unit: str = "B"):
    """A tqdm bar (RecBole's progress bars), or a no-op one."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", disable=not enabled, leave=False)


class TokenTable:
    """Interns string ids to dense codes in order of first appearance, chunk by chunk."""

    def __init__(self, path, what: str):
        self.codes: Dict[str, int] = {}
        self.path = path
        self.what = what

    def intern(self, values: pd.Series, first_line: int) -> np.ndarray:
        """Codes (int32) of one chunk's raw ids; sanitized as :func:`sanitize_token` does."""
        raw_codes, uniques = pd.factorize(values, sort=False)
        uniques = pd.Series(uniques, dtype=object)
        spaced = uniques.str.contains(_WHITESPACE, regex=True).to_numpy(dtype=bool)
        if spaced.any():
            uniques[spaced] = [sanitize_token(v) for v in uniques[spaced]]
        empty = np.flatnonzero((uniques == "").to_numpy())
        if empty.size:
            row = int(np.flatnonzero(raw_codes == empty[0])[0])
            raise DataFormatError(f"{self.path}:{first_line + row}: empty {self.what}; every row needs a non-empty "
                            f"{self.what}.")
        table = self.codes
        mapped = np.fromiter((table.setdefault(u, len(table)) for u in uniques.tolist()), dtype=np.int32,
                             count=len(uniques))
        return mapped[raw_codes]

    def tokens(self) -> np.ndarray:
        out = np.empty(len(self.codes), dtype=object)
        out[:] = list(self.codes)
        return out


def _chunks(reader, path: Path, width: int):
    """The chunks of ``reader``, a first row wider than the header refused (:func:`no_wider_first_row`), and
    Ctrl-C during a read kept a ``KeyboardInterrupt`` (:func:`~recbole_iacn.checkpoint.interrupts_kept`)."""
    iterator = iter(reader)
    while True:
        with interrupts_kept(), no_wider_first_row(path, width):
            chunk = next(iterator, None)
        if chunk is None:
            return
        yield chunk


def read_ratings(path: Path, user_field: str, item_field: str, time_field: str, progress: bool = False):
    """``(user, item, time, user_tokens, item_tokens)`` of a RecBole ``.inter`` file, read in chunks."""
    names = [f for f, _ in read_header(path)]
    for field_name in (user_field, item_field, time_field):
        if field_name not in names:
            raise MissingFieldError(path, field_name, names, "RecBole's Amazon files have user_id, item_id, "
                                    "rating and timestamp.")
    users, items = TokenTable(path, user_field), TokenTable(path, item_field)
    user_parts: List[np.ndarray] = []
    item_parts: List[np.ndarray] = []
    time_parts: List[np.ndarray] = []
    line = FIRST_DATA_LINE
    with open(path, "rb") as handle, _progress(path.stat().st_size, f"reading {path.name}", progress) as bar:
        try:
            # every column is read (no usecols): only then does the parser refuse a row with more values than
            # the header, instead of silently dropping them
            reader = pd.read_csv(
                handle, sep="\t", header=None, skiprows=1, names=names, index_col=False,
                dtype=str, keep_default_na=False, na_filter=False, quoting=csv.QUOTE_NONE, encoding="utf-8",
                engine="c", chunksize=CHUNK_ROWS,
            )
            for chunk in _chunks(reader, path, len(names)):
                times = pd.to_numeric(chunk[time_field], errors="coerce").to_numpy(dtype=np.float64)
                bad = np.flatnonzero(np.isnan(times))
                if bad.size:
                    row = int(bad[0])
                    raise DataFormatError(f"{path}:{line + row}: field '{time_field}' value "
                                    f"'{chunk[time_field].iloc[row]}' is not a number.")
                user_parts.append(users.intern(chunk[user_field], line))
                item_parts.append(items.intern(chunk[item_field], line))
                time_parts.append(times)
                line += len(chunk)
                bar.update(handle.tell() - bar.n)
        except DataFormatError:
            raise
        except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
            where = first_bad_width(path, len(names))
            if where is not None:
                raise wrong_width_error(path, len(names), where) from None
            raise DataFormatError(f"{path}: {exc} (line numbers count the header as line 1). Every row of a RecBole "
                            f"atomic file needs one tab-separated value per header column ({len(names)}), in "
                            "UTF-8.") from None
    user = np.concatenate(user_parts) if user_parts else np.zeros(0, dtype=np.int32)
    item = np.concatenate(item_parts) if item_parts else np.zeros(0, dtype=np.int32)
    stamp = np.concatenate(time_parts) if time_parts else np.zeros(0, dtype=np.float64)
    return user, item, stamp, users.tokens(), items.tokens()


def k_core(user: np.ndarray, item: np.ndarray, k: int = K_CORE):
    """Mask of the rows kept by the k-core filter (users and items with >= k rows, until stable)."""
    keep = np.ones(user.shape[0], dtype=bool)
    n_users = int(user.max()) + 1 if user.size else 0
    n_items = int(item.max()) + 1 if item.size else 0
    rounds = 0
    while True:
        rounds += 1
        kept_user, kept_item = user[keep], item[keep]
        user_ok = np.bincount(kept_user, minlength=n_users) >= k
        item_ok = np.bincount(kept_item, minlength=n_items) >= k
        drop = ~(user_ok[kept_user] & item_ok[kept_item])
        if not drop.any():
            return keep, rounds
        keep[np.flatnonzero(keep)[drop]] = False


def same_time_by_item(item: np.ndarray, item_tokens: np.ndarray) -> np.ndarray:
    """Permutation of the rows putting each user's ratings of one time in item id order.

    Rows are ordered by item id (stable); the protocol sorts by (user, time) keeping row order, so a
    user's ratings of the same time end in ascending item id, and the last of them is the target. The
    DIEN authors' scripts sort a user's reviews stably by time over the review file, which lists
    reviews by ascending asin: the same order."""
    rank = np.empty(item_tokens.size, dtype=np.int64)
    rank[sorted(range(item_tokens.size), key=item_tokens.__getitem__)] = np.arange(item_tokens.size)
    return np.argsort(rank[item], kind="stable")


#: Amazon-M2 (KDD Cup 2023): product sessions, not the review files the DIEN protocol is written for.
SESSION_DATASET = "amazon-m2"


def check_amazon_release(name: str) -> None:
    """Refuse the ``amazon-*`` names of RecBole's url.yaml that are not the 2014 review files (``amazon-*-18``,
    ``amazon-*-23``, ``amazon-m2``) with a clear error."""
    if name == SESSION_DATASET:
        raise DataFormatError(
            f"Dataset {name!r} is Amazon-M2, a session dataset (KDD Cup 2023), not Amazon's reviews: the "
            "DIEN-protocol builder of amazon-* does not apply. Build a CTR view from its atomic files with the "
            f"generic builder: `python -m recbole_iacn.data recbole --source-dir DIR --source-name {name} "
            f"--name {name}` (see dataset/README.md).")
    if _UNCHECKED_RELEASE.match(name):
        raise DataFormatError(
            f"Dataset {name!r} is RecBole's conversion of the Amazon {'2018' if name.endswith('18') else '2023'} "
            "reviews. RecBole's conversion code (RecSysDatasets conversion_tools) has converters for the 2014 "
            "files only, so the layout of this archive (its .item columns and how `categories` is written) is "
            "unknown and the DIEN-protocol builder, written for the 2014 layout, does not build it. Use a 2014 "
            f"name ({name.rsplit('-', 1)[0]}), or build a CTR view from its atomic files with the generic builder: "
            f"`python -m recbole_iacn.data recbole --source-dir DIR --source-name {name} --name {name} "
            "--protocol dien` (see dataset/README.md).")


def parse_entries(value: str, names: Optional[Dict[str, str]] = None) -> List[str]:
    """Raw entries of one ``categories`` value, in the order written: quoted strings (RecBole's Amazon
    files), else space tokens; entries that sanitize to nothing or to ``default_cat`` are left out.

    ``names`` (optional, shared across calls): every entry kept, as one string object per distinct entry
    (values repeat a small vocabulary), and ``""`` for each entry left out."""
    value = value.strip()
    if not value or value == EMPTY_SET_MARK:
        return []
    entries = []
    for match in _QUOTED.finditer(value):
        text = match.group(0)
        entries.append(ast.literal_eval(text) if "\\" in text else text[1:-1])
    if not entries and "'" not in value and '"' not in value:
        entries = value.split()
    if names is None:
        return [e for e in entries if sanitize_category(e) != DEFAULT_CATEGORY]
    kept = []
    for entry in entries:
        name = names.get(entry)
        if name is None:
            name = names[entry] = entry if sanitize_category(entry) != DEFAULT_CATEGORY else ""
        if name:
            kept.append(name)
    return kept


def parse_categories(value: str) -> List[str]:
    """Entries of one ``categories`` value as category tokens (:func:`sanitize_category`)."""
    return [sanitize_category(e) for e in parse_entries(value)]


def read_item_profiles(item_path: Path, item_field: str, wanted: Dict[str, int], progress: bool = False):
    """Read the whole ``.item`` file: ``(profiles, weights, {item code: profile}, counts, categories field)``.

    A profile is one distinct ``categories`` value as its raw entries (:func:`parse_entries`), weighted by
    the rows that write it; every row counts (the catalogue the hierarchy is learned from), the items in
    ``wanted`` (token -> code) also get their profile."""
    fields = [f for f, _ in read_header(item_path)]
    if item_field not in fields:
        raise MissingFieldError(item_path, item_field, fields)
    cat_field = next((c for c in CATEGORY_FIELD_CANDIDATES if c in fields), None)
    counts = {"item_file_rows": 0}
    if cat_field is None:
        return [], [], {}, counts, None
    profile_of: Dict[str, int] = {}
    weights: List[int] = []
    item_profile: Dict[int, int] = {}
    with open(item_path, "rb") as handle, _progress(item_path.stat().st_size, f"reading {item_path.name}",
                                                     progress) as bar:
        try:
            # pandas wrote the file (csv quoting: a field holding '"' is quoted): read it the same way.
            reader = pd.read_csv(
                handle, sep="\t", header=None, skiprows=1, names=fields, index_col=False, dtype=str,
                keep_default_na=False, na_filter=False, encoding="utf-8", engine="c", chunksize=CHUNK_ROWS,
            )
            for chunk in _chunks(reader, item_path, len(fields)):
                counts["item_file_rows"] += len(chunk)
                values = chunk[cat_field].tolist()
                codes = [profile_of.setdefault(v, len(profile_of)) for v in values]
                weights.extend([0] * (len(profile_of) - len(weights)))
                for code in codes:
                    weights[code] += 1
                wanted_codes = chunk[item_field].map(sanitize_token).map(wanted).to_numpy()
                for row in np.flatnonzero(pd.notna(wanted_codes)).tolist():
                    item_profile.setdefault(int(wanted_codes[row]), codes[row])
                bar.update(handle.tell() - bar.n)
        except DataFormatError:
            raise
        except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
            raise DataFormatError(f"{item_path}: {exc} (line numbers count the header as line 1). Every row needs one "
                            f"tab-separated value per header column ({len(fields)}), in UTF-8.") from None
    names: Dict[str, str] = {}  # one string per distinct entry, shared by every profile carrying it
    profiles = [parse_entries(value, names) for value in profile_of]
    return profiles, weights, item_profile, counts, cat_field


def pick_categories(n_items: int, profiles: List[List[str]], weights: List[int], item_profile: Dict[int, int]):
    """``(category per item code, counts, rule)``: DIEN's leaf by :class:`CategoryTree` (``default_cat`` for
    items without entries or missing from the ``.item`` file)."""
    tree = CategoryTree(profiles, weights)
    leaf = {p: sanitize_category(tree.leaf(profiles[p])) if profiles[p] else DEFAULT_CATEGORY
            for p in set(item_profile.values())}  # the profiles of the items wanted, not of every row
    chosen = [DEFAULT_CATEGORY] * n_items
    for code, profile in item_profile.items():
        chosen[code] = leaf[profile]
    counts = {
        "items_missing_from_item_file": n_items - len(item_profile),
        "items_without_category": sum(1 for p in item_profile.values() if not profiles[p]),
    }
    return chosen, counts, tree.rule


def build_from_recbole_amazon(
    source_dir,
    source_name: str,
    out_dir,
    name: str,
    *,
    protocol: str = "dien",
    seed: int = DEFAULT_SEED,
    max_history: Optional[int] | str = AUTO_MAX_HISTORY,
    neg_sampling: str = DEFAULT_NEG_SAMPLING,
    valid_ratio: float = DEFAULT_VALID_RATIO,
    test_ratio: float = DEFAULT_TEST_RATIO,
    k: int = K_CORE,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str = "timestamp",
    progress: bool = False,
    fields: Optional[dict] = None,
) -> dict:
    """Build the CTR dataset ``name`` in ``out_dir`` from RecBole's Amazon atomic files.

    Reads ``<source_name>.inter`` (and ``.item`` when present), drops exact duplicate ratings, keeps
    the ``k``-core, takes categories by :class:`~recbole_iacn.data.category_tree.CategoryTree`, orders each user's
    ratings by time, then item id (:func:`same_time_by_item`), and runs ``protocol`` (``dien`` by
    default: one positive + one negative per user, histories of up to 100 behaviours); the files are headed
    with the field names ``fields`` (config key -> name; default overall.yaml's). Returns the summary written
    to ``<name>.build.json`` plus ``seconds``.
    """
    started = time.perf_counter()
    check_amazon_release(source_name)
    opts = BuildOptions(protocol, seed, max_history, neg_sampling, valid_ratio, test_ratio, fields).validated()
    source_dir = Path(source_dir)
    inter_path = check_existing_file(source_dir / f"{source_name}.inter", "interaction file")
    with _progress(4, f"building the CTR view of {name}", progress, unit="step") as steps:
        return _build(inter_path, source_dir, source_name, out_dir, name, opts, k, user_field, item_field,
                      time_field, progress, steps, started)


def _build(inter_path, source_dir, source_name, out_dir, name, opts, k, user_field, item_field, time_field,
           progress, steps, started) -> dict:
    """The stages of :func:`build_from_recbole_amazon`, each one step of the ``steps`` bar."""
    user, item, stamp, user_tokens, item_tokens = read_ratings(inter_path, user_field, item_field, time_field,
                                                               progress)
    steps.update(1)
    counts = {"ratings_in_source": int(user.size), "users_in_ratings": int(user_tokens.size),
              "items_in_ratings": int(item_tokens.size)}
    keep = drop_duplicate_reviews(user, item, stamp)
    counts["duplicate_ratings_dropped"] = int(user.size - keep.size)
    user, item, stamp = user[keep], item[keep], stamp[keep]
    del keep

    core, rounds = k_core(user, item, k)
    counts.update({"k_core": k, "k_core_rounds": rounds, "ratings_dropped_by_k_core": int(core.size - core.sum())})
    user, item, stamp = user[core], item[core], stamp[core]
    del core
    order = same_time_by_item(item, item_tokens)
    user, item, stamp = user[order], item[order], stamp[order]
    del order
    kept_users, user = np.unique(user, return_inverse=True)
    kept_items, item = np.unique(item, return_inverse=True)
    counts["users_dropped_by_k_core"] = int(user_tokens.size - kept_users.size)
    counts["items_dropped_by_k_core"] = int(item_tokens.size - kept_items.size)
    user_tokens, item_tokens = user_tokens[kept_users], item_tokens[kept_items]
    if user.size == 0:
        raise DataFormatError(f"{inter_path}: no user and item keep {k} ratings each after the {k}-core filter "
                        f"({counts['ratings_in_source']} ratings read); nothing to build '{name}' from.")
    steps.update(1)

    item_path = source_dir / f"{source_name}.item"
    cat_field, profiles, weights, item_profile = None, [], [], {}
    if item_path.is_file():
        wanted = {tok: code for code, tok in enumerate(item_tokens.tolist())}
        profiles, weights, item_profile, item_counts, cat_field = read_item_profiles(item_path, item_field, wanted,
                                                                                     progress)
        counts.update(item_counts)
        del wanted
    chosen, cat_counts, rule = pick_categories(item_tokens.size, profiles, weights, item_profile)
    counts.update(cat_counts)
    del profiles, weights, item_profile
    steps.update(1)
    item_cat, cat_tokens = pd.factorize(np.asarray(chosen, dtype=object), sort=False)
    inter = Interactions(user=user.astype(np.int64), item=item.astype(np.int64), time=stamp,
                         user_tokens=user_tokens, item_tokens=item_tokens, item_cat=item_cat.astype(np.int64),
                         cat_tokens=np.asarray(cat_tokens, dtype=object))
    source = {
        "kind": "recbole-amazon-atomic",
        "dir": str(source_dir),
        "name": source_name,
        "category_field": cat_field,
        "category_rule": rule if cat_field else None,
        "filter": f"exact duplicate ratings dropped, then the {k}-core (users and items with >= {k} ratings, "
                  "repeated until stable); ratings of every value count as clicks",
    }
    summary = build_ctr_dataset(inter, out_dir, name, opts, source=source, extra_counts=counts)
    steps.update(1)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary
