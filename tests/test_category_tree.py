"""DIEN's category from RecBole's ``categories`` field on real Amazon 2014 data (tests/fixtures/amazon2014).

The target (issue 32): every one-path item whose leaf the entry sets decide gets DIEN's leaf, also when
the file lists the entries in set order, on the whole catalogue and on small parts of it; never fewer
than the rarest-entry rule it replaced. The two cases the sets cannot decide (module doc of
:mod:`recbole_iacn.data.category_tree`) are counted, and pinned, separately.
"""

from __future__ import annotations

import ast
import gzip
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from recbole_iacn.data.category_tree import SEVERAL_PATHS_NODES, CategoryTree, tie_order
from recbole_iacn.data.common import sanitize_category
from recbole_iacn.data.recbole_amazon import parse_entries, pick_categories, read_item_profiles

FIXTURES = Path(__file__).parent / "fixtures" / "amazon2014"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def beauty_paths(full: bool = False):
    """``[(item id, path)]`` of the real RecBole-style Amazon_Beauty.item (one path per item, path order)."""
    name = "Amazon_Beauty.item.gz" if full else "Amazon_Beauty.head600.item"
    frame = pd.read_csv(FIXTURES / name, sep="\t", dtype=str, keep_default_na=False)
    return [(i, parse_entries(v)) for i, v in zip(frame["item_id:token"], frame["categories:token_seq"])]


def music_records():
    """``[(asin, categories)]`` of the real Digital Music metadata extract (first 1,000 items)."""
    with gzip.open(FIXTURES / "meta_Digital_Music.head1000.json.gz", "rt", encoding="utf-8") as handle:
        return [(r["asin"], r["categories"]) for r in map(ast.literal_eval, handle)]


def set_order_categories(tmp_path, items):
    """DIEN categories picked from a ``.item`` file listing each item's entries in set order.

    ``items``: ``[(item id, entries)]``. Entries are written sorted, every other row reversed, so that
    two entries are listed both ways across the file, as ``str(set)`` lists them."""
    values = [", ".join(repr(e) for e in sorted(set(entries), reverse=bool(i % 2)))
              for i, (_, entries) in enumerate(items)]
    path = tmp_path / "amazon-test.item"
    pd.DataFrame({"item_id:token": [i for i, _ in items], "categories:token_seq": values}).to_csv(
        path, sep="\t", index=False)
    wanted = {item: code for code, (item, _) in enumerate(items)}
    profiles, weights, item_profile, _, _ = read_item_profiles(path, "item_id", wanted)
    chosen, _, rule = pick_categories(len(items), profiles, weights, item_profile)
    return chosen, rule


def rarest_entry(items):
    """The rule this package used before (the entry the fewest items carry, ties by name), as a reference."""
    entries = [[sanitize_category(e) for e in dict.fromkeys(path)] for _, path in items]
    frequency = Counter(e for item in entries for e in item)
    return [min(item, key=lambda e: (frequency[e], e)) for item in entries]


def undecidable(paths):
    """Per one-path item, what its entry sets leave open. At each entry ``x`` of its path above the leaf,
    among the items carrying the path above ``x``: ``"tie"`` when ``x`` and the leaf are carried by exactly the
    same of them (only the tie order tells them apart); else ``"inverted"`` when more of them carry the
    leaf's name than ``x`` (a rarer parent: the sets also come from the tree with the leaf above it); else
    ``None``: the sets decide the leaf."""
    distinct = {}
    for path in paths:
        distinct[tuple(path)] = distinct.get(tuple(path), 0) + 1
    weight = list(distinct.values())
    holders = {}
    for index, path in enumerate(distinct):
        for entry in path:
            holders.setdefault(entry, set()).add(index)
    case_of = {}
    for path in distinct:
        leaf, case = path[-1], None
        above = set(range(len(distinct)))
        for entry in path[:-1]:
            mine, leafs = above & holders[entry], above & holders[leaf]
            if mine == leafs:
                case = "tie"
                break
            if sum(weight[i] for i in leafs) > sum(weight[i] for i in mine):
                case = "inverted"
            above = mine
        case_of[path] = case
    return [case_of[tuple(path)] for path in paths]


def agreement(items, chosen):
    """``{case: (agreeing, items)}`` for the cases of :func:`undecidable` (``None``: decided by the sets)."""
    table = {}
    for (_, path), case, got in zip(items, undecidable([p for _, p in items]), chosen):
        right, total = table.get(case, (0, 0))
        table[case] = (right + (got == sanitize_category(path[-1])), total + 1)
    return table


# ---------------------------------------------------------------------------------------------
# one path per item, entries in set order
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, agree, cases", [
    # items, DIEN's leaf found, {case: (found, items)}; the rarest-entry rule found 80, 268 and 558
    (100, 95, {None: (83, 83), "tie": (6, 8), "inverted": (6, 9)}),
    (300, 286, {None: (274, 274), "tie": (9, 21), "inverted": (3, 5)}),
    (600, 583, {None: (566, 566), "tie": (11, 23), "inverted": (6, 11)}),
])
def test_set_order_one_path_file_gives_every_decided_leaf(tmp_path, size, agree, cases):
    items = beauty_paths()[:size]
    chosen, rule = set_order_categories(tmp_path, items)
    assert "one path per item" in rule
    assert agreement(items, chosen) == cases
    assert sum(c == sanitize_category(p[-1]) for c, (_, p) in zip(chosen, items)) == agree


def test_set_order_one_path_full_catalogue(tmp_path):
    """All 12,101 items of the real file: every leaf the sets decide; 94 of the 195 inverted ones (below
    Makeup Remover 42, Hair Loss Products 40, Hair Relaxers 12) take the reading with the leaf above, and the
    2 tied ones (Masks & Pillows > Pillows) the earlier name."""
    items = beauty_paths(full=True)
    assert len(items) == 12_101
    chosen, rule = set_order_categories(tmp_path, items)
    assert "one path per item" in rule
    assert agreement(items, chosen) == {None: (11_904, 11_904), "tie": (0, 2), "inverted": (101, 195)}
    assert sum(r == sanitize_category(p[-1]) for r, (_, p) in zip(rarest_entry(items), items)) == 11_681


@pytest.mark.parametrize("which", ["first", "all"])
def test_set_order_one_path_held_out_paths(tmp_path, which):
    """The real Digital Music paths (not used to design the chain reading, used to choose the tie order) as a
    one-path file: each item's first path, or every path as an item of its own."""
    records = music_records()
    if which == "first":
        items = [(asin, cats[0]) for asin, cats in records]
    else:
        items = [(f"{asin}-{k}", path) for asin, cats in records for k, path in enumerate(cats)]
    chosen, rule = set_order_categories(tmp_path, items)
    assert "one path per item" in rule
    table = agreement(items, chosen)
    old = sum(r == sanitize_category(p[-1]) for r, (_, p) in zip(rarest_entry(items), items))
    new = sum(c == sanitize_category(p[-1]) for c, (_, p) in zip(chosen, items))
    assert new >= old
    assert (new, len(items)) == {"first": (998, 1000), "all": (6_156, 6_170)}[which]
    assert table == {"first": {None: (963, 963), "tie": (35, 37)},
                     "all": {None: (6_054, 6_054), "tie": (11, 25), "inverted": (91, 91)}}[which]


def test_set_order_never_below_the_rarest_entry_rule_on_parts_of_the_file(tmp_path):
    items = beauty_paths()
    rng = random.Random(2020)
    parts = [items[:n] for n in range(50, 601, 50)] + [items[-n:] for n in (100, 300)]
    parts += [rng.sample(items, n) for n in (50, 100, 300) for _ in range(4)]
    for part in parts:
        chosen, _ = set_order_categories(tmp_path, part)
        truth = [sanitize_category(p[-1]) for _, p in part]
        new = sum(c == t for c, t in zip(chosen, truth))
        old = sum(r == t for r, t in zip(rarest_entry(part), truth))
        assert new >= old, (len(part), new, old)


def test_set_order_recurring_leaf_name_is_placed_by_its_node():
    """``Lotions`` under two parents, ``Moisturizers`` and ``Fluids & Lotions``: no parent is carried by every
    item carrying ``Lotions``, and the descent alone (the rule before) stopped at the parents; the chain
    reading counts ``Lotions`` among the items of each node."""
    face = ["Beauty", "Skin Care", "Face"]
    body = ["Beauty", "Skin Care", "Body"]
    paths = ([body + ["Moisturizers", "Lotions"]] * 3 + [body + ["Moisturizers", "Creams"]] * 2 + [body]
             + [face + ["Creams & Moisturizers", "Fluids & Lotions", "Lotions"]] * 2
             + [face + ["Creams & Moisturizers", "Fluids & Lotions"], face + ["Creams & Moisturizers"]]
             + [face + ["Cleansers"]] * 4 + [["Beauty", "Hair Care", "Shampoos"]] * 2 + [["Beauty", "Hair Care"]])
    profiles = [sorted(p, reverse=bool(i % 2)) for i, p in enumerate(paths)]
    tree = CategoryTree(profiles, [1] * len(profiles))
    assert tree.reading == "one path"
    assert [tree.leaf(p) for p in profiles] == [p[-1] for p in paths]


def test_tie_order_takes_the_more_carried_then_the_later_name_first():
    count = {"Scrubs": 4, "Exfoliators & Scrubs": 4, "Skin Care": 9, "Irons": 1, "Curling Irons": 1}
    assert tie_order(count, count) == ["Skin Care", "Scrubs", "Exfoliators & Scrubs", "Irons", "Curling Irons"]


# ---------------------------------------------------------------------------------------------
# several paths per item
# ---------------------------------------------------------------------------------------------
def test_multi_path_metadata_reads_as_several_paths():
    records = music_records()
    profiles = [sorted({e for path in cats for e in path}, reverse=bool(i % 2)) for i, (_, cats) in enumerate(records)]
    tree = CategoryTree(profiles, [1] * len(profiles))
    assert tree.reading == "several paths"
    assert tree.chain_nodes >= SEVERAL_PATHS_NODES * len(tree.count)
    one_path = CategoryTree([sorted(cats[0], reverse=bool(i % 2)) for i, (_, cats) in enumerate(records)],
                            [1] * len(records))
    assert one_path.reading == "one path" and one_path.chain_nodes < 1.3 * len(one_path.count)
