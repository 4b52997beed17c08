"""DIEN's category (the last entry of an item's first category path) from entries that lost their paths.

RecBole's Amazon ``.item`` files keep every entry of every category path of an item, but not the paths.
The DIEN authors' scripts take ``categories[0][-1]``; the 2014 metadata lists an item's paths sorted, so
the first path is the one that is smallest entry by entry. :class:`CategoryTree` recovers it as far as
the entries allow:

* **Hierarchy.** ``a`` is an ancestor of ``b`` when every item of the catalogue (the whole ``.item`` file)
  that carries ``b`` also carries ``a``, and more items carry ``a`` than ``b``.
* **Path order.** A file in which any two entries are listed in the same order wherever both occur keeps
  path order (one path per item, as some RecBole-style files do): the category is the item's last entry.
* **Set order** (RecBole's conversion writes ``str(set)``): start at the smallest (by name) entry of the
  item without an ancestor in the item, then repeatedly go to the smallest of its direct descendants in
  the item; the entry with none is the category. When none is found by the catalogue-wide relation, an
  entry ``y`` still counts as below the current entry ``c`` (reached from ``p``) when at least
  :data:`CONTEXT_SUPPORT` items carry both ``y`` and ``p`` and every one of them also carries ``c``: this
  places a leaf whose name occurs under several parents (``Lotions`` under ``Moisturizers`` and under
  ``Fluids & Lotions``).

Items are grouped into *profiles* (distinct written values); every count is a number of items.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

#: Items that must carry both ``y`` and ``p`` before ``y`` is placed below ``c`` by context (see module doc).
CONTEXT_SUPPORT = 20

PATH_ORDER_RULE = ("the file keeps path order (any two entries are listed in the same order wherever both occur): "
                   "the last entry of the item")
SET_ORDER_RULE = ("the file lists entries in set order: the leaf reached from the smallest root by the smallest "
                  "direct descendant at each step, in the hierarchy learned from co-occurrence over the whole "
                  f".item file (context rule with support {CONTEXT_SUPPORT}; see dataset/README.md)")


class CategoryTree:
    """Entry hierarchy of a catalogue of category profiles, and the DIEN category of each profile.

    ``profiles``: the distinct written values, each a sequence of entries in the order the file lists
    them; ``weights``: how many items carry each profile.
    """

    def __init__(self, profiles: Sequence[Sequence[str]], weights: Sequence[int]):
        self.profiles = [tuple(dict.fromkeys(p)) for p in profiles]
        self.weights = list(weights)
        self.count: Dict[str, int] = {}
        self.holders: Dict[str, set] = {}
        common: Dict[str, set] = {}
        for index, (entries, weight) in enumerate(zip(self.profiles, self.weights)):
            members = set(entries)
            for entry in entries:
                self.count[entry] = self.count.get(entry, 0) + weight
                self.holders.setdefault(entry, set()).add(index)
                common[entry] = common[entry] & members if entry in common else set(members)
        self.ancestors = {e: {a for a in together if self.count[a] > self.count[e]} for e, together in common.items()}
        self._context: Dict[Tuple[str, str, str], bool] = {}
        self.path_order = self._keeps_path_order()

    def _keeps_path_order(self) -> bool:
        """Whether every two entries are listed in the same order wherever both occur (and some item lists two).

        Path order lists an ancestor before its descendants in every item; ``str(set)`` order lists the
        same two entries both ways across a catalogue."""
        first: Dict[Tuple[str, str], bool] = {}
        for entries in self.profiles:
            for i, a in enumerate(entries):
                for b in entries[i + 1:]:
                    key, a_first = ((a, b), True) if a < b else ((b, a), False)
                    if first.setdefault(key, a_first) != a_first:
                        return False
        return bool(first)

    @property
    def rule(self) -> str:
        return PATH_ORDER_RULE if self.path_order else SET_ORDER_RULE

    def leaf(self, entries: Sequence[str]) -> str:
        """DIEN's category of an item with these entries (``entries`` non-empty)."""
        if self.path_order:
            return entries[-1]
        return self._descend(set(entries))

    def _descend(self, item: set) -> str:
        chain: List[str] = [min(e for e in item if not self.ancestors[e] & item)]
        while True:
            rest = item.difference(chain)
            below = [e for e in rest if chain[-1] in self.ancestors[e]]
            if not below and len(chain) > 1:
                below = [e for e in rest if self._below_in_context(e, chain[-2], chain[-1])]
            if not below:
                return chain[-1]
            direct = [e for e in below if not self.ancestors[e].intersection(below)]
            chain.append(min(direct or below))

    def _below_in_context(self, entry: str, parent: str, current: str) -> bool:
        key = (entry, parent, current)
        if key not in self._context:
            both = self.holders[entry] & self.holders[parent]
            carried = sum(self.weights[i] for i in both)
            self._context[key] = (carried >= CONTEXT_SUPPORT and both <= self.holders[current]
                                  and sum(self.weights[i] for i in self.holders[current] & self.holders[parent])
                                  > carried)
        return self._context[key]
