"""DIEN's category (the last entry of an item's first category path) from entries that lost their paths.

RecBole's Amazon ``.item`` files keep every entry of every category path of an item, but not the paths.
The DIEN authors' scripts take ``categories[0][-1]``; the 2014 metadata lists an item's paths sorted, so
the first path is the one that is smallest entry by entry. :class:`CategoryTree` recovers it as far as
the entries allow. Every count below is a number of items (rows of the ``.item`` file); items are grouped
into *profiles* (distinct written values).

* **Path order.** A file in which any two entries are listed in the same order wherever both occur keeps
  path order (one path per item, as some RecBole-style files do): the category is the item's last entry.
* **Set order** (RecBole's conversion writes ``str(set)``) is first read as **one path per item** (the
  *chain reading*), by a top-down partition of the whole catalogue: at a node (the root, then each entry
  placed), among the items that reached it, the entry that most of them still carry becomes a child and
  takes every item carrying it; the next most carried entry among the items left does the same, and so on;
  an item ends where it has no entry left, and its category is the entry it ends at. Ties between entries
  carried by as many items of the node: :func:`tie_order` (more items of the whole file first, then the
  later name). In a one-path item every entry of the path is carried by at least the items of the entries
  below it, so the leaf comes last; a name that recurs under several parents (``Lotions`` under
  ``Moisturizers`` and under ``Fluids & Lotions``) is counted only among the items of the node, which
  places it.
* The chain reading decides how the file lists paths: in a one-path file a name takes about one place in
  it (1.0 to 1.3 nodes per distinct entry on real files, the excess from recurring names); an item listing
  several paths is read as one chain that interleaves them, and names take many places (1.6 to 20 on real
  multi-path metadata of 50 or more items). From :data:`SEVERAL_PATHS_NODES` nodes per entry on, the file
  lists **several paths** per item (as the 2014 metadata does for most items) and every item is read by the
  **descent**; below, every item takes its chain reading.
* The descent learns a hierarchy: ``a`` is an ancestor of ``b`` when every item carrying ``b`` also carries
  ``a``, and more items carry ``a`` than ``b``. It starts at the smallest (by name) entry of the item without
  an ancestor in the item, then repeatedly goes to the smallest of its direct descendants in the item (the
  first of the sorted paths); the entry with none is the category. When none is found by the
  catalogue-wide relation, an entry ``y`` still counts as below the current entry ``c`` (reached from ``p``)
  when at least :data:`CONTEXT_SUPPORT` items carry both ``y`` and ``p`` and every one of them also carries
  ``c``.

What a one-path file in set order cannot decide (dataset/README.md gives the counts on real files): two
entries that every item carries together (:func:`tie_order` picks the leaf), and a parent carried by fewer
items of its node than its child's name (``Makeup > Makeup Remover > Eyes``, with ``Eyes`` also directly
under ``Makeup``): the same sets come from the tree in which the rarer entry is the leaf (``Makeup > Eyes >
Makeup Remover``), which the chain reading chooses, as it must for ``Skin Care > Eyes > Gels``.
"""

from __future__ import annotations

import heapq
from typing import Dict, List, Optional, Sequence, Tuple

#: Items that must carry both ``y`` and ``p`` before ``y`` is placed below ``c`` by context (see module doc).
CONTEXT_SUPPORT = 20
#: Nodes of the chain reading per distinct entry from which a file lists several paths per item (module doc).
SEVERAL_PATHS_NODES = 1.5

PATH_ORDER_RULE = ("the file keeps path order (any two entries are listed in the same order wherever both occur): "
                   "the last entry of the item")
CHAIN_RULE = ("the file lists entries in set order, one path per item: the entry the item ends at in the chain "
              "reading of the whole .item file (the entry most items of a node carry becomes its child first; "
              "ties: more items of the file, then the later name; see dataset/README.md)")
SET_ORDER_RULE = ("the file lists entries in set order, several paths per item: the leaf reached from the smallest "
                  "root by the smallest direct descendant at each step, in the hierarchy learned from co-occurrence "
                  f"over the whole .item file (context rule with support {CONTEXT_SUPPORT}; see dataset/README.md)")

def tie_order(names, count: Dict[str, int]) -> List[str]:
    """``names`` in the order the chain reading takes them when as many items of a node carry them.

    First the entry more items of the whole file carry, then the later name: between two entries that every
    item carries together the earlier name is the leaf, as the rarest-entry rule broke its ties (the rule
    must never do worse than that one; see dataset/README.md for the alternatives measured)."""
    return sorted(sorted(names, reverse=True), key=lambda e: -count[e])


class CategoryTree:
    """Entry hierarchy of a catalogue of category profiles, and the DIEN category of each profile.

    ``profiles``: the distinct written values, each a sequence of entries in the order the file lists
    them; ``weights``: how many items carry each profile.
    """

    def __init__(self, profiles: Sequence[Sequence[str]], weights: Sequence[int]):
        self.profiles = [tuple(dict.fromkeys(p)) for p in profiles]
        self.weights = list(weights)
        self.count: Dict[str, int] = {}
        for entries, weight in zip(self.profiles, self.weights):
            for entry in entries:
                self.count[entry] = self.count.get(entry, 0) + weight
        self.path_order = self._keeps_path_order()
        #: "path order", or in set order "one path" or "several paths" (see module doc)
        self.reading = "path order" if self.path_order else "several paths"
        #: nodes of the chain reading (counted up to the several-paths limit)
        self.chain_nodes = 0
        self._chain_leaf: Dict[Tuple[str, ...], str] = {}
        self._ancestors: Optional[Dict[str, set]] = None
        self._holders: Dict[str, set] = {}
        self._context: Dict[Tuple[str, str, str], bool] = {}
        self._pairs: Dict[Tuple[str, str], int] = {}
        if not self.path_order:
            self._read_chains()

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
        if self.reading == "path order":
            return PATH_ORDER_RULE
        if self.reading == "one path":
            return CHAIN_RULE
        return SET_ORDER_RULE

    def leaf(self, entries: Sequence[str]) -> str:
        """DIEN's category of an item with these entries (``entries`` non-empty)."""
        if self.path_order:
            return entries[-1]
        if self.reading == "one path":
            chained = self._chain_leaf.get(tuple(sorted(set(entries))))
            if chained is not None:
                return chained
        return self._descend(set(entries))

    # ------------------------------------------------------------------------------------------------
    # chain reading
    # ------------------------------------------------------------------------------------------------
    def _read_chains(self) -> None:
        """The chain reading of the catalogue (module doc): the file's reading, and in a one-path file the end
        entry of every profile.

        Depth first over the nodes; each member of a node is ``(set index, entries left)``, the entries as a
        tuple of codes (a quarter of a frozenset's memory). Stops as soon as the nodes reach
        :data:`SEVERAL_PATHS_NODES` per entry (several paths per item)."""
        names = tie_order(self.count, self.count)
        code = {name: i for i, name in enumerate(names)}  # smaller code: first among equally carried entries
        weight_of: Dict[Tuple[int, ...], int] = {}
        for entries, weight in zip(self.profiles, self.weights):
            if entries:
                key = tuple(sorted({code[e] for e in entries}))
                weight_of[key] = weight_of.get(key, 0) + weight
        sets = list(weight_of)
        weight = [weight_of[s] for s in sets]
        del weight_of
        limit = SEVERAL_PATHS_NODES * len(names)
        ends: List[int] = [-1] * len(sets)
        stack: List[Tuple[int, list]] = [(-1, list(enumerate(sets)))]
        while stack:
            node, members = stack.pop()
            active = []
            for member in members:
                if member[1]:
                    active.append(member)
                else:
                    ends[member[0]] = node
            if not active:
                continue
            carried: Dict[int, int] = {}
            holding: Dict[int, List[int]] = {}
            for position, (index, left) in enumerate(active):
                for entry in left:
                    carried[entry] = carried.get(entry, 0) + weight[index]
                    holding.setdefault(entry, []).append(position)
            heap = [(-n, entry) for entry, n in carried.items()]
            heapq.heapify(heap)
            taken = [False] * len(active)
            groups: List[Tuple[int, List[int]]] = []
            while heap:
                negative, entry = heapq.heappop(heap)
                if carried[entry] != -negative:  # counts only fall: a stale one goes back with its count
                    if carried[entry]:
                        heapq.heappush(heap, (-carried[entry], entry))
                    continue
                group = [p for p in holding[entry] if not taken[p]]
                for p in group:
                    taken[p] = True
                    index, left = active[p]
                    for other in left:
                        carried[other] -= weight[index]
                groups.append((entry, group))
                self.chain_nodes += 1
                if self.chain_nodes >= limit:
                    return  # several paths per item: the descent reads every item
            del carried, holding, heap
            for entry, group in reversed(groups):
                stack.append((entry, [(active[p][0], tuple(c for c in active[p][1] if c != entry)) for p in group]))
        self.reading = "one path"
        self._chain_leaf = {tuple(sorted(names[c] for c in s)): names[end] for s, end in zip(sets, ends)}

    # ------------------------------------------------------------------------------------------------
    # descent (several paths per item)
    # ------------------------------------------------------------------------------------------------
    @property
    def ancestors(self) -> Dict[str, set]:
        """``entry -> entries carried by every item that carries it, and by more items`` (built on first use)."""
        if self._ancestors is None:
            common: Dict[str, set] = {}
            for index, entries in enumerate(self.profiles):
                members = set(entries)
                for entry in entries:
                    self._holders.setdefault(entry, set()).add(index)
                    common[entry] = common[entry] & members if entry in common else set(members)
            self._ancestors = {e: {a for a in together if self.count[a] > self.count[e]}
                               for e, together in common.items()}
        return self._ancestors

    def _descend(self, item: set) -> str:
        ancestors = self.ancestors
        chain: List[str] = [min(e for e in item if not ancestors[e] & item)]
        while True:
            rest = item.difference(chain)
            below = [e for e in rest if chain[-1] in ancestors[e]]
            if not below and len(chain) > 1:
                below = [e for e in rest if self._below_in_context(e, chain[-2], chain[-1])]
            if not below:
                return chain[-1]
            direct = [e for e in below if not ancestors[e].intersection(below)]
            chain.append(min(direct or below))

    def _below_in_context(self, entry: str, parent: str, current: str) -> bool:
        """At least :data:`CONTEXT_SUPPORT` items carry ``entry`` and ``parent``, all of them carry ``current``,
        and more items carry ``current`` and ``parent`` (profiles with positive weights: a strict superset)."""
        key = (entry, parent, current)
        if key not in self._context:
            holders = self._holders
            both = holders[entry] & holders[parent]
            below = both <= holders[current]
            if below:
                carried = 0
                for index in both:
                    carried += self.weights[index]
                    if carried >= CONTEXT_SUPPORT:
                        break
                below = carried >= CONTEXT_SUPPORT
            if below:
                pair = (current, parent)
                if pair not in self._pairs:
                    self._pairs[pair] = len(holders[current] & holders[parent])
                below = self._pairs[pair] > len(both)
            self._context[key] = below
        return self._context[key]
