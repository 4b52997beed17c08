"""SYNTHETIC CTR data (generated, not real; labelled synthetic everywhere).

Two generators share one model of behaviour: each item has one category; each user has a few
interests (categories) and a behaviour length; every behaviour picks one of the user's interests
uniformly, then an item of that category (skewed toward a few popular items per category).

* :func:`build_synthetic`: Amazon-Books-shaped (sizes scale with ``scale``): 1-4 interests per user
  drawn with replacement, 2..60 behaviours (mean about 10), DIEN protocol (one positive + one
  negative per user).
* :func:`build_planted`: small data with *planted* interests, to check that a model's interests
  recover them: 2-3 distinct categories per user, 8..20 behaviours, the dense protocol, and the
  planted categories of every user written to ``<name>.planted.json``.

Fully vectorized; one ``default_rng(seed)`` drives both the generation and the build.
"""

from __future__ import annotations

import time
import json
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from recbole_iacn.checkpoint import atomic_write

from .common import (
    DEFAULT_MAX_HISTORY,
    DEFAULT_NEG_SAMPLING,
    DEFAULT_SEED,
    DEFAULT_TEST_RATIO,
    DEFAULT_VALID_RATIO,
)
from recbole_iacn.errors import DataFormatError
from .ctr import AUTO_MAX_HISTORY, BuildOptions, Interactions, build_ctr_dataset

DEFAULT_SYNTHETIC_NAME = "synthetic-books"
DEFAULT_PLANTED_NAME = "synthetic-planted"
#: Sizes of the DIEN paper's Amazon Books, rounded (scale=1.0).
FULL_USERS = 600_000
FULL_ITEMS = 368_000
FULL_CATEGORIES = 1_600
MIN_INTERESTS = 1
MAX_INTERESTS = 4
MIN_BEHAVIOURS = 2
MAX_BEHAVIOURS = 60
MEAN_BEHAVIOURS = 10
#: Exponent applied to a uniform draw when choosing the item inside a category (> 1: popularity skew).
ITEM_POPULARITY_SKEW = 2.0
#: Planted-interest data: distinct categories per user and behaviours per user (inclusive ranges).
PLANTED_INTERESTS = (2, 3)
PLANTED_BEHAVIOURS = (8, 20)


def scaled_sizes(scale: float):
    """``(users, items, categories)`` for ``scale`` (at least 2 users, 2 items, 1 category)."""
    if not scale > 0:
        raise DataFormatError(f"scale must be positive, got {scale}.")
    users = max(2, int(round(FULL_USERS * scale)))
    items = max(2, int(round(FULL_ITEMS * scale)))
    cats = max(1, min(items, int(round(FULL_CATEGORIES * scale))))
    return users, items, cats


def behaviour_lengths(n_users: int, rng) -> np.ndarray:
    """Per-user behaviour counts: ``MIN + geometric - 1`` clipped to [MIN, MAX] (mean about MEAN)."""
    p = 1.0 / (MEAN_BEHAVIOURS - MIN_BEHAVIOURS + 1)
    return np.clip(MIN_BEHAVIOURS - 1 + rng.geometric(p, size=n_users), MIN_BEHAVIOURS, MAX_BEHAVIOURS)


def generate_interactions(scale: float, rng) -> Interactions:
    """Generate the synthetic interactions (times are per-user ranks 0, 1, 2, ...)."""
    n_users, n_items, n_cats = scaled_sizes(scale)
    item_cat = rng.permutation(np.arange(n_items) % n_cats)  # every category gets >= 1 item
    n_interests = rng.integers(MIN_INTERESTS, MAX_INTERESTS + 1, size=n_users)
    interests = rng.integers(0, n_cats, size=(n_users, MAX_INTERESTS))
    lengths = behaviour_lengths(n_users, rng)
    return _draw_behaviours(item_cat, n_cats, n_interests, interests, lengths, rng)


def _draw_behaviours(item_cat, n_cats, n_interests, interests, lengths, rng) -> Interactions:
    """Behaviours of every user: one of the user's ``n_interests[u]`` first ``interests[u]`` uniformly,
    then an item of that category with the popularity skew."""
    n_users, n_items = n_interests.size, item_cat.size
    by_cat = np.argsort(item_cat, kind="stable")
    cat_size = np.bincount(item_cat, minlength=n_cats)
    cat_start = np.cumsum(cat_size) - cat_size
    user = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    slot = (rng.random(user.size) * n_interests[user]).astype(np.int64)
    cat = interests[user, slot]
    offset = (rng.random(user.size) ** ITEM_POPULARITY_SKEW * cat_size[cat]).astype(np.int64)
    item = by_cat[cat_start[cat] + offset].astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    stamp = np.arange(user.size, dtype=np.int64) - np.repeat(starts, lengths)
    return Interactions(
        user=user, item=item, time=stamp,
        user_tokens=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        item_tokens=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        item_cat=item_cat.astype(np.int64),
        cat_tokens=np.array([f"c{i}" for i in range(n_cats)], dtype=object),
    )


def generate_planted(
    n_users: int,
    n_items: int,
    n_categories: int,
    rng,
    interests: Tuple[int, int] = PLANTED_INTERESTS,
    behaviours: Tuple[int, int] = PLANTED_BEHAVIOURS,
) -> Tuple[Interactions, list]:
    """Interactions with planted interests, and each user's planted category codes.

    Every user draws ``interests`` (inclusive range) *distinct* categories and ``behaviours``
    (inclusive range, uniform) behaviours; each behaviour picks one of the user's categories
    uniformly, then an item of it. Returns ``(interactions, planted)``, ``planted[u]`` the sorted
    category codes of user ``u`` (a category may be drawn for no behaviour of a short history).
    """
    low, high = interests
    if not 1 <= low <= high <= n_categories:
        raise DataFormatError(f"interests per user must satisfy 1 <= min <= max <= categories ({n_categories}), got {interests}.")
    if not 1 <= behaviours[0] <= behaviours[1]:
        raise DataFormatError(f"behaviours per user must satisfy 1 <= min <= max, got {behaviours}.")
    if n_users < 1 or n_items < n_categories:
        raise DataFormatError(f"need at least one user and one item per category, got {n_users} users, {n_items} items.")
    item_cat = rng.permutation(np.arange(n_items) % n_categories)
    n_interests = rng.integers(low, high + 1, size=n_users)
    # the first `high` of a random permutation of the categories: distinct categories per user
    chosen = np.argsort(rng.random((n_users, n_categories)), axis=1)[:, :high]
    lengths = rng.integers(behaviours[0], behaviours[1] + 1, size=n_users)
    inter = _draw_behaviours(item_cat, n_categories, n_interests, chosen, lengths, rng)
    planted = [sorted(int(c) for c in chosen[u, : n_interests[u]]) for u in range(n_users)]
    return inter, planted


def build_synthetic(out_dir, name: str = DEFAULT_SYNTHETIC_NAME, *, scale: float = 1.0, protocol: str = "dien",
                    seed: int = DEFAULT_SEED, max_history: Optional[int] | str = AUTO_MAX_HISTORY,
                    neg_sampling: str = DEFAULT_NEG_SAMPLING, valid_ratio: float = DEFAULT_VALID_RATIO,
                    test_ratio: float = DEFAULT_TEST_RATIO) -> dict:
    """Generate and write the SYNTHETIC dataset ``name`` (``synthetic: true`` in build.json)."""
    started = time.perf_counter()
    opts = BuildOptions(protocol, seed, max_history, neg_sampling, valid_ratio, test_ratio).validated()
    rng = np.random.default_rng(opts.seed)
    inter = generate_interactions(scale, rng)
    n_users, n_items, n_cats = scaled_sizes(scale)
    source = {
        "kind": "synthetic",
        "note": "SYNTHETIC data generated by recbole_iacn.data.synthetic; not a real dataset, "
                "results on it say nothing about the paper's Amazon Books numbers.",
        "scale": scale, "generated_users": n_users, "generated_items": n_items, "generated_categories": n_cats,
        "interests_per_user": [MIN_INTERESTS, MAX_INTERESTS],
        "behaviours_per_user": [MIN_BEHAVIOURS, MAX_BEHAVIOURS], "mean_behaviours_target": MEAN_BEHAVIOURS,
    }
    summary = build_ctr_dataset(inter, out_dir, name, opts, source=source, synthetic=True, rng=rng)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def build_planted(out_dir, name: str = DEFAULT_PLANTED_NAME, *, users: int = 1000, items: int = 400,
                  categories: int = 20, interests: Tuple[int, int] = PLANTED_INTERESTS,
                  behaviours: Tuple[int, int] = PLANTED_BEHAVIOURS, protocol: str = "dense",
                  seed: int = DEFAULT_SEED, max_history: Optional[int] = DEFAULT_MAX_HISTORY,
                  neg_sampling: str = "uniform") -> dict:
    """Generate and write SYNTHETIC data with planted interests (``synthetic: true`` in build.json).

    Besides the CTR files, ``<name>.planted.json`` maps every user token to its planted category
    tokens (``{"u0": ["c3", "c11"], ...}``); :func:`read_planted` reads it back.
    """
    started = time.perf_counter()
    opts = BuildOptions(protocol, seed, max_history, neg_sampling, DEFAULT_VALID_RATIO, DEFAULT_TEST_RATIO).validated()
    rng = np.random.default_rng(opts.seed)
    inter, planted = generate_planted(users, items, categories, rng, tuple(interests), tuple(behaviours))
    source = {
        "kind": "synthetic-planted",
        "note": "SYNTHETIC data with planted interests, generated by recbole_iacn.data.synthetic.build_planted; "
                "not a real dataset.",
        "generated_users": users, "generated_items": items, "generated_categories": categories,
        "interests_per_user": list(interests), "behaviours_per_user": list(behaviours),
    }
    summary = build_ctr_dataset(inter, out_dir, name, opts, source=source, synthetic=True, rng=rng)
    tokens = {str(inter.user_tokens[u]): [str(inter.cat_tokens[c]) for c in cats] for u, cats in enumerate(planted)}
    path = Path(out_dir) / f"{name}.planted.json"
    with atomic_write(path) as staging:
        Path(staging).write_text(json.dumps(tokens, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    summary["planted_file"] = str(path)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def read_planted(path) -> dict:
    """``{user token: [planted category tokens]}`` from a ``<name>.planted.json``."""
    return {str(k): [str(c) for c in v] for k, v in json.loads(Path(path).read_text(encoding="utf-8")).items()}
